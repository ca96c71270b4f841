"""The ingestion stage against the stack's market sandbox: pages land in the raw zone and the
manifest; failures are dead-lettered; re-collecting the same range is idempotent."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import secrets
import string
from uuid import UUID

import httpx
import pandas as pd
import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)

from core.settings import Settings
from db.connect import async_database_connection, database_connection
from flows.ingestion import ingest_flow
from sources.dead_letters import list_dead_letters, record_dead_letter_sync
from sources.factory import build_source
from sources.http import Request
from storage.lake import Lake
from storage.raw import iter_raw_pages
from tasks.collection import parse_stored_page, replay_dead_letter
from tests.support.cli import run_cli
from tests.support.collection import collect


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


@pytest.mark.parametrize(
    ("symbol", "names_its_page", "pending_after"), [("RPLYQ", True, True), ("RPLYS", False, False)]
)
def test_replaying_a_letter_that_names_its_raw_page_processes_the_page_again(
    stack: Settings, symbol: str, names_its_page: bool, pending_after: bool
) -> None:
    """A letter written by processing (rejected records, a page that no longer parsed) names its
    page; the page is marked processed. Its replay refetched unchanged data, which left the page
    processed: the letter was closed and nothing processed again. A vendor failure's letter names
    no page, and unchanged data stays processed."""
    collected = collect(stack, symbol, "2024-03-04", "2024-03-04T23:59:59", keep_parsed=True)
    ((key, page),) = collected.parsed.items()
    with database_connection(stack) as conn:
        conn.execute("UPDATE ops.raw_pages SET processed_at = now() WHERE key = %s", (key,))
        conn.commit()
        letter_id = record_dead_letter_sync(
            conn,
            source="polygon",
            dataset="bars",
            request=page.request,
            error=f"1 record(s) of {symbol} failed validation: ohlc_inconsistent (x1)",
            payload={"raw_key": key, "records": 1, "rejected": []},
            payload_lake_key=key if names_its_page else None,
        )
        conn.commit()

    async def replay() -> None:  # as `marketpipe dlq replay` replays it
        source = build_source("polygon", stack)
        async with source, await async_database_connection(stack, autocommit=True) as conn:
            (letter,) = [d for d in await list_dead_letters(conn, source="polygon", limit=None) if d.id == letter_id]
            await replay_dead_letter(source, letter, Lake.from_settings(stack.lake), conn, "dlq-replay")

    try:
        asyncio.run(replay())
        rows = manifest(stack, symbol)
    finally:
        with database_connection(stack) as conn:
            conn.execute("DELETE FROM ops.dead_letters WHERE id = %s", (letter_id,))
            conn.execute("DELETE FROM ops.raw_pages WHERE symbol = %s", (symbol,))
    assert [r[0] for r in rows] == [key]
    assert (rows[0][3] is None) == pending_after


def polygon_like_key(prefix: str = "") -> str:
    """32 letters and digits, the shape of a Polygon key (the sandbox refuses keys starting
    ``invalid`` with the vendor's 401, and accepts any other)."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(32 - len(prefix)))


def what_a_run_left(stack: Settings, run_ids: list[str], symbols: list[str]) -> dict[str, list[str]]:
    """Every place an ingest run writes text: its Prefect logs, flow runs (parameters, state
    messages) and artifacts, the dead letters and raw-page manifest rows of its symbols, and the
    raw-zone objects (request metadata and payload) of its symbols."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # logs go to the API in batches: all of them sent before reading
    ids = [UUID(r) for r in run_ids]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": ids})  # type: ignore[arg-type]
        )
        every = ids + [r.id for r in children]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=every)))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=every))
        )
    with database_connection(stack) as conn:
        letters = conn.execute(
            "SELECT row_to_json(d)::text FROM ops.dead_letters d WHERE request::text LIKE ANY(%s)",
            ([f"%{s}%" for s in symbols],),
        ).fetchall()
        pages = conn.execute(
            "SELECT key, row_to_json(p)::text FROM ops.raw_pages p WHERE symbol = ANY(%s)", (symbols,)
        ).fetchall()
    lake = Lake.from_settings(stack.lake)
    return {
        "logs": [log.message for log in logs],
        "flow runs": [run.model_dump_json() for run in [*runs, *children]],
        "artifacts": [artifact.model_dump_json() for artifact in artifacts],
        "dead letters": [row[0] for row in letters],
        "raw-page manifest": [row[1] for row in pages],
        "raw-zone objects": [gzip.decompress(lake.get_bytes(key)).decode() for key, _ in pages],
    }


def test_a_real_looking_api_key_appears_in_no_log_dead_letter_raw_page_or_artifact(
    stack: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd
) -> None:
    good, refused = polygon_like_key(), polygon_like_key("invalid")
    control = f"{stack.sandbox.base_url}/_sandbox/faults"
    faults = {"seed": 4, "killed_symbols": ["KEYDEAD"], "rates": {"rate_limit": 0.3}, "retry_after_seconds": 0}
    httpx.post(control, json=faults).raise_for_status()
    caplog.set_level(logging.DEBUG)
    try:
        # the key comes the way a deployment gives it: the environment, read by the run's settings
        monkeypatch.setenv("MARKETPIPE_VENDORS__POLYGON__API_KEY", good)
        served = asyncio.run(ingest(["KEYOK", "KEYDEAD"]))
        monkeypatch.setenv("MARKETPIPE_VENDORS__POLYGON__API_KEY", refused)
        unauthorized = asyncio.run(ingest(["KEYBAD"]))
    finally:
        httpx.delete(control)
    printed = capfd.readouterr()

    # the keys were sent: the one served, the other refused by the vendor's key check
    assert served["failed"] == ["KEYDEAD"] and sum(c["records"] for c in served["collected"]) == 390
    assert unauthorized["failed"] == ["KEYBAD"] and "401" in unauthorized["collected"][0]["error"]
    left = what_a_run_left(stack, [served["run_id"], unauthorized["run_id"]], ["KEYOK", "KEYDEAD", "KEYBAD"])
    left["this process's log records and output"] = [caplog.text, printed.out, printed.err]
    assert all(left[where] for where in ("logs", "flow runs", "artifacts", "dead letters", "raw-zone objects"))
    assert len(left["dead letters"]) >= 2  # the killed symbol's and the refused key's
    for where, texts in left.items():
        for text in texts:
            assert good not in text and refused not in text, f"an API key in the {where}: {text[:300]}"


async def ingest(symbols: list[str]) -> dict:
    return await ingest_flow(symbols=symbols, start_date="2024-03-04", end_date="2024-03-04T23:59:59", timeframe="1min")
