"""The official Polygon (massive) client reads the sandbox's filings, restatements included, and
Benzinga's earnings calendar as Polygon resells it."""

from __future__ import annotations

from massive import RESTClient


def test_massive_reads_restated_filings_and_the_earnings_calendar(no_faults: str) -> None:
    client = RESTClient(api_key="sandbox", base=no_faults, retries=0)
    filings = list(client.vx.list_stock_financials("MSFT", timeframe="quarterly", limit=100))
    periods: dict[str, list[str]] = {}
    for f in filings:
        periods.setdefault(f"{f.fiscal_year}{f.fiscal_period}", []).append(f.filing_date)
    assert any(len(dates) > 1 for dates in periods.values()), "a period filed twice (restated)"
    reports = list(client.list_benzinga_earnings(ticker="MSFT", date_gte="2023-01-01", limit=100))
    assert reports and all(r.ticker == "MSFT" and r.estimated_eps is not None for r in reports)
    assert [r.date for r in reports] == sorted(r.date for r in reports)
    reported = [r for r in reports if r.actual_eps is not None]
    assert reported and all(r.date_status == "confirmed" and r.last_updated for r in reported)
    assert any(r.actual_eps is None and r.date_status == "projected" for r in reports), "the next report"
