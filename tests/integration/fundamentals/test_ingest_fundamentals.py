"""Filings and the earnings calendar through the real stack: the ingest flow against the sandbox
over HTTP, the raw zone, validation, the hot store, point-in-time reads; restatements never leak
backwards; a rerun changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pandas as pd
import psycopg
import pytest

from core.calendar import nyse_sessions
from core.settings import Settings
from storage.fundamentals import (
    end_of_day,
    point_in_time,
    read_earnings_as_of,
    read_financials_as_of,
    write_financials,
)
from storage.router import StorageRouter
from tests.support.cli import run_cli
from tests.support.fundamentals import FUND_SYMBOLS, ingest, sandbox_results, wipe

START, END = "2021-01-01", "2024-06-28"


@pytest.fixture
def clean(conn: psycopg.Connection) -> Iterator[None]:
    wipe(conn)
    yield
    wipe(conn)


def _ingest(symbol: str, data_type: str, start: str = START, end: str = END) -> str:
    return ingest(symbol, data_type, start, end)


def _revenue(frame, period_end: str, fiscal_period: str) -> float:
    rows = frame[
        (frame["period_end"].dt.strftime("%Y-%m-%d") == period_end)
        & (frame["fiscal_period"] == fiscal_period)
        & (frame["item"] == "revenues")
    ]
    assert len(rows) == 1, rows
    return float(rows["value"].iloc[0])


def _restated(stack: Settings) -> tuple[str, list[dict], dict, dict]:
    """The first of FUND_SYMBOLS with a period filed twice in the window, what the sandbox serves
    of it, and that period's original and restated filing."""
    for symbol in FUND_SYMBOLS:
        served = sandbox_results(
            stack,
            "/vX/reference/financials",
            ticker=symbol,
            limit=100,
            **{"filing_date.gte": START, "filing_date.lte": END},
        )
        by_period: dict[tuple[str, str], list[dict]] = {}
        for f in served:
            by_period.setdefault((f["end_date"], f["fiscal_period"]), []).append(f)
        restated = [sorted(v, key=lambda f: f["filing_date"]) for v in by_period.values() if len(v) > 1]
        if restated:
            return symbol, served, restated[0][0], restated[0][-1]
    raise AssertionError(f"the sandbox restated nothing of {FUND_SYMBOLS} in {START}..{END}")


def test_restatement_is_seen_only_from_its_filing_date_and_reruns_change_nothing(
    stack: Settings, conn: psycopg.Connection, clean: None
) -> None:
    symbol, served, original, amended = _restated(stack)

    out = _ingest(symbol, "fundamentals")
    stored = conn.execute(
        "SELECT count(DISTINCT (fiscal_period, period_end, filing_date)) FROM market.financial_statements "
        "WHERE symbol = %s",
        (symbol,),
    ).fetchone()[0]
    assert stored == len(served), out

    period = (original["end_date"], original["fiscal_period"])
    filed, refiled = date.fromisoformat(original["filing_date"]), date.fromisoformat(amended["filing_date"])
    before = read_financials_as_of(conn, [symbol], refiled - timedelta(days=1))
    after = read_financials_as_of(conn, [symbol], refiled)
    too_early = read_financials_as_of(conn, [symbol], filed - timedelta(days=1))
    revenue = original["financials"]["income_statement"]["revenues"]["value"]
    revised = amended["financials"]["income_statement"]["revenues"]["value"]
    assert revenue != revised
    assert _revenue(before, *period) == revenue
    assert _revenue(after, *period) == revised
    assert bool(after.loc[after["item"] == "revenues", "restated"].any())
    assert not (
        (too_early["period_end"].dt.strftime("%Y-%m-%d") == period[0]) & (too_early["fiscal_period"] == period[1])
    ).any()

    count_sql = "SELECT count(*) FROM market.financial_statements WHERE symbol = %s"
    count = conn.execute(count_sql, (symbol,)).fetchone()[0]
    assert f"stored {count:,} (0 rejected)" in out
    incremental = _ingest(symbol, "fundamentals")
    assert "fetched 0 records, stored 0" in incremental, "a rerun resumes after the newest filing date"
    again = run_cli(
        "ingest", "--symbols", symbol, "--start", START, "--end", END, "--data-type", "fundamentals", "--full"
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"fetched {count:,} records, stored 0 (0 rejected)" in again.stdout
    assert conn.execute(count_sql, (symbol,)).fetchone()[0] == count


def test_earnings_versions_as_known_at_each_instant(stack: Settings, conn: psycopg.Connection, clean: None) -> None:
    symbol = FUND_SYMBOLS[-1]
    out = _ingest(symbol, "earnings", "2023-01-01", (date.today() + timedelta(days=150)).isoformat())
    rows = conn.execute(
        "SELECT fiscal_year, fiscal_period, report_date, eps_actual, known_at FROM market.earnings WHERE symbol = %s "
        "ORDER BY report_date",
        (symbol,),
    ).fetchall()
    assert rows, out
    reported = [r for r in rows if r[3] is not None]
    upcoming = [r for r in rows if r[3] is None]
    assert reported and upcoming, "the calendar holds past reports and the next one"
    last = reported[-1]
    known = read_earnings_as_of(conn, [symbol], last[4])
    assert known.loc[known["fiscal_period"] == last[1], "eps_actual"].notna().all()
    earlier = read_earnings_as_of(conn, [symbol], end_of_day(last[2] - timedelta(days=1)))
    assert (earlier["fiscal_year"].astype(str) + earlier["fiscal_period"].astype(str) != f"{last[0]}{last[1]}").all()


def test_the_acceptance_time_is_stored_and_a_filing_counts_from_the_first_close_after_it(
    stack: Settings, conn: psycopg.Connection, clean: None
) -> None:
    symbol, served, original, _ = _restated(stack)
    _ingest(symbol, "fundamentals")
    accepted = conn.execute(
        "SELECT DISTINCT filing_date, accepted_at FROM market.financial_statements WHERE symbol = %s", (symbol,)
    ).fetchall()
    assert {(d.isoformat(), t) for d, t in accepted} == {
        (f["filing_date"], pd.Timestamp(f["acceptance_datetime"]).to_pydatetime()) for f in served
    }
    # the same quarter filed again, accepted after the close of the session it is dated (the sandbox
    # accepts at 16:05 UTC, in the session), and once more without an acceptance time
    day = pd.Timestamp(nyse_sessions(date.fromisoformat(original["filing_date"]), date(2024, 6, 28)).dates[0]).date()
    next_day = pd.Timestamp(nyse_sessions(day + timedelta(days=1), day + timedelta(days=10)).dates[0]).date()
    after_close = pd.Timestamp(f"{day} 16:30", tz="America/New_York")
    period = (original["end_date"], original["fiscal_period"])
    stored = read_financials_as_of(conn, [symbol], next_day)
    known = stored[(stored["period_end"].dt.strftime("%Y-%m-%d") == period[0]) & (stored["fiscal_period"] == period[1])]

    def refile(source: str, accepted_at: pd.Timestamp | None) -> None:
        write_financials(
            conn,
            known.drop(columns="restated").assign(
                source=source, accepted_at=accepted_at, filing_date=pd.Timestamp(day, tz="UTC")
            ),
        )

    def newest_source(as_of: date) -> str:
        with StorageRouter.connect(stack) as router:
            statements = point_in_time(router, [symbol], as_of).statements
        of_period = statements[
            (statements["period_end"].dt.strftime("%Y-%m-%d") == period[0]) & (statements["fiscal_period"] == period[1])
        ]
        (source,) = set(of_period["source"])
        return source

    # a source named to rank first among versions of one filing date, once known
    refile("a-late", after_close)
    assert newest_source(day) == "polygon" and newest_source(next_day) == "a-late"
    refile("a-a-untimed", None)  # no acceptance time: from the first close after its filing date
    assert newest_source(day) == "polygon" and newest_source(next_day) == "a-a-untimed"


def test_a_refetch_without_an_acceptance_time_keeps_the_stored_one(conn: psycopg.Connection, clean: None) -> None:
    accepted = pd.Timestamp("2023-02-02T21:05:00Z")
    filing = pd.DataFrame(
        {
            "symbol": [FUND_SYMBOLS[0]] * 2,
            "period_start": [pd.Timestamp("2022-10-01", tz="UTC")] * 2,
            "period_end": [pd.Timestamp("2022-12-31", tz="UTC")] * 2,
            "filing_date": [pd.Timestamp("2023-02-02", tz="UTC")] * 2,
            "accepted_at": [accepted] * 2,
            "fiscal_period": ["Q1"] * 2,
            "fiscal_year": ["2023"] * 2,
            "statement": ["income_statement"] * 2,
            "item": ["revenues", "net_income"],
            "value": [1.0e9, 2.0e8],
            "unit": ["USD"] * 2,
            "source": ["polygon"] * 2,
        }
    )
    write_financials(conn, filing)

    # Polygon omits acceptance_datetime this time, and has restated one value
    write_financials(conn, filing.assign(accepted_at=pd.NaT, value=[1.5e9, 2.0e8]))

    stored = conn.execute(
        "SELECT item, value, accepted_at FROM market.financial_statements WHERE symbol = %s ORDER BY item",
        (FUND_SYMBOLS[0],),
    ).fetchall()
    assert stored == [("net_income", 2.0e8, accepted.to_pydatetime()), ("revenues", 1.5e9, accepted.to_pydatetime())]
