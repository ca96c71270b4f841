"""The product's Alpaca stream (sources.stream + sources.alpaca.stream) against the sandbox's
``/v2/{feed}`` WebSocket under uvicorn on 127.0.0.1: streamed trades and minute bars are the REST
ones, corrections and cancels name REST prints, malformed frames are dead-lettered while the stream
goes on, a second connection's 406 pauses, a bad key fails once.

Each test uses its own key pair and bounds every loop in count and time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pandas as pd
import pytest

from core.errors import PermanentSourceError
from core.settings import Settings
from sources.stream import StreamBatch, StreamConnection, open_stream
from tests.support.vendors import alpaca_client

T0 = pd.Timestamp("2024-06-03T13:30:00Z")  # 09:30 New York
WAIT_S = 60.0


def run(coro: Awaitable[Any], seconds: float = WAIT_S) -> Any:
    return asyncio.run(asyncio.wait_for(coro, seconds))  # type: ignore[arg-type]


def new_key() -> str:
    return f"s{uuid.uuid4().hex[:12]}"


def stream(sandbox: str, key: str, feed: str = "iex", **query: Any) -> StreamConnection:
    settings = Settings(
        vendors={"alpaca": {"api_key": key, "secret_key": "s3cret", "base_url": sandbox}},
        streaming={
            "reconnect_base_seconds": 0.05,
            "reconnect_max_seconds": 0.2,
            "connection_limit_pause_seconds": 30.0,
        },
    )
    derived = open_stream(settings, "alpaca", feed=feed).url
    assert derived == sandbox.replace("http://", "ws://") + f"/v2/{feed}"  # from the REST base URL
    return open_stream(settings, "alpaca", feed=feed, url=derived + "?" + urlencode({"session": "2024-06-03", **query}))


async def batches_until(conn: StreamConnection, end: pd.Timestamp, max_batches: int = 10_000) -> list[StreamBatch]:
    """Batches until a trade at or after ``end`` arrived."""
    out = []
    async for batch in conn.batches(max_rows=5000, max_delay_s=0.05):
        out.append(batch)
        if len(batch.trades) and batch.trades["ts"].max() >= end:
            return out
        max_batches -= 1
        assert max_batches > 0, "the stream never reached the end of the span"
    raise AssertionError("the stream ended early")


def frames_of(batches: list[StreamBatch], name: str) -> pd.DataFrame:
    return pd.concat([getattr(b, name) for b in batches], ignore_index=True)


def test_streamed_trades_and_minute_bars_equal_the_rest_ones_row_for_row(sandbox: str) -> None:
    end = T0 + pd.Timedelta(minutes=5)

    async def scenario() -> tuple[list[StreamBatch], pd.DataFrame, pd.DataFrame]:
        conn = stream(sandbox, new_key(), speed=0)
        await conn.subscribe(["trades", "bars"], ["AAPL", "MSFT"])
        try:
            batches = await batches_until(conn, end + pd.Timedelta(seconds=30))
        finally:
            await conn.close()
        client = alpaca_client(sandbox)
        try:
            trades = await client.trades(["AAPL", "MSFT"], T0, end)  # whole seconds, end inclusive
            bars = await client.bars(["AAPL", "MSFT"], T0, end, timeframe="1min")
        finally:
            await client.aclose()
        return batches, trades, bars

    batches, rest_trades, rest_bars = run(scenario())
    order = ["symbol", "ts", "trade_id"]
    trades = frames_of(batches, "trades")
    trades = trades[trades["ts"] < end].sort_values(order, ignore_index=True)
    assert len(rest_trades) > 50
    rest_trades = rest_trades[rest_trades["ts"] < end].sort_values(order, ignore_index=True)
    pd.testing.assert_frame_equal(trades, rest_trades)
    bars = frames_of(batches, "bars")
    bars = bars[bars["ts"] < end].sort_values(["symbol", "ts"], ignore_index=True)
    rest_bars = rest_bars[rest_bars["ts"] < end].sort_values(["symbol", "ts"], ignore_index=True)
    assert len(rest_bars) == 10  # minutes 09:30 to 09:34 of two symbols
    pd.testing.assert_frame_equal(bars, rest_bars)


def test_corrections_and_cancels_name_the_prints_of_the_rest_market(sandbox: str) -> None:
    end = T0 + pd.Timedelta(minutes=10)

    async def scenario() -> tuple[list[StreamBatch], pd.DataFrame]:
        conn = stream(sandbox, new_key(), speed=0, corrections=0.1, cancels=0.1, seed=9)
        await conn.subscribe(["trades"], ["NVDA"])
        try:
            batches = await batches_until(conn, end + pd.Timedelta(seconds=5))
        finally:
            await conn.close()
        client = alpaca_client(sandbox)
        try:
            rest = await client.trades("NVDA", T0, end)
        finally:
            await client.aclose()
        return batches, rest

    batches, rest = run(scenario())
    trades, corrections, cancels = (frames_of(batches, n) for n in ("trades", "corrections", "cancels"))
    corrections = corrections[corrections["ts"] < end - pd.Timedelta(seconds=2)]
    cancels = cancels[cancels["ts"] < end - pd.Timedelta(seconds=2)]
    assert len(corrections) and len(cancels)
    streamed_ids, rest_ids = set(trades["trade_id"]), set(rest["trade_id"])
    # a correction names a streamed print REST never had and the REST print it becomes
    assert set(corrections["original_trade_id"]) <= streamed_ids - rest_ids
    assert set(corrections["corrected_trade_id"]) <= rest_ids
    # a cancel voids a streamed print REST never had
    assert set(cancels["trade_id"]) <= streamed_ids - rest_ids
    assert set(cancels["action"]) == {"C"}


def test_malformed_frames_are_dead_with_their_bytes_and_the_stream_goes_on(sandbox: str) -> None:
    end = T0 + pd.Timedelta(minutes=5)

    async def scenario() -> tuple[list[StreamBatch], Any]:
        conn = stream(sandbox, new_key(), speed=0, malformed=0.2, batch=20, seed=3)
        await conn.subscribe(["trades"], ["AAPL"])
        try:
            batches = await batches_until(conn, end)
        finally:
            await conn.close()
        return batches, conn.stats()

    batches, stats = run(scenario())
    dead = [d for b in batches for d in b.dead]
    assert dead and stats.malformed == len(dead) and stats.connects == 1
    for letter in dead:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(letter.raw)
        assert "not JSON" in letter.reason
    assert sum(len(b.trades) for b in batches) > 50


def test_a_second_connection_of_the_key_gets_406_and_pauses_instead_of_retrying(sandbox: str) -> None:
    key = new_key()

    async def scenario() -> tuple[Any, Any]:
        first, second = stream(sandbox, key, speed=1), stream(sandbox, key, speed=1)
        for conn in (first, second):
            await conn.subscribe(["trades"], ["AAPL"])
        first.start()
        for _ in range(3000):
            if first.stats().connects:
                break
            await asyncio.sleep(0.01)
        second.start()
        for _ in range(3000):
            if second.stats().connection_limits:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # twenty reconnect delays: a storm would retry here
        stats = first.stats(), second.stats()
        await first.close()
        await second.close()
        return stats

    first, second = run(scenario())
    assert first.connected and first.connects == 1
    assert second.connection_limits == 1 and second.connects == 0
    assert "connection limit exceeded" in (second.last_error or "") and "406" in (second.last_error or "")


def test_a_bad_key_is_a_clear_error_and_is_not_retried(sandbox: str) -> None:
    def count() -> int:
        return len(httpx.get(f"{sandbox}/_sandbox/streams").json()["connections"])

    before = count()

    async def scenario() -> None:
        conn = stream(sandbox, f"invalid{uuid.uuid4().hex[:8]}", speed=0)
        await conn.subscribe(["trades"], ["AAPL"])
        with pytest.raises(PermanentSourceError, match=r"rejected the credentials: 'auth failed' \(code 402\)"):
            async for _ in conn.batches(max_rows=100, max_delay_s=0.05):
                pass
        await asyncio.sleep(0.5)  # ten reconnect delays: a retry would show in the sandbox
        await conn.close()

    run(scenario())
    assert count() == before + 1
