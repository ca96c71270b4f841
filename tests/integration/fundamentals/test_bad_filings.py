"""Bad filings through the real stack: the sandbox serves broken filings (`/_sandbox/filing-defects`),
the pipeline refuses each with a reason in a dead letter and stores the rest; no part of a bad
filing is stored. Requests the vendors cannot serve are refused before anything is fetched."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from core.settings import Settings
from tests.support.cli import run_cli
from tests.support.fundamentals import ingest, sandbox_results, wipe

SYMBOL = "FNDC"
START, END = "2022-01-01", "2023-12-31"


@pytest.fixture
def defects(stack: Settings, conn: psycopg.Connection) -> Iterator[str]:
    url = f"{stack.sandbox.base_url}/_sandbox/filing-defects"
    wipe(conn)
    try:
        yield url
    finally:
        httpx.delete(url)
        wipe(conn)


def test_each_bad_filing_is_dead_lettered_with_its_reason_and_the_rest_stored(
    stack: Settings, conn: psycopg.Connection, defects: str
) -> None:
    window = {"filing_date.gte": START, "filing_date.lte": END}
    served = sandbox_results(stack, "/vX/reference/financials", ticker=SYMBOL, limit=100, **window)
    ends = sorted({f["end_date"] for f in served if f["fiscal_period"] != "FY"})
    planted = {ends[0]: "period_after_filing", ends[1]: "negative_revenue", ends[2]: "other_ticker"}
    for period_end, kind in planted.items():
        response = httpx.post(defects, json={"symbol": SYMBOL, "period_end": period_end, "kind": kind})
        assert response.status_code == 200, response.text
    broken = [f for f in served if f["end_date"] in planted]

    out = ingest(SYMBOL, "fundamentals", START, END)
    assert f"({sum(len(_items(f)) for f in broken):,} rejected)" in out, out

    stored = conn.execute(
        "SELECT DISTINCT period_end::text FROM market.financial_statements WHERE symbol = %s", (SYMBOL,)
    ).fetchall()
    assert {row[0] for row in stored} == {f["end_date"] for f in served} - set(planted)
    letters = conn.execute(
        "SELECT error, payload FROM ops.dead_letters WHERE dataset = 'financials' AND payload_lake_key LIKE %s",
        (f"%/symbol={SYMBOL}/%",),
    ).fetchall()
    assert len(letters) == 1, "one letter for the raw page holding the rejected records"
    error, payload = letters[0]
    assert "failed validation" in error
    reasons = {r["reason"] for r in payload["rejected"]}
    moved = next(f for f in broken if f["end_date"] == ends[0])
    assert any(
        r.startswith("period_after_filing: the period ends ") and f"after its filing date {moved['filing_date']}" in r
        for r in reasons
    ), reasons
    assert any(r.startswith("negative_value: revenues = -") for r in reasons), reasons
    assert f"unknown_symbol: the record is ZZOTHER's, not {SYMBOL}'s (asked for)" in reasons
    listed = run_cli("dlq", "list")
    assert listed.returncode == 0 and "failed validation" in listed.stdout


def _items(filing: dict) -> list[str]:
    return [item for statement in filing["financials"].values() for item in statement]


def test_requests_no_vendor_can_serve_are_refused_before_fetching() -> None:
    asked = ("ingest", "--symbols", SYMBOL, "--start", START)
    alpaca = run_cli(*asked, "--end", END, "--data-type", "fundamentals", "--source", "alpaca")
    assert alpaca.returncode != 0 and "Traceback" not in alpaca.stderr
    assert "source 'alpaca' serves no fundamentals: use --source polygon for fundamentals" in alpaca.stderr
    future = run_cli(*asked, "--end", "2999-01-01", "--data-type", "fundamentals")
    assert future.returncode != 0 and "end_date 2999-01-01 is in the future" in future.stderr
    kind = run_cli(*asked, "--end", END, "--data-type", "filings")
    assert kind.returncode != 0 and "unknown data_type 'filings'" in kind.stderr
