"""Quarterly and annual financial statements with filing dates, for point-in-time tests.

A statement is only visible once its filing date has passed (the usual look-ahead trap), and the
share count follows the symbol's splits, so per-share figures jump the way real ones do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from sandbox.prices import SymbolProfile, symbol_hash

FIRST_YEAR = 2000
MAX_QUARTERS = 160


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


def _quarter_bounds(q: int) -> tuple[date, date]:
    year, qi = FIRST_YEAR + q // 4, q % 4
    start = date(year, 3 * qi + 1, 1)
    end = date(year + (qi == 3), (3 * qi + 3) % 12 + 1, 1) - timedelta(days=1)
    return start, end


def filings(seed: int, profile: SymbolProfile, split_factor_at: Callable[[date], float], as_of: date) -> list[Filing]:
    """Every filing made on or before `as_of`; `split_factor_at(day)` gives cumulative splits by then."""
    rng = np.random.default_rng([seed, symbol_hash(profile.symbol), 6])
    growth = rng.normal(0.015, 0.05, MAX_QUARTERS)
    margin = np.clip(rng.normal(0.12, 0.05, MAX_QUARTERS), -0.2, 0.4)
    lag = rng.integers(25, 46, MAX_QUARTERS)
    revenue = profile.shares_outstanding * profile.start_price * 0.08 * np.exp(np.cumsum(growth))
    out: list[Filing] = []
    for q in range(MAX_QUARTERS):  # per quarter: a few dozen statements a symbol, not a hot path
        start, end = _quarter_bounds(q)
        is_q4 = q % 4 == 3
        filed = end + timedelta(days=int(lag[q]) + (30 if is_q4 else 0))
        if filed > as_of:
            break
        shares = profile.shares_outstanding * split_factor_at(end)
        rev = float(round(revenue[q], -3))
        quarter = _statement(
            start, end, filed, FIRST_YEAR + q // 4, f"Q{q % 4 + 1}", "quarterly", rev, float(margin[q]), shares
        )
        out.append(quarter)
        if is_q4:
            year_q = out[-4:]
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
