"""The sandbox's filings (restatements) and earnings calendar: what is known when."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from sandbox.clock import MarketClock
from sandbox.market import Market

AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


def test_some_quarters_are_restated_later_with_other_figures(market: Market) -> None:
    filings = market.filings("MSFT")
    originals = {(f.end_date, f.fiscal_period): f for f in filings if not f.amended}
    amended = [f for f in filings if f.amended]
    assert amended, "expected at least one restatement over 24 years of quarters"
    for restated in amended:
        original = originals[(restated.end_date, restated.fiscal_period)]
        assert restated.filing_date > original.filing_date
        assert restated.revenues != original.revenues
        assert restated.timeframe == "quarterly"


def test_restatements_leave_the_originals_alone_and_appear_only_once_filed() -> None:
    early = Market(42, as_of=date(2020, 1, 31)).filings("MSFT")
    late = Market(42, as_of=AS_OF).filings("MSFT")
    later_originals = {(f.end_date, f.fiscal_period, f.filing_date): f for f in late if not f.amended}
    for f in early:
        assert f.filing_date <= date(2020, 1, 31)
        if not f.amended:
            assert later_originals[(f.end_date, f.fiscal_period, f.filing_date)] == f


def test_filings_follow_the_clock_not_only_the_as_of_day() -> None:
    clock = MarketClock.for_config(None, datetime(2022, 3, 1, 12, tzinfo=UTC).replace(tzinfo=None))
    pinned = Market(42, as_of=AS_OF, clock=clock)
    assert pinned.filings("MSFT")
    assert max(f.filing_date for f in pinned.filings("MSFT")) <= date(2022, 3, 1)


def test_earnings_have_actuals_only_after_their_report(market: Market) -> None:
    now = datetime.fromtimestamp(market.now_ns() / 1e9, tz=UTC)
    reports = market.earnings("MSFT")
    assert any(r.actual_eps is None for r in reports), "an upcoming report is on the calendar"
    originals = {(str(f.fiscal_year), f.fiscal_period): f for f in market.filings("MSFT") if not f.amended}
    for r in reports:
        assert r.last_updated <= now
        if r.actual_eps is None:
            assert r.date_status == "projected" and r.report_date >= now.date()
        else:
            assert r.date_status == "confirmed"
            assert r.actual_eps == originals[(str(r.fiscal_year), r.fiscal_period)].eps
            assert r.report_date <= originals[(str(r.fiscal_year), r.fiscal_period)].filing_date


def test_a_reports_estimate_does_not_depend_on_when_it_is_asked() -> None:
    early = MarketClock.for_config(None, datetime(2023, 3, 13, 18))
    then = {(r.fiscal_year, r.fiscal_period): r for r in Market(42, as_of=AS_OF, clock=early).earnings("MSFT")}
    now = {(r.fiscal_year, r.fiscal_period): r for r in Market(42, as_of=AS_OF).earnings("MSFT")}
    assert then
    for key, report in then.items():
        assert now[key].estimated_eps == report.estimated_eps
        assert now[key].report_date == report.report_date
