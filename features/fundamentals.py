"""Point-in-time valuation ratios and earnings features: pure functions of what was known at a date.

Inputs are a :class:`storage.fundamentals.PointInTime`: the statements as filed by the date (a
later restatement is not in them), the earnings calendar as known at its end, the raw close of the
last session on or before it, and the corporate actions.

**One basis for per-share figures and prices.** A filing counts its shares in the units of its
filing date: a split after the period's end but before the filing is already in its share counts
(filers restate them retroactively; GOOGL's 10-Q for Q2 2022, filed after the 20-for-1 split of
2022-07-18, reports post-split shares). The price is the raw close of the day asked about. A split
between the two would make a per-share figure and the price disagree by the split ratio, so shares
are carried forward to the price's day: ``shares x product(new_rate / old_rate)`` over the splits
with ``filing_date < ex_date <= price day`` (the period's end when the filing date is unknown).
Dividends of the trailing year are carried forward the same way (``amount / product`` over the
splits after their ex date), so every per-share figure is in the shares of the price's day and a
split changes no ratio. (Equivalently: the split-adjusted
series ending at the price's day; the raw close is that series' last value.)

Ratios (NaN where the denominator is missing or not positive, when the ratio means nothing):

- P/E = price / TTM diluted EPS, TTM EPS = sum of the last four quarters' net income / shares
- P/B = market cap / equity of the latest balance sheet
- EV/EBITDA: EV = market cap + long-term debt - cash (a line the filing lacks counts 0);
  EBITDA = TTM operating income + TTM depreciation and amortization
- dividend yield = dividends per share with ex date in the trailing 365 days / price

The trailing twelve months need four quarterly periods whose ends span about nine months (the
last four quarters, none missing); otherwise the TTM figures are NaN.

Earnings features of daily bars (feature set ``earnings1`` in features.bar_feature_values,
:func:`earnings_bar_features`): each bar sees the calendar versions known by its session's
close, so actuals published after the close (an after-the-close report) first reach the next bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.model import EXCHANGE_TZ
from features.news_sentiment import bar_close_ns
from storage.fundamentals import PointInTime, end_of_day

QUARTERS = ("Q1", "Q2", "Q3", "Q4")
_SHARES = ("diluted_average_shares", "basic_average_shares")


@dataclass(frozen=True)
class Ratios:
    symbol: str
    as_of: date
    price: float  # raw close of price_date
    price_date: date | None
    period_end: date | None  # the latest period filed by as_of
    fiscal_period: str | None
    filing_date: date | None
    restated: bool  # that period's figures are a restatement
    shares: float  # in the shares of price_date
    split_factor: float  # splits after the latest quarter's filing date, up to price_date
    market_cap: float
    eps_ttm: float
    book_value: float
    ebitda_ttm: float
    enterprise_value: float
    dividends_ttm: float  # per share of price_date
    pe: float
    pb: float
    ev_ebitda: float
    dividend_yield: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else _json_number(v)) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class EarningsFeatures:
    symbol: str
    as_of: date
    last_report_date: date | None
    last_fiscal_period: str | None
    eps_estimate: float
    eps_actual: float
    eps_surprise: float  # (actual - estimate) / |estimate|
    revenue_surprise: float
    next_report_date: date | None
    next_time_of_day: str | None
    next_eps_estimate: float
    days_to_earnings: float  # calendar days from as_of to the next report; NaN: none known

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else _json_number(v)) for k, v in asdict(self).items()}


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 and math.isfinite(numerator) else math.nan


def _day(value: Any) -> date | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def split_factor(actions: pd.DataFrame, symbol: str, after: date, until: date) -> float:
    """Shares per share of ``after`` on ``until``: the product of new/old over the splits with
    after < ex_date <= until."""
    if actions.empty:
        return 1.0
    splits = actions[(actions["symbol"] == symbol) & (actions["action"] == "split")]
    days = pd.to_datetime(splits["ex_date"], utc=True).dt.date
    inside = splits[(days > after) & (days <= until)]
    return float(np.prod((inside["new_rate"] / inside["old_rate"]).to_numpy(dtype=float))) if len(inside) else 1.0


def _items(statements: pd.DataFrame) -> pd.DataFrame:
    """One row per period (period_end, fiscal_period), one column per item."""
    wide = statements.pivot_table(
        index=["period_end", "fiscal_period", "filing_date", "restated"],
        columns="item",
        values="value",
        aggfunc="first",
    )
    return wide.reset_index().sort_values(["period_end", "fiscal_period"], key=_fy_last).reset_index(drop=True)


def _fy_last(column: pd.Series) -> pd.Series:
    """Sort key: an annual period sorts after the fourth quarter ending the same day."""
    return column.map(lambda p: (p == "FY") * 1) if column.name == "fiscal_period" else column


def trailing_sum(quarters: pd.DataFrame, item: str) -> float:
    """The sum of ``item`` over the last four quarters, NaN unless they are four consecutive ones."""
    if item not in quarters.columns or len(quarters) < 4:
        return math.nan
    last = quarters.tail(4)
    span = (last["period_end"].iloc[-1] - last["period_end"].iloc[0]).days
    values = last[item].to_numpy(dtype=float)
    if not 250 <= span <= 300 or np.isnan(values).any():
        return math.nan
    return float(values.sum())


def _value(row: pd.Series | None, item: str, default: float = math.nan) -> float:
    if row is None or item not in row.index or pd.isna(row[item]):
        return default
    return float(row[item])


def ratios(pit: PointInTime, symbol: str) -> Ratios:
    """The ratios of ``symbol`` at ``pit.as_of`` (see the module docstring)."""
    close = pit.closes[pit.closes["symbol"] == symbol]
    price = float(close["close"].iloc[-1]) if len(close) else math.nan
    price_day = _day(pd.Timestamp(close["ts"].iloc[-1]).tz_convert("America/New_York")) if len(close) else None
    statements = pit.statements[pit.statements["symbol"] == symbol]
    periods = _items(statements) if len(statements) else pd.DataFrame()
    quarters = periods[periods["fiscal_period"].isin(QUARTERS)] if len(periods) else periods
    latest = periods.iloc[-1] if len(periods) else None
    latest_quarter = quarters.iloc[-1] if len(quarters) else None
    period_end = _day(latest["period_end"]) if latest is not None else None
    reported_shares = next(
        (v for v in (_value(latest_quarter, s) for s in _SHARES) if math.isfinite(v) and v > 0), math.nan
    )
    shares_day = None  # the day whose units the reported shares are in: the filing's
    if latest_quarter is not None:
        shares_day = _day(latest_quarter["filing_date"]) or _day(latest_quarter["period_end"])
    factor = split_factor(pit.actions, symbol, shares_day, price_day) if shares_day and price_day else 1.0
    shares = reported_shares * factor
    market_cap = price * shares
    eps_ttm = trailing_sum(quarters, "net_income_loss") / shares
    book = _value(latest, "equity")
    amortization = "depreciation_and_amortization"
    ebitda = trailing_sum(quarters, "operating_income_loss") + (
        trailing_sum(quarters, amortization) if amortization in quarters.columns else 0.0
    )
    ev = market_cap + _value(latest, "long_term_debt", 0.0) - _value(latest, "cash", 0.0)
    dividends = trailing_dividends(pit.actions, symbol, price_day) if price_day else 0.0
    return Ratios(
        symbol=symbol,
        as_of=pit.as_of,
        price=price,
        price_date=price_day,
        period_end=period_end,
        fiscal_period=None if latest is None else str(latest["fiscal_period"]),
        filing_date=None if latest is None else _day(latest["filing_date"]),
        restated=bool(latest is not None and latest["restated"]),
        shares=shares,
        split_factor=factor,
        market_cap=market_cap,
        eps_ttm=eps_ttm,
        book_value=book,
        ebitda_ttm=ebitda,
        enterprise_value=ev,
        dividends_ttm=dividends,
        pe=_ratio(price, eps_ttm),
        pb=_ratio(market_cap, book),
        ev_ebitda=_ratio(ev, ebitda),
        dividend_yield=dividends / price if price > 0 else math.nan,
    )


def trailing_dividends(actions: pd.DataFrame, symbol: str, day: date) -> float:
    """Cash dividends per share of ``day`` with ex date in (day - 365 days, day]; one without an
    amount counts 0. The one reading of dividend amounts for valuation and option pricing."""
    if actions.empty:
        return 0.0
    paid = actions[(actions["symbol"] == symbol) & (actions["action"] == "dividend") & actions["amount"].notna()]
    ex = pd.to_datetime(paid["ex_date"], utc=True).dt.date
    inside = (ex > day - timedelta(days=365)) & (ex <= day)
    return float(
        sum(
            float(amount) / split_factor(actions, symbol, ex_day, day)
            for amount, ex_day in zip(paid.loc[inside, "amount"], ex[inside], strict=True)
        )
    )


def earnings_features(earnings: pd.DataFrame, symbol: str, as_of: date) -> EarningsFeatures:
    """The last reported surprise and the days to the next report, from the calendar as known at
    the end of ``as_of`` (``read_earnings_as_of``): nothing the vendor had not published by then."""
    rows = earnings[earnings["symbol"] == symbol].copy()
    rows["day"] = rows["report_date"].dt.date
    reported = rows[rows["eps_actual"].notna() & (rows["day"] <= as_of)].sort_values("day")
    upcoming = rows[(rows["day"] > as_of) | ((rows["day"] == as_of) & rows["eps_actual"].isna())].sort_values("day")
    last = reported.iloc[-1] if len(reported) else None
    coming = upcoming.iloc[0] if len(upcoming) else None
    estimate, actual = _value(last, "eps_estimate"), _value(last, "eps_actual")
    revenue_estimate, revenue_actual = _value(last, "revenue_estimate"), _value(last, "revenue_actual")
    return EarningsFeatures(
        symbol=symbol,
        as_of=as_of,
        last_report_date=None if last is None else last["day"],
        last_fiscal_period=None if last is None else f"{last['fiscal_period']} {last['fiscal_year']}",
        eps_estimate=estimate,
        eps_actual=actual,
        eps_surprise=surprise(actual, estimate),
        revenue_surprise=surprise(revenue_actual, revenue_estimate),
        next_report_date=None if coming is None else coming["day"],
        next_time_of_day=None if coming is None else str(coming["time_of_day"]),
        next_eps_estimate=_value(coming, "eps_estimate"),
        days_to_earnings=math.nan if coming is None else float((coming["day"] - as_of).days),
    )


def surprise(actual: float, estimate: float) -> float:
    """(actual - estimate) / |estimate|; NaN without both or with a zero estimate."""
    if not (math.isfinite(actual) and math.isfinite(estimate)) or estimate == 0:
        return math.nan
    return (actual - estimate) / abs(estimate)


def earnings_feature_series(
    versions: pd.DataFrame, symbol: str, days: Sequence[date], known_by: Sequence[datetime] | None = None
) -> pd.DataFrame:
    """The earnings features of ``symbol`` for each day of ``days``, each as known at the end of
    its day (or at the instant of ``known_by`` given for it, e.g. the session's close): from every
    stored version (``read_earnings_versions``), a day sees only those the vendor had published by
    then. A point-in-time series for models and backtests."""
    if known_by is not None and len(known_by) != len(days):
        raise ValueError(f"known_by has {len(known_by)} instants for {len(days)} days: give one per day")
    cutoffs = [end_of_day(day) for day in days] if known_by is None else list(known_by)
    rows = versions[versions["symbol"] == symbol].sort_values("known_at")
    key = ["symbol", "fiscal_year", "fiscal_period"]
    out = []
    for day, cutoff in zip(days, cutoffs, strict=True):
        known = rows[rows["known_at"] <= pd.Timestamp(cutoff)].drop_duplicates(key, keep="last")
        out.append(earnings_features(known, symbol, day).to_dict())
    return pd.DataFrame(out)


# The earnings features of daily bars in the feature store (features.bar_feature_values).
EARNINGS_FEATURE_SET = "earnings1"
EARNINGS_FEATURE_NAMES = (
    "eps_surprise_last",  # eps_actual - eps_estimate of the last report known
    "eps_surprise_pct_last",  # (actual - estimate) / |estimate|
    "revenue_surprise_pct_last",
    "days_to_earnings",  # calendar days to the next report known; NaN: none known
    "days_since_earnings",  # calendar days since the last report known; NaN: none known
)


def earnings_bar_features(versions: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """Long feature rows (symbol, timeframe, ts, name, value) of daily ``bars`` (symbol, ts: the
    session's midnight in New York) from the calendar's stored ``versions``: each bar sees the
    versions known by its session's close (a report published after the close first reaches the
    next bar), through :func:`earnings_feature_series`."""
    frames = []
    for symbol, group in bars.groupby("symbol", sort=True):
        stamps = pd.to_datetime(group["ts"], utc=True).sort_values()
        days = [t.date() for t in stamps.dt.tz_convert(EXCHANGE_TZ)]
        closes = [pd.Timestamp(ns, tz="UTC").to_pydatetime() for ns in bar_close_ns(stamps, "1day").tolist()]
        series = earnings_feature_series(versions, str(symbol), days, closes)
        since = [
            math.nan if pd.isna(last) else float((day - date.fromisoformat(str(last))).days)
            for day, last in zip(days, series["last_report_date"], strict=True)
        ]
        values = {
            "eps_surprise_last": series["eps_actual"].astype(float) - series["eps_estimate"].astype(float),
            "eps_surprise_pct_last": series["eps_surprise"].astype(float),
            "revenue_surprise_pct_last": series["revenue_surprise"].astype(float),
            "days_to_earnings": series["days_to_earnings"].astype(float),
            "days_since_earnings": pd.Series(since, dtype=float),
        }
        for name in EARNINGS_FEATURE_NAMES:
            frames.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "timeframe": "1day",
                        "ts": stamps.to_numpy(),
                        "name": name,
                        "value": values[name].to_numpy(dtype=np.float64, na_value=np.nan),
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=["symbol", "timeframe", "ts", "name", "value"])
    return pd.concat(frames, ignore_index=True)
