"""Point-in-time ratios against the close of the day and earnings features as known then, through
the real stack: bars, splits and dividends, filings and the calendar ingested from the sandbox
over HTTP, then `marketpipe fundamentals SYMBOL --as-of DATE`. The expected figures are computed
from what the sandbox serves (the oracle), not from the stored rows."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import date, timedelta

import httpx
import psycopg
import pytest

from core.settings import Settings
from features.fundamentals import earnings_feature_series
from storage.fundamentals import read_earnings_versions
from tests.support.cli import run_cli
from tests.support.fundamentals import ingest, sandbox_results, wipe

SYMBOL = "FNDB"  # the sandbox splits it 2-for-1 on 2023-03-13 and pays quarterly dividends before
SPLIT_DAY = date(2023, 3, 13)
BEFORE_SPLIT = date(2023, 3, 10)  # the session before


@pytest.fixture(scope="module")
def ingested(stack: Settings) -> Iterator[None]:
    from db.connect import database_connection

    with database_connection(stack, autocommit=True) as conn:
        wipe(conn)
        ingest(SYMBOL, "corporate_actions", "2021-01-01", "2024-06-28")
        ingest(SYMBOL, "market_data", "2022-01-01", "2023-06-30")
        ingest(SYMBOL, "fundamentals", "2021-01-01", "2024-06-28")
        yield
        wipe(conn)


@pytest.fixture
def pin(stack: Settings) -> Iterator[Callable[[str], None]]:
    """Pin the stack's sandbox clock; put it back afterwards."""
    url = f"{stack.sandbox.base_url}/_sandbox/clock"

    def at(instant: str) -> None:
        response = httpx.post(url, json={"now": instant})
        assert response.status_code == 200, response.text

    try:
        yield at
    finally:
        httpx.delete(url)


def report(day: date) -> dict:
    result = run_cli("fundamentals", SYMBOL, "--as-of", day.isoformat(), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def oracle(stack: Settings, day: date) -> dict[str, float]:
    """P/E, market cap and dividend yield from the vendor's own answers about `day`."""
    filings = sandbox_results(
        stack,
        "/vX/reference/financials",
        ticker=SYMBOL,
        limit=100,
        timeframe="quarterly",
        **{"filing_date.lte": str(day)},
    )
    latest: dict[str, dict] = {}
    for f in sorted(filings, key=lambda f: f["filing_date"]):
        latest[f["end_date"]] = f  # a restatement filed by then replaces the original
    quarters = [latest[end] for end in sorted(latest)][-4:]
    income = sum(q["financials"]["income_statement"]["net_income_loss"]["value"] for q in quarters)
    shares = quarters[-1]["financials"]["income_statement"]["diluted_average_shares"]["value"]
    splits = sandbox_results(stack, "/v3/reference/splits", ticker=SYMBOL)
    ratio = math.prod(
        s["split_to"] / s["split_from"] for s in splits if quarters[-1]["end_date"] < s["execution_date"] <= str(day)
    )
    bars = httpx.get(
        f"{stack.sandbox.base_url}/v2/aggs/ticker/{SYMBOL}/range/1/day/{day - timedelta(days=7)}/{day}",
        params={"adjusted": "false", "apiKey": "test"},
        timeout=30,
    ).json()["results"]
    close = bars[-1]["c"]
    dividends = sandbox_results(stack, "/v3/reference/dividends", ticker=SYMBOL, limit=1000)
    per_share = sum(
        d["cash_amount"]
        / math.prod(
            s["split_to"] / s["split_from"] for s in splits if d["ex_dividend_date"] < s["execution_date"] <= str(day)
        )
        for d in dividends
        if str(day - timedelta(days=365)) < d["ex_dividend_date"] <= str(day)
    )
    return {
        "price": close,
        "shares": shares * ratio,
        "pe": close / (income / (shares * ratio)),
        "dividend_yield": per_share / close,
        "split_factor": ratio,
    }


def test_ratios_use_the_close_of_the_day_with_shares_and_dividends_on_its_basis(
    stack: Settings, ingested: None
) -> None:
    after = report(SPLIT_DAY)["ratios"]
    expected = oracle(stack, SPLIT_DAY)
    assert expected["split_factor"] == 2.0, "the split lies between the latest period and the day"
    for name in ("price", "shares", "pe", "dividend_yield", "split_factor"):
        assert after[name] == pytest.approx(expected[name], rel=1e-9), name
    before = report(BEFORE_SPLIT)["ratios"]
    assert before["split_factor"] == 1.0
    # Unadjusted shares against a post-split price would halve the P/E and the market cap.
    assert 0.8 < after["pe"] / before["pe"] < 1.25
    assert 0.8 < after["market_cap"] / before["market_cap"] < 1.25
    assert 0.8 < after["dividend_yield"] / before["dividend_yield"] < 1.25
    assert after["pb"] > 0 and after["ev_ebitda"] > 0


def test_the_cli_prints_the_company_as_of_a_day_and_refuses_what_it_cannot_know(ingested: None) -> None:
    text = run_cli("fundamentals", SYMBOL, "--as-of", str(SPLIT_DAY))
    assert text.returncode == 0, text.stderr
    assert f"{SYMBOL} as of {SPLIT_DAY}" in text.stdout
    assert "P/E " in text.stdout and "EV/EBITDA " in text.stdout and "(x2 for splits since the period)" in text.stdout
    early = run_cli("fundamentals", SYMBOL, "--as-of", "2001-01-01")
    assert early.returncode != 0 and "Traceback" not in early.stderr
    assert f"nothing filed for {SYMBOL} by 2001-01-01" in early.stderr
    bad = run_cli("fundamentals", SYMBOL, "--as-of", "yesterday")
    assert bad.returncode != 0 and "--as-of 'yesterday' is not a date: use YYYY-MM-DD" in bad.stderr


def test_earnings_features_as_known_before_and_after_the_report(
    stack: Settings, ingested: None, pin: Callable[[str], None], conn: psycopg.Connection
) -> None:
    calendar = sandbox_results(stack, "/benzinga/v1/earnings", ticker=SYMBOL, **{"date.gte": "2023-03-14"})
    upcoming = calendar[0]  # the first report after the split day, as the vendor knows it now
    report_day = date.fromisoformat(upcoming["date"])
    pin(f"{SPLIT_DAY}T18:00")  # the vendor's calendar as it was on the split day, after the close
    ingest(SYMBOL, "earnings", "2022-01-01", str(SPLIT_DAY + timedelta(days=200)))
    httpx.delete(f"{stack.sandbox.base_url}/_sandbox/clock")
    ingest(SYMBOL, "earnings", "2022-01-01", str(SPLIT_DAY + timedelta(days=200)))
    versions = conn.execute(
        "SELECT count(*) FROM market.earnings WHERE symbol = %s AND report_date = %s", (SYMBOL, report_day)
    ).fetchone()[0]
    assert versions == 2, "the projected report and the confirmed one"

    then = report(SPLIT_DAY)["earnings"]
    assert then["next_report_date"] == str(report_day)
    assert then["days_to_earnings"] == (report_day - SPLIT_DAY).days
    assert then["next_eps_estimate"] == upcoming["estimated_eps"]
    assert then["last_report_date"] < str(SPLIT_DAY)

    later = report(report_day + timedelta(days=1))["earnings"]
    assert later["last_report_date"] == str(report_day)
    assert later["eps_actual"] == upcoming["actual_eps"]
    expected = (upcoming["actual_eps"] - upcoming["estimated_eps"]) / abs(upcoming["estimated_eps"])
    assert later["eps_surprise"] == pytest.approx(expected, rel=1e-9)
    assert later["next_report_date"] is None or later["next_report_date"] > str(report_day)

    series = earnings_feature_series(
        read_earnings_versions(conn, [SYMBOL]), SYMBOL, [SPLIT_DAY, report_day + timedelta(days=1)]
    )
    assert series.iloc[0]["days_to_earnings"] == then["days_to_earnings"]
    assert series.iloc[1]["eps_surprise"] == pytest.approx(later["eps_surprise"], rel=1e-12)
