"""Older ranges and several vendors (issue 18), through the CLI and the ingest flow against the
sandbox: an incremental ingest fetches what its source has not stored of the range asked for
(an older range than the stored one, and a second vendor's copy of a range), and the same range
from Polygon, Alpaca and Yahoo keeps every vendor's bars, serves Polygon's, and reports a
discrepancy planted in Alpaca's."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from core.calendar import nyse_sessions
from core.settings import Settings
from db.connect import database_connection
from flows.ingestion import ingest_flow
from storage.vendors import read_vendor_disagreements
from tests.support.cli import run_cli

JUNE = ("2025-06-02", "2025-06-30")
DECEMBER = ("2025-12-04", "2025-12-31")


def requests_to(stack: Settings, vendor: str) -> int:
    stats = httpx.get(f"{stack.sandbox.base_url}/_sandbox/stats").json()
    return int(stats["vendors"].get(vendor, {}).get("total", 0))


def sessions(first: str, last: str) -> int:
    return len(nyse_sessions(first, last))


def daily_rows(stack: Settings, symbol: str, first: str, last: str, relation: str = "market.bars") -> dict[str, int]:
    with database_connection(stack) as conn:
        rows = conn.execute(
            f"SELECT source, count(*) FROM {relation} WHERE symbol = %s AND timeframe = '1day'"
            " AND (ts AT TIME ZONE 'America/New_York')::date BETWEEN %s AND %s GROUP BY 1",
            (symbol, first, last),
        ).fetchall()
    return {str(source): int(n) for source, n in rows}


def ingest_cli(symbol: str, first: str, last: str, source: str = "polygon"):
    result = run_cli("ingest", "--symbols", symbol, "--start", first, "--end", last, "--source", source)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_an_older_range_than_the_stored_one_is_fetched_and_a_stored_range_is_not(stack: Settings) -> None:
    symbol = f"OR{uuid.uuid4().hex[:4].upper()}"
    ingest_cli(symbol, *DECEMBER)
    assert daily_rows(stack, symbol, *DECEMBER) == {"polygon": sessions(*DECEMBER)}

    before = requests_to(stack, "polygon")
    out = ingest_cli(symbol, *JUNE)  # before the first stored bar: the watermark alone said "up to date"
    assert "nothing new" not in out and "fetched" in out
    assert requests_to(stack, "polygon") > before
    assert daily_rows(stack, symbol, *JUNE) == {"polygon": sessions(*JUNE)}

    before = requests_to(stack, "polygon")
    out = ingest_cli(symbol, *JUNE)  # every session of the range stored: nothing is asked of the vendor
    assert "nothing new" in out
    assert requests_to(stack, "polygon") == before

    before = requests_to(stack, "alpaca")
    out = ingest_cli(symbol, *JUNE, source="alpaca")  # coverage is per source: Alpaca has stored nothing
    assert "nothing new" not in out
    assert f"kept apart {sessions(*JUNE)} bars of alpaca in market.vendor_bars" in out  # not just "stored 0"
    assert requests_to(stack, "alpaca") > before
    assert daily_rows(stack, symbol, *JUNE, "market.vendor_bars") == {
        "polygon": sessions(*JUNE),
        "alpaca": sessions(*JUNE),
    }
    assert daily_rows(stack, symbol, *JUNE) == {"polygon": sessions(*JUNE)}  # Polygon ranks first

    before = requests_to(stack, "alpaca")
    assert "nothing new" in ingest_cli(symbol, *JUNE, source="alpaca")  # Alpaca's copy is stored now
    assert requests_to(stack, "alpaca") == before


def test_three_vendors_are_kept_consolidated_by_precedence_and_compared(stack: Settings) -> None:
    symbol = f"TV{uuid.uuid4().hex[:4].upper()}"
    planted = "2025-06-11"
    skews = f"{stack.sandbox.base_url}/_sandbox/skews"
    httpx.post(skews, json={"vendor": "alpaca", "symbol": symbol, "date": planted, "factor": 1.03}).raise_for_status()
    try:
        # the worst vendor first: each later one displaces the stored rows or is refused by them
        for source in ("yahoo", "alpaca", "polygon"):
            summary = asyncio.run(
                ingest_flow(symbols=[symbol], start_date=JUNE[0], end_date=f"{JUNE[1]}T23:59:59", source=source)
            )
            assert summary["failed"] == [] and summary["collected"], summary
    finally:
        httpx.delete(skews).raise_for_status()

    n = sessions(*JUNE)
    assert daily_rows(stack, symbol, *JUNE, "market.vendor_bars") == {"polygon": n, "alpaca": n, "yahoo": n}
    assert daily_rows(stack, symbol, *JUNE) == {"polygon": n}
    with database_connection(stack) as conn:
        report = read_vendor_disagreements(
            conn, [symbol], JUNE[0], "2025-07-01", "1day", tolerance=stack.quality.vendor_disagreement_tolerance
        )
    pairs = report[["session_date", "source_a", "source_b"]].astype(str).values.tolist()
    assert pairs == [[planted, "alpaca", "polygon"], [planted, "alpaca", "yahoo"]]
    # the skew scales open, high, low and close alike: the field reported is the one that differs most
    # after each vendor's rounding to the tick, which one depends on the random symbol's prices
    fields = report["field"].tolist()
    assert set(fields) <= {"open", "high", "low", "close"}
    assert report["relative_difference"].between(0.029, 0.031).all()

    cli = run_cli("vendors", "--symbols", symbol, "--start", JUNE[0], "--end", JUNE[1])
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "2 disagreement(s) beyond 0.50% on 1 symbol-day(s)" in cli.stdout
    assert f"{symbol:<8} {planted} alpaca/polygon {fields[0]}: " in cli.stdout
