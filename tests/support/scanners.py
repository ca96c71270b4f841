"""A small synthetic market for the scanner tests: bars and feature rows for symbols no other test uses.

Tests share one database, so every assertion is scoped to the market's own symbols; scanners are
called with limits large enough that other tests' symbols cannot push these out of the result.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg

from core.model import BARS, frame
from tests.support.storage import on_tick_grid

# Two sessions of 1-minute bars (a winter Monday and Tuesday, 09:30-10:29 New York) and 60 daily bars.
# The intraday days lie after any other test's bars, so that this module's symbols hold the newest
# minute: top_movers_minutes' set-based path serves them, and the stale symbol (the last, whose bars
# stop STALE_MINUTES early) its per-symbol fallback.
INTRADAY_DAYS = ("2031-02-03 14:30", "2031-02-04 14:30")
STALE_MINUTES = 3
MINUTES_PER_DAY = 60
DAILY_START = "2024-11-01"
DAILY_BARS = 60


@dataclass(frozen=True)
class Market:
    symbols: list[str]
    intraday: pd.DataFrame  # 1min bars as written
    daily: pd.DataFrame  # 1day bars as written
    features: pd.DataFrame  # features.bar_features rows as written (with rsi and computed_at)


def _walk(rng: np.random.Generator, n: int, start: float) -> np.ndarray:
    return start * np.exp(np.cumsum(rng.normal(0, 0.01, n)))


def intraday_bars(symbols: list[str], rng: np.random.Generator) -> pd.DataFrame:
    parts = []
    for k, symbol in enumerate(symbols):
        ts = pd.DatetimeIndex(
            [t for day in INTRADAY_DAYS for t in pd.date_range(day, periods=MINUTES_PER_DAY, freq="1min", tz="UTC")]
        )
        close = _walk(rng, len(ts), 50.0 + 10 * k)
        open_ = close * (1 + rng.normal(0, 0.002, len(ts)))
        # the second session opens with a gap: up, down, or small, by symbol
        first_of_day2 = MINUTES_PER_DAY
        open_[first_of_day2] = close[first_of_day2 - 1] * (1.05, 0.96, 1.001, 1.03, 0.97, 1.0)[k % 6]
        volume = rng.integers(1_000, 2_000, len(ts))
        if k % 3 == 0:
            volume[-1] = 50_000  # a spike on the latest bar
        parts.append(
            frame(
                BARS,
                {
                    "symbol": symbol,
                    "ts": ts,
                    "timeframe": "1min",
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.001,
                    "low": np.minimum(open_, close) * 0.999,
                    "close": close,
                    "volume": volume,
                    "vwap": close,
                    "trade_count": volume // 10,
                    "source": "test",
                },
                what="test bars",
            )
        )
    stale = parts[-1]
    parts[-1] = stale.iloc[: len(stale) - STALE_MINUTES]
    return on_tick_grid(pd.concat(parts, ignore_index=True))


def daily_bars(symbols: list[str], rng: np.random.Generator) -> pd.DataFrame:
    sessions = pd.bdate_range(DAILY_START, periods=DAILY_BARS)
    ts = sessions.tz_localize("America/New_York").tz_convert("UTC")
    parts = []
    for k, symbol in enumerate(symbols):
        close = _walk(rng, DAILY_BARS, 30.0 + 5 * k)
        open_ = close * (1 + rng.normal(0, 0.01, DAILY_BARS))
        high, low = np.maximum(open_, close) * 1.01, np.minimum(open_, close) * 0.99
        if k % 4 == 0:  # a breakout above every earlier high
            high[-1] = high.max() * 1.05
        if k % 4 == 1:  # a breakdown below every earlier low
            low[-1] = low.min() * 0.95
        volume = rng.integers(100_000, 200_000, DAILY_BARS)
        parts.append(
            frame(
                BARS,
                {
                    "symbol": symbol,
                    "ts": ts,
                    "timeframe": "1day",
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                    "vwap": close,
                    "trade_count": volume // 10,
                    "source": "test",
                },
                what="test bars",
            )
        )
    return on_tick_grid(pd.concat(parts, ignore_index=True))


def feature_rows(daily: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """RSI for the last 5 daily bars of each symbol in two feature sets; the newer set was computed
    later, except for the last symbol, whose older set was recomputed last (the tie-break)."""
    rows = []
    symbols = list(dict.fromkeys(daily["symbol"]))
    for k, symbol in enumerate(symbols):
        ts = daily.loc[daily["symbol"] == symbol, "ts"].iloc[-5:]
        for version, computed in (("std1-old", "2025-01-01"), ("std1-new", "2025-01-02")):
            if k == len(symbols) - 1:
                computed = {"std1-old": "2025-01-03", "std1-new": "2025-01-02"}[version]
            rsi = rng.uniform(0, 100, len(ts))
            rsi[-1] = (95.0, 5.0, 50.0, 70.0, 30.0, np.nan)[k % 6] if version == "std1-new" else 80.0 - k
            rows.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "timeframe": "1day",
                        "ts": ts.to_numpy(),
                        "feature_set": version,
                        "rsi": rsi,
                        "computed_at": pd.Timestamp(computed, tz="UTC"),
                    }
                )
            )
    out = pd.concat(rows, ignore_index=True)
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    return out


def write_features(conn: psycopg.Connection, rows: pd.DataFrame) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO features.bar_features (symbol, timeframe, ts, feature_set, rsi, computed_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    r.symbol,
                    r.timeframe,
                    r.ts.to_pydatetime(),
                    r.feature_set,
                    None if pd.isna(r.rsi) else float(r.rsi),
                    r.computed_at.to_pydatetime(),
                )
                for r in rows.itertuples()
            ],
        )


def delete_symbols(conn: psycopg.Connection, symbols: list[str]) -> None:
    for table in ("market.bars_intraday", "market.bars_daily", "market.latest_bars", "features.bar_features"):
        conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (symbols,))  # type: ignore[arg-type]


def unique_symbols(count: int) -> list[str]:
    tag = uuid.uuid4().hex[:6].upper()
    return [f"Q{tag}{i}" for i in range(count)]
