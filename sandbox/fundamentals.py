"""Quarterly and annual financial statements with filing dates, and the earnings calendar built on
them, for point-in-time tests.

A statement is only visible once its filing date has passed (the usual look-ahead trap), and the
share count follows the symbol's splits, so per-share figures jump the way real ones do. Some
quarters are restated later (a 10-Q/A): the same period filed again, months after the original,
with different figures; both filings are served, each from its own filing date.

The earnings calendar (Benzinga's shape, as Polygon resells it under `/benzinga/v1/earnings`)
has one report per quarter, a few days before its 10-Q: the consensus estimate is published 100 days
ahead (then the report is `projected`), the actual EPS and revenue (the original filing's)
once the report's time has passed (then `confirmed`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from sandbox.prices import SymbolProfile, symbol_hash

FIRST_YEAR = 2000
MAX_QUARTERS = 160
RESTATED_SHARE = 0.2  # of quarters restated later
ESTIMATE_LEAD_DAYS = 100  # the consensus (and a projected date) is published this long before the report


@dataclass(frozen=True)
class Filing:
    fiscal_year: int
    fiscal_period: str  # Q1..Q4 or FY
    timeframe: str  # quarterly or annual
    start_date: date
    end_date: date
    filing_date: date
    revenues: float
    cost_of_revenue: float
    operating_expenses: float
    net_income: float
    shares: float
    assets: float
    liabilities: float
    cash: float
    operating_cash_flow: float
    amended: bool = False  # a restatement (10-Q/A) of a period filed before

    @property
    def gross_profit(self) -> float:
        return self.revenues - self.cost_of_revenue

    @property
    def operating_income(self) -> float:
        return self.gross_profit - self.operating_expenses

    @property
    def equity(self) -> float:
        return self.assets - self.liabilities

    @property
    def eps(self) -> float:
        return round(self.net_income / self.shares, 2)

    @property
    def long_term_debt(self) -> float:
        return round(self.liabilities * 0.45, -3)

    @property
    def depreciation_and_amortization(self) -> float:
        return round(self.revenues * 0.04, -3)


def _quarter_bounds(q: int) -> tuple[date, date]:
    year, qi = FIRST_YEAR + q // 4, q % 4
    start = date(year, 3 * qi + 1, 1)
    end = date(year + (qi == 3), (3 * qi + 3) % 12 + 1, 1) - timedelta(days=1)
    return start, end


def filings(seed: int, profile: SymbolProfile, split_factor_at: Callable[[date], float], as_of: date) -> list[Filing]:
    """Every filing made on or before `as_of`, restatements included, by filing date;
    `split_factor_at(day)` gives cumulative splits by then."""
    return sorted(
        (f for f in _all_filings(seed, profile, split_factor_at, as_of) if f.filing_date <= as_of),
        key=lambda f: (f.filing_date, f.end_date, f.timeframe),
    )


def _all_filings(
    seed: int, profile: SymbolProfile, split_factor_at: Callable[[date], float], horizon: date
) -> list[Filing]:
    """Originals filed up to `horizon` and their restatements (whatever their filing date)."""
    rng = np.random.default_rng([seed, symbol_hash(profile.symbol), 6])
    growth = rng.normal(0.015, 0.05, MAX_QUARTERS)
    margin = np.clip(rng.normal(0.12, 0.05, MAX_QUARTERS), -0.2, 0.4)
    lag = rng.integers(25, 46, MAX_QUARTERS)
    revenue = profile.shares_outstanding * profile.start_price * 0.08 * np.exp(np.cumsum(growth))
    # A stream of its own, so adding restatements changed none of the original figures.
    amend = np.random.default_rng([seed, symbol_hash(profile.symbol), 7])
    restated = amend.random(MAX_QUARTERS) < RESTATED_SHARE
    restate_lag = amend.integers(60, 200, MAX_QUARTERS)
    restate_change = amend.choice([-1.0, 1.0], MAX_QUARTERS) * amend.uniform(0.02, 0.08, MAX_QUARTERS)
    out: list[Filing] = []
    for q in range(MAX_QUARTERS):  # per quarter: a few dozen statements a symbol, not a hot path
        start, end = _quarter_bounds(q)
        is_q4 = q % 4 == 3
        filed = end + timedelta(days=int(lag[q]) + (30 if is_q4 else 0))
        if filed > horizon:
            break
        shares = profile.shares_outstanding * split_factor_at(end)
        rev = float(round(revenue[q], -3))
        quarter = _statement(
            start, end, filed, FIRST_YEAR + q // 4, f"Q{q % 4 + 1}", "quarterly", rev, float(margin[q]), shares
        )
        out.append(quarter)
        if is_q4:
            year_q = [f for f in out if f.timeframe == "quarterly" and not f.amended][-4:]
            out.append(
                _statement(
                    date(quarter.fiscal_year, 1, 1),
                    end,
                    filed,
                    quarter.fiscal_year,
                    "FY",
                    "annual",
                    sum(f.revenues for f in year_q),
                    sum(f.net_income for f in year_q) / sum(f.revenues for f in year_q),
                    shares,
                )
            )
        if restated[q]:
            change = 1.0 + float(restate_change[q])
            amended = _statement(
                start,
                end,
                filed + timedelta(days=int(restate_lag[q])),
                quarter.fiscal_year,
                quarter.fiscal_period,
                "quarterly",
                float(round(rev * change, -3)),
                float(margin[q]) * change,
                shares,
            )
            out.append(replace(amended, amended=True))
    return out


@dataclass(frozen=True)
class EarningsReport:
    """One quarter's earnings report as the calendar knows it at some instant."""

    fiscal_year: int
    fiscal_period: str
    report_date: date
    report_time: time  # New York wall time: 08:00 before the open, 16:05 after the close
    estimated_eps: float
    estimated_revenue: float
    actual_eps: float | None
    actual_revenue: float | None
    date_status: str  # projected | confirmed
    last_updated: datetime  # UTC
    report_id: str


def earnings_reports(
    seed: int, profile: SymbolProfile, split_factor_at: Callable[[date], float], now_utc: datetime
) -> list[EarningsReport]:
    """Every quarter's report whose estimate is published by `now_utc`, in report order, as known
    then: actuals only once the report's instant has passed (New York time -> UTC by a fixed
    offset, good enough for a calendar: the report instant is the published time plus 5 hours)."""
    horizon = now_utc.date() + timedelta(days=ESTIMATE_LEAD_DAYS + 120)
    originals = [
        f for f in _all_filings(seed, profile, split_factor_at, horizon) if f.timeframe == "quarterly" and not f.amended
    ]
    rng = np.random.default_rng([seed, symbol_hash(profile.symbol), 8])
    n = MAX_QUARTERS  # fixed draws: a report's figures do not depend on how many follow it
    early = rng.integers(1, 8, n)
    after_close = rng.random(n) < 0.6
    eps_error = rng.normal(0.0, 0.08, n)
    revenue_error = rng.normal(0.0, 0.03, n)
    out: list[EarningsReport] = []
    for i, f in enumerate(originals):
        day = f.filing_date - timedelta(days=int(early[i]))
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        at = time(16, 5) if after_close[i] else time(8, 0)
        reported = datetime.combine(day, at, tzinfo=UTC) + timedelta(hours=5)
        published = datetime.combine(day - timedelta(days=ESTIMATE_LEAD_DAYS), time(12, 0), tzinfo=UTC)
        if published > now_utc:
            break
        known = reported <= now_utc
        out.append(
            EarningsReport(
                fiscal_year=f.fiscal_year,
                fiscal_period=f.fiscal_period,
                report_date=day,
                report_time=at,
                estimated_eps=round(f.eps * (1.0 + float(eps_error[i])) + 0.01 * float(np.sign(eps_error[i])), 2),
                estimated_revenue=float(round(f.revenues * (1.0 + float(revenue_error[i])), -3)),
                actual_eps=f.eps if known else None,
                actual_revenue=f.revenues if known else None,
                date_status="confirmed" if known else "projected",
                last_updated=reported + timedelta(minutes=5) if known else published,
                report_id=f"{symbol_hash(profile.symbol) % 10**8:08d}{f.fiscal_year}{f.fiscal_period}",
            )
        )
    return out


def _statement(
    start: date,
    end: date,
    filed: date,
    year: int,
    period: str,
    timeframe: str,
    revenue: float,
    margin: float,
    shares: float,
) -> Filing:
    net = round(revenue * margin, -3)
    cost = round(revenue * 0.55, -3)
    opex = round(revenue - cost - net / 0.79, -3)
    return Filing(
        fiscal_year=year,
        fiscal_period=period,
        timeframe=timeframe,
        start_date=start,
        end_date=end,
        filing_date=filed,
        revenues=revenue,
        cost_of_revenue=cost,
        operating_expenses=opex,
        net_income=net,
        shares=round(shares),
        assets=round(revenue * 3.2, -3),
        liabilities=round(revenue * 1.9, -3),
        cash=round(revenue * 0.4, -3),
        operating_cash_flow=round(net * 1.3, -3),
    )
