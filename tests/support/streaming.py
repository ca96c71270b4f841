"""Shared by the stream tests: a sandbox stream URL on a shared replay clock, and the check that the
hot store holds exactly what the batch path (the vendor's REST API) serves for the same span."""

from __future__ import annotations

import asyncio
import random
import string
from urllib.parse import urlencode

import pandas as pd
import psycopg

from core.settings import Settings
from db.connect import database_connection
from sources.factory import build_source
from sources.polygon.stream import align_to_stream
from storage.trades import read_trades

SESSION = "2024-06-03"
OPEN = pd.Timestamp("2024-06-03T13:30:00Z")  # 09:30 New York
STREAM_TABLES = (
    "market.trades",
    "market.quotes",
    "market.bars_intraday",
    "market.latest_bars",
    "ops.watermarks",
    "ops.stream_gaps",
)
BAR_COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]


def new_symbols(prefix: str = "HY", count: int = 2) -> list[str]:
    rng = random.Random()
    return [prefix + "".join(rng.choices(string.ascii_uppercase, k=3)) for _ in range(count)]


def delete_symbols(settings: Settings, symbols: list[str]) -> None:
    with database_connection(settings, autocommit=True) as conn:
        for table in STREAM_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (symbols,))  # type: ignore[arg-type]


def stream_url(settings: Settings, clock: str, speed: float = 120, start: str = "10:00") -> str:
    """The sandbox's Polygon stream replaying SESSION from ``start`` at ``speed`` on the named shared
    clock: a reconnect resumes at the clock's current market time (what was missed is REST's)."""
    query = {"session": SESSION, "from": start, "speed": speed, "clock": clock}
    return settings.sandbox.base_url.replace("http://", "ws://") + "/stocks?" + urlencode(query)


def final_minute_bars(conn: psycopg.Connection, symbols: list[str]) -> pd.DataFrame:
    rows = conn.execute(
        f"SELECT {', '.join(BAR_COLUMNS)} FROM market.bars_intraday"
        " WHERE symbol = ANY(%s) AND timeframe = '1min' AND quality_flags = 0 ORDER BY symbol, ts",
        (symbols,),
    ).fetchall()
    return pd.DataFrame(rows, columns=BAR_COLUMNS)


def assert_stored_equals_batch(stored_in: Settings, rest_from: Settings, symbols: list[str]) -> int:
    """The trades and final 1-minute bars stored for ``symbols`` from the open up to the last minute
    the vendor closed equal the REST trades and raw minute bars of the same span, row for row.
    Returns the number of trades compared."""
    with database_connection(stored_in) as conn:
        bars = final_minute_bars(conn, symbols)
        assert not bars.empty, "no final minute bar was stored"
        end = bars["ts"].max() + pd.Timedelta(minutes=1)
        trades = read_trades(conn, symbols, OPEN, end)

    async def batch() -> tuple[pd.DataFrame, pd.DataFrame]:
        async with build_source("polygon", rest_from) as source:
            t = [await source.client.trades(s, OPEN, end) for s in symbols]
            b = [await source.client.aggregates(s, OPEN, end, timeframe="1min", adjusted=False) for s in symbols]
        return pd.concat(t, ignore_index=True), pd.concat(b, ignore_index=True)

    rest_trades, rest_bars = asyncio.run(batch())
    columns = ["symbol", "ts", "exchange", "trade_id", "price", "size"]
    key = ["symbol", "ts", "exchange", "trade_id"]
    expected = align_to_stream(rest_trades)[columns].sort_values(key).reset_index(drop=True)
    got = trades[columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)

    expected_bars = rest_bars[(rest_bars["ts"] >= OPEN) & (rest_bars["ts"] < end)][BAR_COLUMNS]
    expected_bars = expected_bars.sort_values(["symbol", "ts"]).reset_index(drop=True)
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True).astype(expected_bars["ts"].dtype)
    pd.testing.assert_frame_equal(bars, expected_bars, check_dtype=False)
    return len(got)
