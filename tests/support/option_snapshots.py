"""Option chain snapshot frames (core.model.OPTION_SNAPSHOTS) built for tests, one row per contract."""

from __future__ import annotations

from typing import Any

import pandas as pd

from core import model

SNAPSHOT = pd.Timestamp("2024-06-28T20:00:00Z")  # 16:00 New York


def snapshot_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "underlying": "AAPL",
        "contract": "O:AAPL240719C00100000",
        "contract_type": "call",
        "expiration": pd.Timestamp("2024-07-19T00:00:00Z"),
        "strike": 100.0,
        "shares_per_contract": 100,
        "implied_volatility": 0.3,
        "delta": 0.5,
        "gamma": 0.01,
        "theta": -0.05,
        "vega": 0.1,
        "open_interest": 1000,
        "bid": 4.0,
        "ask": 4.2,
        "last_price": 4.1,
        "underlying_price": 101.0,
        "ts": SNAPSHOT,
        "bid_size": 10,
        "ask_size": 10,
        "volume": 50,
        "quote_ts": SNAPSHOT,
        "exercise_style": "american",
        "source": "polygon",
    }
    row.update(overrides)
    return row


def snapshot_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    columns = {name: [r[name] for r in rows] for name in model.OPTION_SNAPSHOTS}
    return model.frame(model.OPTION_SNAPSHOTS, columns, what="test option chain")
