"""Validation of financial statements and earnings-calendar rows: a reason per record, pure.

A filing is one unit: when any of its line items fails, the whole filing is rejected (every one
of its rows, each carrying the filing's reasons), so nothing of it is half-stored. Earnings rows
stand alone. Reasons are ``code: detail`` naming the offending value and what is allowed:

- ``missing_date``: a filing without period end or filing date, a report without date or known_at
- ``period_after_filing``: the period ends after its filing date (a filing cannot report the future)
- ``period_inverted``: the period starts after it ends
- ``unknown_symbol``: the record is another symbol's than the one asked for, or no valid ticker
- ``unknown_period``: a fiscal period other than Q1..Q4, H1, H2, FY
- ``negative_value``: a negative revenue, asset, liability, cash or share count
- ``absurd_value``: not finite, or beyond any real company (see :data:`ABSURD`)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Items that cannot be negative in any real filing (losses, cash burn and equity may be).
NON_NEGATIVE_ITEMS = frozenset(
    {
        "revenues",
        "assets",
        "current_assets",
        "noncurrent_assets",
        "liabilities",
        "current_liabilities",
        "noncurrent_liabilities",
        "long_term_debt",
        "cash",
        "basic_average_shares",
        "diluted_average_shares",
    }
)
# Magnitudes beyond any company by unit: USD amounts above 100 trillion, share counts above a
# trillion, per-share amounts above 100,000 USD.
ABSURD = {"USD": 1e14, "shares": 1e12, "USD / shares": 1e5}
PERIODS = frozenset({"Q1", "Q2", "Q3", "Q4", "H1", "H2", "FY"})
_TICKER = re.compile(r"^[A-Z0-9]{1,10}(\.[A-Z0-9]{1,4})?$")
FILING_KEY = ["symbol", "fiscal_period", "period_end", "filing_date", "source"]


@dataclass(frozen=True)
class Checked:
    """Records split into the ones to store and the ones to dead-letter (with a ``reason``)."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame

    @property
    def reasons(self) -> dict[str, int]:
        """Rejected records per reason code."""
        if self.rejected.empty:
            return {}
        codes = self.rejected["reason"].str.split("; ").explode().str.split(":").str[0]
        return {str(k): int(v) for k, v in codes.value_counts().items()}


def _text(values: pd.Series) -> pd.Series:
    """Each value as text, missing ones included (pandas' string dtype would keep them missing)."""
    return pd.Series([str(v) for v in values], index=values.index, dtype=object)


def _reasons_of(frame: pd.DataFrame) -> pd.Series:
    return pd.Series([[] for _ in range(len(frame))], index=frame.index, dtype=object)


def _add(reasons: pd.Series, mask: np.ndarray | pd.Series, text: pd.Series | str) -> None:
    mask = np.asarray(mask, dtype=bool)
    for i in np.flatnonzero(mask):
        reasons.iat[i].append(text if isinstance(text, str) else str(text.iat[i]))


def _symbol_checks(frame: pd.DataFrame, symbol: str, reasons: pd.Series) -> None:
    symbols = frame["symbol"].astype(object)
    invalid = ~symbols.map(lambda s: isinstance(s, str) and bool(_TICKER.match(s))).to_numpy(bool)
    _add(reasons, invalid, "unknown_symbol: " + _text(symbols) + " is not a valid ticker")
    other = (symbols != symbol).to_numpy(bool) & ~invalid
    _add(reasons, other, "unknown_symbol: the record is " + _text(symbols) + f"'s, not {symbol}'s (asked for)")


def _period_checks(frame: pd.DataFrame, reasons: pd.Series) -> None:
    periods = frame["fiscal_period"].astype(object)
    bad = ~periods.isin(PERIODS).to_numpy(bool)
    _add(
        reasons,
        bad,
        "unknown_period: fiscal period " + _text(periods) + f" (allowed: {', '.join(sorted(PERIODS))})",
    )


def _day(values: pd.Series) -> pd.Series:
    return values.dt.strftime("%Y-%m-%d").astype(object)


def check_financials(statements: pd.DataFrame, symbol: str) -> Checked:
    """Split FINANCIALS rows of pages asked for ``symbol`` into accepted and rejected filings."""
    if statements.empty:
        return Checked(statements, statements.assign(reason=pd.Series([], dtype=object)))
    frame = statements.reset_index(drop=True)
    reasons = _reasons_of(frame)
    end, filed, start = frame["period_end"], frame["filing_date"], frame["period_start"]
    missing = (end.isna() | filed.isna()).to_numpy(bool)
    _add(reasons, missing, "missing_date: a filing needs its period end and filing date")
    after = (end > filed).fillna(False).to_numpy(bool)
    _add(
        reasons,
        after,
        "period_after_filing: the period ends " + _day(end) + " after its filing date " + _day(filed),
    )
    inverted = (start > end).fillna(False).to_numpy(bool)
    _add(reasons, inverted, "period_inverted: the period starts " + _day(start) + " after it ends " + _day(end))
    _symbol_checks(frame, symbol, reasons)
    _period_checks(frame, reasons)
    values = frame["value"].to_numpy(dtype=float, na_value=np.nan)
    items = frame["item"].astype(object)
    text = _text(items) + " = " + _text(pd.Series(values, index=frame.index))
    _add(reasons, ~np.isfinite(values), "absurd_value: " + text + " is not a number")
    negative = items.isin(NON_NEGATIVE_ITEMS).to_numpy(bool) & (values < 0)
    _add(reasons, negative, "negative_value: " + text + " (must be >= 0)")
    limits = frame["unit"].astype(object).map(ABSURD).astype(float).to_numpy()
    absurd = np.isfinite(values) & (np.abs(values) > np.nan_to_num(limits, nan=np.inf))
    _add(reasons, absurd, "absurd_value: " + text + " " + _text(frame["unit"]) + " is beyond any company")
    # A filing is one unit: any bad line item rejects all of it, with every reason it has.
    own = reasons.map(lambda r: "; ".join(dict.fromkeys(r)))
    keys = frame[FILING_KEY].apply(_text).agg("|".join, axis=1)
    per_filing = own.groupby(keys).agg(lambda r: "; ".join(dict.fromkeys(x for x in r if x)))
    filing_reason = keys.map(per_filing)
    bad = (filing_reason != "").to_numpy(bool)
    return Checked(
        frame[~bad].reset_index(drop=True),
        frame[bad].assign(reason=filing_reason[bad].to_numpy()).reset_index(drop=True),
    )


def check_earnings(reports: pd.DataFrame, symbol: str) -> Checked:
    """Split EARNINGS rows of pages asked for ``symbol`` into accepted and rejected reports."""
    if reports.empty:
        return Checked(reports, reports.assign(reason=pd.Series([], dtype=object)))
    frame = reports.reset_index(drop=True)
    reasons = _reasons_of(frame)
    missing = (frame["report_date"].isna() | frame["known_at"].isna()).to_numpy(bool)
    _add(reasons, missing, "missing_date: a report needs its date and the instant it was known (last_updated)")
    _symbol_checks(frame, symbol, reasons)
    _period_checks(frame, reasons)
    for column, unit in (
        ("eps_estimate", "USD / shares"),
        ("eps_actual", "USD / shares"),
        ("revenue_estimate", "USD"),
        ("revenue_actual", "USD"),
    ):
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        text = f"{column} = " + _text(pd.Series(values, index=frame.index))
        if column.startswith("revenue"):
            _add(reasons, values < 0, "negative_value: " + text + " (must be >= 0)")
        _add(reasons, np.isinf(values), "absurd_value: " + text + " is not a number")
        _add(
            reasons,
            np.isfinite(values) & (np.abs(values) > ABSURD[unit]),
            "absurd_value: " + text + " is beyond any company",
        )
    reason = reasons.map(lambda r: "; ".join(dict.fromkeys(r)))
    bad = (reason != "").to_numpy(bool)
    return Checked(
        frame[~bad].reset_index(drop=True),
        frame[bad].assign(reason=reason[bad].to_numpy()).reset_index(drop=True),
    )
