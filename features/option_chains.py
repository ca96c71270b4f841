"""Our implied volatility and greeks for whole option chains (pure: frames in, frames out).

A chain snapshot (``core.model.OPTION_SNAPSHOTS`` rows that passed :mod:`quality.options`) is
priced with the numba kernel of :mod:`features.options` (Black-Scholes-Merton, continuous dividend
yield) under these conventions, which the sandbox's model shares:

- **Time to expiry**: from the snapshot instant ``ts`` to 16:00 New York of the expiration date, in
  years of 365 days.
- **Rate**: the stored rate curve (``market.rate_curve``) at the contract's tenor in days, linear
  between points and flat beyond the ends (:func:`rate_at`).
- **Dividend yield**: the underlying's cash dividends with an ex date in the 365 days up to the
  snapshot's New York date, in that date's shares (across a split), over the underlying's price
  (:func:`trailing_dividend_yield`); 0 for an underlying with no stored dividend.
- **Price**: the mid of bid and ask when the contract has a two-sided quote (ask > 0), else the
  last trade. A crossed quote (bid above ask) gets no IV (reason ``IV_CROSSED``), not the last
  trade's: the quote says the market is broken, not that the trade is current.

Every quote also gets :class:`QuoteFlag` bits describing what it looks like (crossed, stale, zero
bid, below intrinsic, no quote), whether or not an IV was found: readers filter on them.

:func:`atm_iv_at_tenors` reads a snapshot's term structure (ATM IV by expiry) at standard tenors,
linear in total variance between the bracketing expiries and never extrapolated.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import numpy as np
import pandas as pd

from core.options import NEW_YORK, expiry_instants
from features.fundamentals import trailing_dividends
from features.options import IV_BELOW_INTRINSIC, IV_CROSSED, IV_OK, option_greeks

SECONDS_PER_YEAR = 365 * 86_400.0


class QuoteFlag(enum.IntFlag):
    """Bits of ``market.option_quotes.quote_flags`` (migration 0019)."""

    CROSSED = 1  # bid above ask
    STALE = 2  # the quote is older than the snapshot by more than the stale limit
    ZERO_BID = 4  # a two-sided quote with bid 0
    BELOW_INTRINSIC = 8  # the price is below the discounted intrinsic value
    NO_QUOTE = 16  # no two-sided quote: priced off the last trade (or not at all)


def years_to_expiry(expiration: pd.Series, ts: pd.Series) -> np.ndarray:
    """Years of 365 days from each snapshot instant to its contract's expiry (negative once expired)."""
    delta = expiry_instants(expiration) - pd.to_datetime(ts, utc=True)
    return delta.dt.total_seconds().to_numpy(dtype=np.float64) / SECONDS_PER_YEAR


def rate_at(tenor_days: np.ndarray, curve: pd.DataFrame) -> np.ndarray:
    """The curve's rate at each tenor: linear between its points, flat beyond the ends.
    ``curve``: columns ``tenor_days`` and ``rate``; empty means no curve (NaN: no IV)."""
    if curve.empty:
        return np.full(len(tenor_days), np.nan)
    points = curve.sort_values("tenor_days")
    return np.interp(tenor_days, points["tenor_days"].to_numpy(float), points["rate"].to_numpy(float))


def trailing_dividend_yield(actions: pd.DataFrame, symbol: str, snapshot: pd.Timestamp, spot: float) -> float:
    """Cash dividends of ``symbol`` with an ex date in the 365 days up to ``snapshot``'s New York
    date, in the shares of that date (a dividend before a split inside the year divided by its
    ratio, :func:`features.fundamentals.trailing_dividends`), over ``spot``; 0 without dividends or
    a usable spot. ``actions``: CORPORATE_ACTIONS rows."""
    if actions.empty or not np.isfinite(spot) or spot <= 0:
        return 0.0
    day = pd.Timestamp(snapshot).tz_convert(NEW_YORK).date()
    return trailing_dividends(actions, symbol, day) / spot


def price_chain(
    chain: pd.DataFrame,
    *,
    curve: pd.DataFrame,
    dividend_yields: Mapping[str, float],
    stale_after: pd.Timedelta,
    threads: int | None = None,
) -> pd.DataFrame:
    """``chain`` with ``rate``, ``dividend_yield``, ours as ``our_iv``, ``our_delta``, ``our_gamma``,
    ``our_vega``, ``our_theta``, ``our_rho`` (NaN where ``iv_reason`` is not 0: beside the vendor's
    ``delta``.. of the snapshot model), ``iv_reason`` and ``quote_flags``, on every row at once."""
    out = chain.copy()
    n = len(out)
    bid = out["bid"].to_numpy(dtype=np.float64, na_value=np.nan)
    ask = out["ask"].to_numpy(dtype=np.float64, na_value=np.nan)
    last = out["last_price"].to_numpy(dtype=np.float64, na_value=np.nan)
    spot = out["underlying_price"].to_numpy(dtype=np.float64, na_value=np.nan)
    quoted = np.isfinite(bid) & np.isfinite(ask) & (ask > 0)
    crossed = quoted & (bid > ask)
    price = np.where(quoted, 0.5 * (bid + ask), last)
    price = np.where(crossed, np.nan, price)
    reason = np.where(crossed, IV_CROSSED, IV_OK).astype(np.int8)

    years = years_to_expiry(out["expiration"], out["ts"]) if n else np.empty(0)
    rate = rate_at(years * 365.0, curve)
    q = out["underlying"].map(lambda s: dividend_yields.get(str(s), 0.0)).to_numpy(dtype=np.float64)
    is_call = (out["contract_type"] == "call").to_numpy(dtype=bool)
    strike = out["strike"].to_numpy(dtype=np.float64)
    greeks = option_greeks(price, spot, strike, years, rate, q, is_call, reason=reason, threads=threads)

    quote_ts = pd.to_datetime(out["quote_ts"], utc=True)
    age = pd.to_datetime(out["ts"], utc=True) - quote_ts
    flags = np.zeros(n, dtype=np.int64)
    flags |= np.where(crossed, int(QuoteFlag.CROSSED), 0)
    flags |= np.where((age > stale_after).fillna(False).to_numpy(dtype=bool), int(QuoteFlag.STALE), 0)
    flags |= np.where(quoted & (bid == 0), int(QuoteFlag.ZERO_BID), 0)
    flags |= np.where(greeks.reason == IV_BELOW_INTRINSIC, int(QuoteFlag.BELOW_INTRINSIC), 0)
    flags |= np.where(~quoted, int(QuoteFlag.NO_QUOTE), 0)

    solved = greeks.reason == IV_OK
    return out.assign(
        rate=rate,
        dividend_yield=q,
        our_iv=np.where(solved, greeks.iv, np.nan),
        our_delta=np.where(solved, greeks.delta, np.nan),
        our_gamma=np.where(solved, greeks.gamma, np.nan),
        our_vega=np.where(solved, greeks.vega, np.nan),
        our_theta=np.where(solved, greeks.theta, np.nan),
        our_rho=np.where(solved, greeks.rho, np.nan),
        iv_reason=greeks.reason.astype(np.int64),
        quote_flags=flags,
    )


# Tenors (days) of the per-snapshot term structure in the feature store, as atm_iv_<n>d; the 30-day
# point is the view's atm_iv_30d (features.option_chain_features), already among the daily features.
TERM_TENORS_DAYS: tuple[int, ...] = (7, 60, 90)
_SAME_TIME = 1e-9  # years (0.03 s): an expiry this close to a tenor is at it


def atm_iv_at_tenors(years: np.ndarray, atm_iv: np.ndarray, tenor_days: tuple[int, ...]) -> np.ndarray:
    """ATM IV at each tenor (days of 365-day years) from a term structure of expiries ``years``
    (time to expiry) and their ``atm_iv``: linear in total variance ``sigma^2 T`` between the last
    expiry below the tenor and the first above it, ``sqrt(w(t) / t)``. An expiry at the tenor
    (within 0.03 s: rounding) gives its own IV; NaN where no expiry with an IV lies on each side
    (no extrapolation). Expiries without a finite positive IV or time are ignored."""
    t = np.asarray(years, dtype=np.float64)
    iv = np.asarray(atm_iv, dtype=np.float64)
    usable = np.isfinite(t) & np.isfinite(iv) & (t > 0) & (iv > 0)
    order = np.argsort(t[usable], kind="stable")
    t, vol = t[usable][order], iv[usable][order]
    variance = vol**2 * t
    out = np.full(len(tenor_days), np.nan)
    for i, days in enumerate(tenor_days):
        tenor = days / 365.0
        at = np.flatnonzero(np.abs(t - tenor) <= _SAME_TIME)
        if len(at):  # the years of a stored snapshot come through SQL: equal up to rounding
            out[i] = vol[at[0]]
            continue
        below = np.flatnonzero(t < tenor)
        above = np.flatnonzero(t > tenor)
        if len(below) == 0 or len(above) == 0:
            continue
        lo, hi = below[-1], above[0]
        w = variance[lo] + (variance[hi] - variance[lo]) * (tenor - t[lo]) / (t[hi] - t[lo])
        out[i] = np.sqrt(w / tenor)
    return out
