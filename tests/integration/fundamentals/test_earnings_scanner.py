"""`marketpipe scan earnings`: the next report of each symbol as known now, with the options'
implied move from the stored chain snapshot, checked against what the sandbox serves over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from core.settings import Settings
from tests.support.cli import run_cli
from tests.support.fundamentals import ingest, sandbox_results, wipe
from tests.support.options import forget_options, ingest_options

WITH_OPTIONS, WITHOUT = "FNDA", "FNDE"


@pytest.fixture
def clean(conn: psycopg.Connection) -> Iterator[None]:
    wipe(conn)
    forget_options(conn, WITH_OPTIONS)
    yield
    wipe(conn)
    forget_options(conn, WITH_OPTIONS)


def expected_move(stack: Settings, report: dict) -> tuple[str, float, float]:
    """(expiration, strike, implied move) from the chain the sandbox serves: the first expiry after
    the report, the strike nearest the price with both sides quoted, straddle mid / price."""
    chain = sandbox_results(stack, f"/v3/snapshot/options/{WITH_OPTIONS}", limit=250)
    report_day = report["date"]
    before_open = report["time"] < "16:00:00"
    expiries = sorted(
        {
            c["details"]["expiration_date"]
            for c in chain
            if c["details"]["expiration_date"] > report_day
            or (before_open and c["details"]["expiration_date"] == report_day)
        }
    )
    expiry = expiries[0]
    spot = chain[0]["underlying_asset"]["price"]
    sides: dict[float, dict[str, float]] = {}
    for c in chain:
        quote = c.get("last_quote") or {}
        bid, ask = quote.get("bid"), quote.get("ask")
        if c["details"]["expiration_date"] == expiry and bid and ask is not None and bid > 0 and ask >= bid:
            sides.setdefault(c["details"]["strike_price"], {})[c["details"]["contract_type"]] = (bid + ask) / 2
    both = sorted((abs(k - spot), k) for k, v in sides.items() if len(v) == 2)
    strike = both[0][1]
    return expiry, strike, sum(sides[strike].values()) / spot


def test_upcoming_earnings_with_the_implied_move_of_the_first_expiry_after(
    stack: Settings, conn: psycopg.Connection, clean: None
) -> None:
    horizon = str(date.today() + timedelta(days=150))
    for symbol in (WITH_OPTIONS, WITHOUT):
        ingest(symbol, "earnings", "2025-01-01", horizon)
    summary = ingest_options(stack, WITH_OPTIONS, with_dividends=False)
    assert not summary["failed"]
    today = datetime.now(UTC).astimezone(ZoneInfo("America/New_York")).date()
    coming = {
        symbol: next(
            r for r in sandbox_results(stack, "/benzinga/v1/earnings", ticker=symbol) if r["actual_eps"] is None
        )
        for symbol in (WITH_OPTIONS, WITHOUT)
    }

    result = run_cli("scan", "earnings", "--days", "120", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["symbol"]: r for r in json.loads(result.stdout) if r["symbol"] in coming}
    assert set(rows) == set(coming)
    for symbol, report in coming.items():
        row = rows[symbol]
        assert row["report_date"].startswith(report["date"])
        assert row["days_to_earnings"] == (date.fromisoformat(report["date"]) - today).days
        assert row["eps_estimate"] == report["estimated_eps"]
    expiry, strike, move = expected_move(stack, coming[WITH_OPTIONS])
    priced = rows[WITH_OPTIONS]
    assert priced["expiration"].startswith(expiry) and priced["strike"] == strike
    assert priced["implied_move"] == pytest.approx(move, rel=1e-9)
    assert rows[WITHOUT]["implied_move"] is None and rows[WITHOUT]["expiration"] is None

    soon = run_cli("scan", "earnings", "--days", "0", "--json")
    assert soon.returncode == 0
    assert not {r["symbol"] for r in json.loads(soon.stdout)} & set(coming) or any(
        r["date"] == str(today) for r in coming.values()
    )
    bad = run_cli("scan", "earnings", "--days", "400")
    assert bad.returncode != 0 and "days must be a whole number from 0 to 366, got 400" in bad.stderr
    when = run_cli("scan", "earnings", "--as-of", "soon")
    assert when.returncode != 0 and "as_of 'soon' is not a date or time" in when.stderr
