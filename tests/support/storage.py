"""Small synthetic frames in the canonical dtypes, and a reader of binary COPY streams."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from core.model import BARS, CORPORATE_ACTIONS, frame

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def bars(
    symbol: str = "TST",
    n: int = 3,
    *,
    timeframe: str = "1min",
    start: str = "2024-03-04 14:30",
    close: float = 100.0,
    source: str = "test",
    **overrides: object,
) -> pd.DataFrame:
    step = {"1min": "1min", "5min": "5min", "15min": "15min", "1hour": "1h", "1day": "1D"}[timeframe]
    ts = pd.date_range(start, periods=n, freq=step, tz="UTC")
    closes = [close + i for i in range(n)]
    columns: dict[str, object] = {
        "symbol": symbol,
        "ts": ts,
        "timeframe": timeframe,
        "open": closes,
        "high": [c + 1 for c in closes],
        "low": [c - 1 for c in closes],
        "close": closes,
        "volume": [1000 * (i + 1) for i in range(n)],
        "vwap": closes,
        "trade_count": [10 + i for i in range(n)],
        "source": source,
    }
    columns.update(overrides)
    return frame(BARS, columns, what="test bars")


def read_copy_binary(stream: bytes, types: list[str]) -> list[tuple]:
    """Decode a PGCOPY binary stream (the subset of types the writer emits)."""
    assert stream[:11] == b"PGCOPY\n\xff\r\n\x00"
    pos = 11 + 4 + 4
    rows = []
    while True:
        (count,) = struct.unpack_from(">h", stream, pos)
        pos += 2
        if count == -1:
            assert pos == len(stream), "bytes after the trailer"
            return rows
        assert count == len(types)
        row = []
        for pg_type in types:
            (length,) = struct.unpack_from(">i", stream, pos)
            pos += 4
            if length == -1:
                row.append(None)
                continue
            raw = stream[pos : pos + length]
            pos += length
            if pg_type == "text":
                row.append(raw.decode())
            elif pg_type == "float8":
                row.append(struct.unpack(">d", raw)[0])
            elif pg_type == "int8":
                row.append(struct.unpack(">q", raw)[0])
            elif pg_type == "price":  # ticks of 1/10,000 dollar on the wire, dollars here
                row.append(struct.unpack(">q", raw)[0] / 10_000)
            elif pg_type == "timestamptz":
                row.append(PG_EPOCH + timedelta(microseconds=struct.unpack(">q", raw)[0]))
            elif pg_type == "date":
                row.append(date(2000, 1, 1) + timedelta(days=struct.unpack(">i", raw)[0]))
        rows.append(tuple(row))


# The hand example of the adjustment docs: a $2 dividend ex 2024-06-06 after a raw close of 104,
# then a 2-for-1 split ex 2024-06-10. Daily raw closes by session date:
HAND_CLOSES = {
    "2024-06-03": 100.0,
    "2024-06-04": 102.0,
    "2024-06-05": 104.0,
    "2024-06-06": 103.0,
    "2024-06-07": 104.0,
    "2024-06-10": 52.0,
    "2024-06-11": 53.0,
}
DIVIDEND_FACTOR = 1 - 2 / 104  # = 102/104
HAND_SPLIT_ADJUSTED = {
    "2024-06-03": 50.0,
    "2024-06-04": 51.0,
    "2024-06-05": 52.0,
    "2024-06-06": 51.5,
    "2024-06-07": 52.0,
    "2024-06-10": 52.0,
    "2024-06-11": 53.0,
}
HAND_TOTAL_RETURN = {
    "2024-06-03": 100 * 0.5 * DIVIDEND_FACTOR,
    "2024-06-04": 102 * 0.5 * DIVIDEND_FACTOR,
    "2024-06-05": 51.0,
    "2024-06-06": 51.5,
    "2024-06-07": 52.0,
    "2024-06-10": 52.0,
    "2024-06-11": 53.0,
}
HAND_VOLUMES = {day: 2000 if day < "2024-06-10" else 1000 for day in HAND_CLOSES}  # raw volume 1000


def hand_daily_bars(symbol: str) -> pd.DataFrame:
    """Daily bars stamped at midnight New York of their session, raw volume 1000."""
    days = pd.DatetimeIndex(list(HAND_CLOSES)).tz_localize("America/New_York").tz_convert("UTC")
    closes = list(HAND_CLOSES.values())
    return frame(
        BARS,
        {
            "symbol": symbol,
            "ts": days,
            "timeframe": "1day",
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": 1000,
            "vwap": closes,
            "trade_count": 10,
            "source": "test",
        },
        what="hand bars",
    )


def hand_actions(symbol: str, source: str = "test") -> pd.DataFrame:
    return frame(
        CORPORATE_ACTIONS,
        {
            "symbol": symbol,
            "action": ["dividend", "split"],
            "ex_date": ["2024-06-06", "2024-06-10"],
            "new_rate": [None, 2.0],
            "old_rate": [None, 1.0],
            "amount": [2.0, None],
            "currency": ["USD", None],
            "source": source,
        },
        what="hand actions",
    )


def by_day(frame: pd.DataFrame, column: str) -> dict[str, float]:
    """A column keyed by the New York session date of each bar."""
    days = frame["ts"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d")
    return dict(zip(days, frame[column], strict=True))


def on_tick_grid(bars: pd.DataFrame) -> pd.DataFrame:
    """``bars`` with prices as the vendors send them: whole cents from $1 up, 1/10,000 below, vwap
    to 4 decimals. What the hot store keeps exactly (ticks of 1/10,000 dollar, 0023_bar_price_ticks.sql),
    so a test can compare what it wrote with what it reads."""
    out = bars.copy()
    for column in ("open", "high", "low", "close"):
        values = out[column].to_numpy(dtype=np.float64)
        out[column] = np.where(np.abs(values) >= 1.0, np.round(values, 2), np.round(values, 4))
    if "vwap" in out.columns:
        out["vwap"] = np.round(out["vwap"].to_numpy(dtype=np.float64), 4)
    return out
