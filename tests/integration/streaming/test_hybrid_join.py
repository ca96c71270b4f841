"""Hybrid mode against the sandbox: a stream disconnected several times during a session, each gap
filled over REST, leaves exactly the batch path's trades and 1-minute bars — no gap, no duplicate.

The sandbox replays 2024-06-03 from 10:00 at 120x on a clock shared by the test's connections, so a
reconnect resumes at the clock's current market time and the missed span exists only over REST.
Every wait is bounded in count and time."""

from __future__ import annotations

import asyncio
import random
import string
import uuid
from urllib.parse import urlencode

import httpx
import pandas as pd
import pytest

from core.settings import Settings
from db.connect import database_connection
from sources.factory import build_source
from sources.polygon.stream import align_to_stream
from storage.trades import read_trades
from streaming.service import StreamPlan, StreamReport, StreamService

SESSION = "2024-06-03"
OPEN = pd.Timestamp("2024-06-03T13:30:00Z")  # 09:30 New York
DISCONNECTS = 3


@pytest.fixture
def hybrid_symbols(stack: Settings):
    rng = random.Random()
    names = ["HY" + "".join(rng.choices(string.ascii_uppercase, k=3)) for _ in range(2)]
    yield names
    with database_connection(stack, autocommit=True) as conn:
        for table in ("market.trades", "market.quotes", "market.bars_intraday", "market.latest_bars", "ops.watermarks"):
            conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (names,))  # type: ignore[arg-type]


def stream_url(stack: Settings, clock: str) -> str:
    query = {"session": SESSION, "from": "10:00", "speed": 120, "clock": clock}
    return stack.sandbox.base_url.replace("http://", "ws://") + "/stocks?" + urlencode(query)


async def run_with_disconnects(stack: Settings, plan: StreamPlan) -> StreamReport:
    settings = stack.model_copy(
        update={"streaming": stack.streaming.model_copy(update={"reconnect_base_seconds": 0.05})}
    )
    service = StreamService(settings, plan)
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    async with httpx.AsyncClient(base_url=stack.sandbox.base_url, timeout=10) as sandbox:
        for _ in range(DISCONNECTS):
            for _ in range(100):  # up to 20 s for the (re)connection to carry data
                if service.report.connects >= 1 and service.report.batches > 5:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # six market minutes streamed
            dropped = (await sandbox.post("/_sandbox/streams/disconnect", json={"vendor": "polygon"})).json()
            assert dropped["disconnected"] >= 1
            seen = service.report.connects
            for _ in range(100):
                if service.report.connects > seen:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)  # two market minutes missed while reconnecting... and after
        await asyncio.sleep(3)
    stop.set()
    return await asyncio.wait_for(runner, 60)


def final_minute_bars(stack: Settings, symbols: list[str]) -> pd.DataFrame:
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT symbol, ts, open, high, low, close, volume, vwap, trade_count FROM market.bars_intraday"
            " WHERE symbol = ANY(%s) AND timeframe = '1min' AND quality_flags = 0 ORDER BY symbol, ts",
            (symbols,),
        ).fetchall()
    return pd.DataFrame(rows, columns=["symbol", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"])


def test_a_stream_disconnected_three_times_stores_what_the_batch_path_stores(stack: Settings, hybrid_symbols) -> None:
    plan = StreamPlan.of(
        "polygon", hybrid_symbols, ("trades", "bars"), hybrid=True, url=stream_url(stack, uuid.uuid4().hex)
    )
    report = asyncio.run(asyncio.wait_for(run_with_disconnects(stack, plan), 180))

    assert report.connects == DISCONNECTS + 1
    assert report.catchups == DISCONNECTS + 1  # at start and after every reconnect
    stored_bars = final_minute_bars(stack, hybrid_symbols)
    end = stored_bars["ts"].max() + pd.Timedelta(minutes=1)  # the last minute the vendor closed
    assert end - OPEN >= pd.Timedelta(minutes=40)

    async def batch() -> tuple[pd.DataFrame, pd.DataFrame]:
        async with build_source("polygon", stack) as source:
            trades = [await source.client.trades(s, OPEN, end) for s in hybrid_symbols]
            bars = [
                await source.client.aggregates(s, OPEN, end, timeframe="1min", adjusted=False) for s in hybrid_symbols
            ]
        return pd.concat(trades, ignore_index=True), pd.concat(bars, ignore_index=True)

    rest_trades, rest_bars = asyncio.run(batch())
    with database_connection(stack) as conn:
        stored_trades = read_trades(conn, hybrid_symbols, OPEN, end)

    columns = ["symbol", "ts", "exchange", "trade_id", "price", "size"]
    key = ["symbol", "ts", "exchange", "trade_id"]
    expected = align_to_stream(rest_trades)[columns].sort_values(key).reset_index(drop=True)
    got = stored_trades[columns].sort_values(key).reset_index(drop=True)
    assert len(got) > 500
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)

    bar_columns = ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]
    expected_bars = rest_bars[(rest_bars["ts"] >= OPEN) & (rest_bars["ts"] < end)][bar_columns]
    expected_bars = expected_bars.sort_values(["symbol", "ts"]).reset_index(drop=True)
    assert len(stored_bars) == len(expected_bars) > 60
    stored_bars["ts"] = pd.to_datetime(stored_bars["ts"], utc=True).astype(expected_bars["ts"].dtype)
    pd.testing.assert_frame_equal(stored_bars, expected_bars, check_dtype=False)
