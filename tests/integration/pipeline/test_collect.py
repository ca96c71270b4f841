"""The ingestion stage against the stack's market sandbox: pages land in the raw zone and the
manifest; failures are dead-lettered; re-collecting the same range is idempotent."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import httpx
import pandas as pd

from core.settings import Settings
from db.connect import async_database_connection, database_connection
from pipeline.request import parse_ingest_request
from sources.factory import build_source
from sources.http import Request
from storage.lake import Lake
from storage.raw import iter_raw_pages
from tasks.collection import collect_symbol, parse_stored_page
from tests.support.cli import run_cli

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def collect(
    stack: Settings,
    symbol: str,
    start: str,
    end: str,
    timeframe: str = "1min",
    keep_parsed: bool = False,
    **source_options,
):
    request = parse_ingest_request(
        data_type="market_data",
        symbols=[symbol],
        start_date=start,
        end_date=end,
        timeframe=timeframe,
        source="polygon",
        now=NOW,
    )

    async def run():
        source = build_source("polygon", stack, options=source_options)
        async with source, await async_database_connection(stack, autocommit=True) as conn:
            return await collect_symbol(
                source,
                request,
                symbol,
                request.start,
                Lake.from_settings(stack.lake),
                conn,
                run_id=str(uuid.uuid4()),
                keep_parsed=keep_parsed,
            )

    return asyncio.run(run())


def manifest(stack: Settings, symbol: str) -> list[tuple]:
    with database_connection(stack) as conn:
        return conn.execute(
            "SELECT key, records, checksum, processed_at FROM ops.raw_pages WHERE symbol = %s ORDER BY key", (symbol,)
        ).fetchall()


def test_minute_bars_are_stored_raw_and_listed_in_the_manifest(stack: Settings) -> None:
    outcome = collect(stack, "CLCT", "2024-03-04", "2024-03-05T23:59:59")
    assert outcome.error is None
    assert outcome.records == 2 * 390  # two full sessions of minute bars
    rows = manifest(stack, "CLCT")
    assert sorted(r[0] for r in rows) == sorted(outcome.raw_keys)
    assert sum(r[1] for r in rows) == outcome.records

    lake = Lake.from_settings(stack.lake)
    pages = list(iter_raw_pages(lake, source="polygon", dataset="bars", symbol="CLCT"))
    reparsed = sum(
        len(parse_stored_page("polygon", Request.from_redacted("polygon", "bars", p.request), p.payload)) for p in pages
    )
    assert reparsed == outcome.records
    assert all("apiKey" not in str(p.request.get("url")) or "***" in str(p.request) for p in pages)


def test_kept_frames_are_what_a_replay_of_the_raw_zone_parses(stack: Settings) -> None:
    outcome = collect(stack, "CLKEEP", "2024-03-04", "2024-03-05T23:59:59", keep_parsed=True)
    assert outcome.error is None and sorted(outcome.parsed) == sorted(outcome.raw_keys)
    assert "parsed" not in outcome.record()

    lake = Lake.from_settings(stack.lake)
    for page in iter_raw_pages(lake, source="polygon", dataset="bars", symbol="CLKEEP"):
        kept = outcome.parsed[page.key]
        assert kept.request == page.request
        replayed = parse_stored_page("polygon", Request.from_redacted("polygon", "bars", page.request), page.payload)
        pd.testing.assert_frame_equal(kept.frame, replayed)
    assert collect(stack, "CLKEEP2", "2024-03-04", "2024-03-04T23:59:59").parsed == {}  # only when asked for


def test_collecting_the_same_range_again_changes_nothing(stack: Settings) -> None:
    collect(stack, "CLCT.B", "2024-03-06", "2024-03-06T23:59:59")
    before = manifest(stack, "CLCT.B")
    collect(stack, "CLCT.B", "2024-03-06", "2024-03-06T23:59:59")
    assert manifest(stack, "CLCT.B") == before


def test_a_killed_symbol_is_dead_lettered_and_others_are_unaffected(stack: Settings) -> None:
    control = f"{stack.sandbox.base_url}/_sandbox/faults"
    httpx.post(control, json={"seed": 1, "killed_symbols": ["DEADX"]}).raise_for_status()
    try:
        dead = collect(stack, "DEADX", "2024-03-04", "2024-03-04T23:59:59")
        alive = collect(stack, "ALIVEX", "2024-03-04", "2024-03-04T23:59:59")
    finally:
        httpx.delete(control)
    assert dead.error is not None and dead.dead_letter_ids
    assert alive.error is None and alive.records == 390
    with database_connection(stack) as conn:
        letter = conn.execute(
            "SELECT source, dataset, request::text FROM ops.dead_letters WHERE id = %s", (dead.dead_letter_ids[0],)
        ).fetchone()
    assert letter[0] == "polygon" and letter[1] == "bars"
    assert "DEADX" in letter[2]
    assert "sandbox" not in letter[2]  # the API key never lands in a dead letter


def test_dlq_list_and_replay_through_the_cli_are_idempotent(stack: Settings) -> None:
    control = f"{stack.sandbox.base_url}/_sandbox/faults"
    httpx.post(control, json={"seed": 2, "killed_symbols": ["RPLYX"]}).raise_for_status()
    try:
        dead = collect(stack, "RPLYX", "2024-03-04", "2024-03-04T23:59:59")
    finally:
        httpx.delete(control)
    assert dead.dead_letter_ids and manifest(stack, "RPLYX") == []

    listed = run_cli("dlq", "list", "--source", "polygon", "--json")
    assert listed.returncode == 0, listed.stderr
    assert dead.dead_letter_ids[0] in [d["id"] for d in json.loads(listed.stdout)]

    def resolved(letter_id: int) -> bool:
        with database_connection(stack) as conn:
            row = conn.execute("SELECT resolved_at FROM ops.dead_letters WHERE id = %s", (letter_id,)).fetchone()
        return row[0] is not None

    # other tests' letters may be open too (and some of those still fail): judge ours by its row
    first = run_cli("dlq", "replay", "--source", "polygon")
    assert first.returncode == 0, first.stderr
    assert "replayed: " in first.stdout
    assert resolved(dead.dead_letter_ids[0])
    rows = manifest(stack, "RPLYX")
    assert sum(r[1] for r in rows) == 390, (rows, first.stdout)  # the session the kill switch had blocked

    second = run_cli("dlq", "replay", "--source", "polygon")
    assert second.returncode == 0, second.stderr
    assert resolved(dead.dead_letter_ids[0])  # a replayed letter is not fetched again
    assert manifest(stack, "RPLYX") == rows
