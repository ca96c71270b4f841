"""Small canonical bar frames for the processing tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core import model
from core.calendar import expected_timestamps, nyse_sessions


def bars(rows: list[dict[str, Any]], **defaults: Any) -> pd.DataFrame:
    """Bars from dicts; unspecified fields get a clean 1min bar's values."""
    base = {
        "symbol": "AAPL",
        "timeframe": "1min",
        "open": 10.0,
        "high": 10.5,
        "low": 9.5,
        "close": 10.2,
        "volume": 100,
        "vwap": 10.1,
        "trade_count": 5,
        "source": "polygon",
    }
    base.update(defaults)
    records = [{**base, **row} for row in rows]
    columns = {name: [r.get(name) for r in records] for name in model.BARS}
    return model.frame(model.BARS, columns, what="test bars")


def one(ts: str, **fields: Any) -> pd.DataFrame:
    return bars([{"ts": ts, **fields}])


def session_bars(
    symbol: str,
    start: str,
    end: str,
    timeframe: str = "1min",
    seed: int = 1,
    price: float = 50.0,
    source: str = "polygon",
) -> pd.DataFrame:
    """Clean bars on every expected stamp from start to end: a small random walk, consistent OHLC."""
    stamps = expected_timestamps(nyse_sessions(start, end), timeframe)
    rng = np.random.default_rng(seed)
    close = np.round(price * np.exp(np.cumsum(rng.normal(0, 0.001, len(stamps)))), 2)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return model.frame(
        model.BARS,
        {
            "symbol": symbol,
            "ts": stamps,
            "timeframe": timeframe,
            "open": open_,
            "high": np.maximum(open_, close) + 0.01,
            "low": np.minimum(open_, close) - 0.01,
            "close": close,
            "volume": rng.integers(100, 1000, len(stamps)),
            "vwap": (open_ + close) / 2,
            "trade_count": rng.integers(1, 50, len(stamps)),
            "source": source,
        },
        what="session bars",
    )
