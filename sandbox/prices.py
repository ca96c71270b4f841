"""The synthetic price process: per-symbol daily history and the minute bars inside each session.

Pure functions of (seed, symbol, calendar). Design choices that matter to users of the sandbox:

* Daily OHLCV is drawn first (log-normal returns, Markov volatility regimes, jumps, gaps), and the
  minute bars of a session are then constructed to aggregate *exactly* to it (first open, last
  close, max high, min low, summed volume and trade count). So a daily bar never needs the
  390 minute bars behind it, and any aggregation of minutes agrees with the daily series.
* Random draws for the daily series have a fixed length (`HORIZON_SESSIONS`) and minute draws are
  seeded per (symbol, session), so the data of a date never changes as "today" moves on.
* Splits are triggered by the raw price crossing symbol-specific thresholds (forward splits above,
  1-for-10 reverse splits under $1.50) and dividends are paid quarterly by payers; raw prices
  drop on the ex-date, and adjustment factors are computed the way vendors do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from sandbox.sessions import NS_PER_MINUTE, SessionCalendar

HORIZON_SESSIONS = 9_000  # ~35 years of sessions from 2000; draws never depend on today's date
TRADING_DAYS = 252.0


def symbol_hash(text: str) -> int:
    """A stable 63-bit hash (Python's hash() is salted per process, which would break determinism)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def round_price(values: np.ndarray | float) -> np.ndarray:
    """Cents at or above $1, four decimals below, as US equity quotes are."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(arr >= 1.0, np.round(arr, 2), np.round(arr, 4))


@dataclass(frozen=True)
class SymbolProfile:
    """Static traits of a synthetic company, drawn once from seed + symbol."""

    symbol: str
    start_price: float
    annual_vol: float
    annual_drift: float
    adv_shares: float  # average daily volume in shares, before any split
    avg_trade_size: float
    dividend_yield: float  # 0 for non-payers
    split_threshold: float  # raw price that triggers a forward split
    tape: int  # 1 = NYSE (A), 2 = regional (B), 3 = Nasdaq (C)
    shares_outstanding: float  # before any split
    cik: str
    name: str


def symbol_profile(seed: int, symbol: str) -> SymbolProfile:
    rng = np.random.default_rng([seed, symbol_hash(symbol), 7])
    u = rng.random(10)
    payer = u[5] < 0.55
    return SymbolProfile(
        symbol=symbol,
        start_price=float(np.exp(np.log(5.0) + u[0] * np.log(60.0))),  # $5 .. $300, log-uniform
        annual_vol=float(0.15 + 0.45 * u[1] ** 1.5),
        annual_drift=float(-0.02 + 0.14 * u[2]),
        adv_shares=float(np.exp(np.log(3e5) + u[3] * np.log(100.0))),  # 0.3M .. 30M
        avg_trade_size=float(60 + 140 * u[4]),
        dividend_yield=float(0.005 + 0.035 * u[6]) if payer else 0.0,
        split_threshold=float(250 + 650 * u[7]),
        tape=int(1 + (u[8] * 3) // 1),
        shares_outstanding=float(np.exp(np.log(5e7) + u[9] * np.log(100.0))),
        cik=f"{symbol_hash(symbol) % 10**10:010d}",
        name=f"{symbol.title()} Holdings Inc.",
    )


@dataclass(frozen=True)
class DailyHistory:
    """Raw (unadjusted) daily series over every session of the calendar."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # int64
    trades: np.ndarray  # int64
    vwap: np.ndarray
    sigma: np.ndarray  # daily volatility of the regime in force
    ret: np.ndarray  # close-to-close log return of the economic value (no corporate actions)
    split_ratio: np.ndarray  # new shares per old share on the ex-date, 1.0 elsewhere
    dividend: np.ndarray  # cash per share on the ex-date, 0.0 elsewhere

    def __len__(self) -> int:
        return len(self.close)


def daily_history(seed: int, profile: SymbolProfile, calendar: SessionCalendar) -> DailyHistory:
    n_all = HORIZON_SESSIONS
    n = len(calendar)
    if n > n_all:
        raise ValueError(f"calendar has {n} sessions, more than the horizon of {n_all}")
    rng = np.random.default_rng([seed, symbol_hash(profile.symbol), 0])
    sig_base = profile.annual_vol / np.sqrt(TRADING_DAYS)
    durations = rng.geometric(1 / 40, size=n_all)
    states = (np.arange(n_all) + rng.integers(2)) % 2
    regime = np.repeat(states, durations)[:n_all]
    sigma_all = sig_base * np.where(regime == 1, 1.8, 0.75)
    z = rng.standard_normal(n_all)
    jump = (rng.random(n_all) < 0.012) * rng.normal(-0.3 * sig_base, 5 * sig_base, n_all)
    gap_share = rng.uniform(0.1, 0.5, n_all)
    gap_noise = rng.standard_normal(n_all)
    wick_up = np.abs(rng.standard_normal(n_all))
    wick_dn = np.abs(rng.standard_normal(n_all))
    vol_noise = rng.normal(0.0, 0.3, n_all)
    split_choice = rng.integers(2, 5, size=64)  # 2-, 3- or 4-for-1
    div_phase = int(rng.integers(0, 63))

    sigma = sigma_all[:n]
    r = (profile.annual_drift / TRADING_DAYS - 0.5 * sigma**2) + sigma * z[:n] + jump[:n]
    idx = np.arange(n)
    q = profile.dividend_yield / 4.0
    exdiv = (profile.dividend_yield > 0) & (idx > 0) & ((idx - div_phase) % 63 == 0)
    log_drop = np.where(exdiv, np.log1p(-q), 0.0)
    logp = np.log(profile.start_price) + np.cumsum(r + log_drop)

    # Splits: each event is one vectorized pass; a symbol has a handful at most.
    split_ratio = np.ones(n)
    hi, lo = np.log(profile.split_threshold), np.log(1.5)
    start = 1
    for choice in split_choice:
        if start >= n:
            break
        window = logp[start - 1 : n - 1]  # decide on the prior close, act on the next session
        crossing = np.flatnonzero((window > hi) | (window < lo))
        if crossing.size == 0:
            break
        j = start + int(crossing[0])
        ratio = float(choice) if logp[j - 1] > hi else 0.1
        split_ratio[j] = ratio
        logp[j:] -= np.log(ratio)
        start = j + 1

    close_raw = np.exp(logp)
    prev_close = np.concatenate([[profile.start_price], close_raw[:-1]])
    prev_adj = prev_close * np.exp(log_drop) / split_ratio
    gap = r * gap_share[:n] + 0.2 * sigma * gap_noise[:n]
    open_raw = prev_adj * np.exp(gap)
    close = round_price(close_raw)
    open_ = round_price(open_raw)
    high = np.maximum(
        round_price(np.maximum(open_raw, close_raw) * np.exp(0.6 * sigma * wick_up[:n])), np.maximum(open_, close)
    )
    low = np.minimum(
        round_price(np.minimum(open_raw, close_raw) * np.exp(-0.6 * sigma * wick_dn[:n])), np.minimum(open_, close)
    )

    minutes = calendar.minutes
    shares_factor = np.cumprod(split_ratio)
    volume = profile.adv_shares * shares_factor * np.exp(vol_noise[:n]) * (1 + 6 * np.abs(r)) * (minutes / 390)
    trades = np.maximum((volume / profile.avg_trade_size).astype(np.int64), 4 * minutes)
    volume = np.maximum(volume.astype(np.int64), trades)
    vwap = np.round((open_ + high + low + close) / 4.0, 4)
    prev_close_rounded = np.concatenate([[round_price(profile.start_price)], close[:-1]])
    dividend = np.where(exdiv, np.round(q * prev_close_rounded, 4), 0.0)
    return DailyHistory(
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        trades=trades,
        vwap=vwap,
        sigma=sigma,
        ret=r,
        split_ratio=split_ratio,
        dividend=dividend,
    )


@dataclass(frozen=True)
class Bars:
    """Columnar OHLCV bars; `t_ns` is the window start in UTC nanoseconds, `session` its session."""

    t_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray
    vwap: np.ndarray
    session: np.ndarray

    COLUMNS = ("t_ns", "open", "high", "low", "close", "volume", "trades", "vwap", "session")

    def __len__(self) -> int:
        return len(self.t_ns)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, c).nbytes for c in self.COLUMNS)

    def take(self, index: np.ndarray | slice) -> Bars:
        return Bars(*(getattr(self, c)[index] for c in self.COLUMNS))

    @staticmethod
    def concat(parts: list[Bars]) -> Bars:
        if not parts:
            return Bars.empty()
        return Bars(*(np.concatenate([getattr(p, c) for p in parts]) for c in Bars.COLUMNS))

    @staticmethod
    def empty() -> Bars:
        f, i = np.empty(0, np.float64), np.empty(0, np.int64)
        return Bars(i, f, f, f, f, i, i, f, i)


def minute_bars(
    seed: int, profile: SymbolProfile, history: DailyHistory, calendar: SessionCalendar, session: int
) -> Bars:
    """The regular-session minute bars of one session, aggregating exactly to its daily bar."""
    n = int(calendar.minutes[session])
    rng = np.random.default_rng([seed, symbol_hash(profile.symbol), 1, session])
    o, h, lo, c = (float(a[session]) for a in (history.open, history.high, history.low, history.close))
    vol, cnt = int(history.volume[session]), int(history.trades[session])
    sigma_min = float(history.sigma[session]) / np.sqrt(n)

    steps = rng.standard_normal(n) * sigma_min
    walk = np.cumsum(steps)
    frac = np.arange(1, n + 1) / n
    line = np.log(o) + frac * (np.log(c) - np.log(o))
    dev = walk - frac * walk[-1]  # Brownian bridge: zero at the close
    room_up, room_dn = np.log(h) - line, line - np.log(lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        limits = np.concatenate([room_up[dev > 0] / dev[dev > 0], room_dn[dev < 0] / -dev[dev < 0], [1.0]])
    scale = max(0.0, float(limits.min()))
    closes = round_price(np.exp(line + scale * dev))
    closes[-1] = c
    opens = np.concatenate([[o], closes[:-1]])
    wick = np.exp(np.abs(rng.standard_normal((2, n))) * sigma_min * 0.3)
    highs = np.clip(round_price(np.maximum(opens, closes) * wick[0]), np.maximum(opens, closes), h)
    lows = np.clip(round_price(np.minimum(opens, closes) / wick[1]), lo, np.minimum(opens, closes))
    highs[int(np.argmax(highs))] = h
    lows[int(np.argmin(lows))] = lo

    x = (np.arange(n) + 0.5) / n * 2 - 1
    weight = (1 + 2.5 * x**2) * np.exp(rng.normal(0, 0.35, n)) * (1 + 0.5 * np.abs(steps) / sigma_min)
    weight /= weight.sum()
    trades = 4 + np.floor(weight * (cnt - 4 * n)).astype(np.int64)
    trades[-1] += cnt - trades.sum()  # the closing cross takes the remainder
    volume = trades + np.floor(weight * (vol - cnt)).astype(np.int64)
    volume[-1] += vol - volume.sum()
    vwap = np.clip(np.round((opens + highs + lows + closes) / 4.0, 4), lows, highs)
    t_ns = int(calendar.open_ns[session]) + np.arange(n, dtype=np.int64) * NS_PER_MINUTE
    return Bars(t_ns, opens, highs, lows, closes, volume, trades, vwap, np.full(n, session, np.int64))


def aggregate(bars: Bars, keys: np.ndarray, t_ns: np.ndarray | None = None) -> Bars:
    """Aggregate consecutive bars sharing a key: first open, max high, min low, last close, sums.

    `t_ns` gives each group's window start (defaults to its first bar's time); VWAP is
    volume-weighted, as a vendor computing it over the same trades would get.
    """
    if len(bars) == 0:
        return bars
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    ends = np.concatenate([starts[1:], [len(bars)]]) - 1
    volume = np.add.reduceat(bars.volume, starts)
    pv = np.add.reduceat(bars.vwap * bars.volume, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(volume > 0, np.round(pv / np.maximum(volume, 1), 4), bars.close[ends])
    return Bars(
        t_ns=bars.t_ns[starts] if t_ns is None else t_ns,
        open=bars.open[starts],
        high=np.maximum.reduceat(bars.high, starts),
        low=np.minimum.reduceat(bars.low, starts),
        close=bars.close[ends],
        volume=volume,
        trades=np.add.reduceat(bars.trades, starts),
        vwap=vwap,
        session=bars.session[starts],
    )


def daily_bars(history: DailyHistory, calendar: SessionCalendar, lo: int, hi: int) -> Bars:
    """Daily bars of sessions [lo, hi), stamped at midnight New York time as Polygon and Alpaca do."""
    s = slice(lo, hi)
    return Bars(
        t_ns=calendar.midnight_ns[s].copy(),
        open=history.open[s],
        high=history.high[s],
        low=history.low[s],
        close=history.close[s],
        volume=history.volume[s],
        trades=history.trades[s],
        vwap=history.vwap[s],
        session=np.arange(lo, hi, dtype=np.int64),
    )


ADJUSTMENTS = ("raw", "split", "dividend", "all")


def adjustment_factors(history: DailyHistory, as_of_index: int, adjustment: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-session (price, volume) multipliers for events with ex-date after the session, up to as_of.

    Split factor: divide prices (multiply volume) by the product of later split ratios.
    Dividend factor: multiply prices by (1 - dividend / prior close) of each later ex-date, the
    CRSP/Yahoo convention. Events after `as_of_index` have not happened yet and are ignored.
    """
    if adjustment not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {adjustment!r}; expected one of {ADJUSTMENTS}")
    n = len(history)
    price = np.ones(n)
    volume = np.ones(n)
    stop = min(as_of_index + 1, n)
    if stop <= 0:
        return price, volume
    if adjustment in ("split", "all"):
        later = _product_after(history.split_ratio[:stop])
        price[:stop] /= later
        volume[:stop] *= later
        price[stop:] = 1.0
    if adjustment in ("dividend", "all"):
        prev_close = np.concatenate([[np.nan], history.close[:-1]])
        factor = np.where(history.dividend > 0, 1.0 - history.dividend / prev_close, 1.0)
        price[:stop] *= _product_after(factor[:stop])
    return price, volume


def _product_after(values: np.ndarray) -> np.ndarray:
    """out[i] = prod(values[i+1:]), vectorized with a reversed cumulative product."""
    rev = np.cumprod(values[::-1])[::-1]
    return np.concatenate([rev[1:], [1.0]])


def apply_adjustment(bars: Bars, price_factor: np.ndarray, volume_factor: np.ndarray) -> Bars:
    """Scale prices/volumes by each bar's session factor; rounding matches across vendors."""
    if len(bars) == 0:
        return bars
    pf = price_factor[bars.session]
    vf = volume_factor[bars.session]
    if np.all(pf == 1.0) and np.all(vf == 1.0):
        return bars

    def scale(a: np.ndarray) -> np.ndarray:
        return np.where(pf == 1.0, a, np.round(a * pf, 4))

    return Bars(
        t_ns=bars.t_ns,
        open=scale(bars.open),
        high=scale(bars.high),
        low=scale(bars.low),
        close=scale(bars.close),
        volume=np.round(bars.volume * vf).astype(np.int64),
        trades=bars.trades,
        vwap=scale(bars.vwap),
        session=bars.session,
    )
