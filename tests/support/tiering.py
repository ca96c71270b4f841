"""Bars for the tiering tests, each test in a private time window.

Tiering moves whole chunks, and a chunk holds every symbol's rows of its time range, so each test
writes its bars in its own year (far from the data of other tests) and tiers only that year.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg.abc import Query

from core.model import BARS, frame
from storage.tiering import TieringReport
from tests.support.storage import on_tick_grid


def year_window(year: int) -> tuple[datetime, datetime]:
    """The range a test tiers: its whole year (chunks of 1 and 30 days starting inside it)."""
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 1, tzinfo=UTC)


def make_bars(
    symbols: list[str], start: str, sessions: int, timeframe: str = "1min", per_session: int = 30, seed: int = 1
) -> pd.DataFrame:
    """Bars of ``symbols``: ``per_session`` bars from 14:30 UTC on each of ``sessions`` weekdays
    (daily bars: one a weekday at 05:00 UTC), random-walk prices on the tick grid, a null vwap now and then."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start, periods=sessions, tz="UTC")
    if timeframe == "1day":
        stamps = days + pd.Timedelta(hours=5)
    else:
        step = pd.Timedelta(timeframe.replace("min", "min").replace("hour", "h"))
        stamps = pd.DatetimeIndex(
            [d + pd.Timedelta(hours=14, minutes=30) + i * step for d in days for i in range(per_session)]
        )
    parts = []
    for symbol in symbols:
        n = len(stamps)
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        vwap = np.where(rng.random(n) < 0.1, np.nan, close * 1.001)
        parts.append(
            frame(
                BARS,
                {
                    "symbol": symbol,
                    "ts": stamps,
                    "timeframe": timeframe,
                    "open": close * 0.999,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": rng.integers(1, 10_000, n),
                    "vwap": vwap,
                    "trade_count": rng.integers(1, 100, n),
                    "source": "tiering-test",
                },
                what="test bars",
            )
        )
    return on_tick_grid(pd.concat(parts, ignore_index=True))


class TieringBetweenReads:
    """A reader's connection that runs ``tier`` once, right after the first statement that reads rows
    of the hot store or of the lake manifest, whichever the reader sends first: a tiering commit
    landing between a router's two reads. Everything else goes to ``conn`` unchanged.

    Catalog lookups (``timescaledb_information``) do not count: they read no rows."""

    ROW_READS = ("ops.lake_files", "market.", "features.")

    def __init__(self, conn: psycopg.Connection, tier: Callable[[], TieringReport]) -> None:
        self._conn, self._tier = conn, tier
        self.report: TieringReport | None = None

    def execute(self, query: Query, params: Any = None, **options: Any) -> psycopg.Cursor:
        cursor = self._conn.execute(query, params, **options)
        text = query.as_string(self._conn) if isinstance(query, sql.Composable) else str(query)
        if self.report is None and "timescaledb_information" not in text and any(r in text for r in self.ROW_READS):
            self.report = self._tier()
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)
