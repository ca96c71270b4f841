"""The product's Polygon stream (sources.stream + sources.polygon.stream) against the sandbox's
stocks WebSocket under uvicorn on 127.0.0.1: the streamed trades are the REST trades, reconnects
resubscribe, a silent socket is reconnected, a bad key fails once, eviction pauses.

Each test uses its own API key (the sandbox's connection limits are per key) and bounds every
loop in count and time."""

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
from sources.polygon.stream import align_to_stream
from sources.stream import Connected, StreamConnection, open_stream
from tests.support.vendors import polygon_client

T0 = pd.Timestamp("2024-06-03T13:30:00Z")  # 09:30 New York
WAIT_S = 60.0


def run(coro: Awaitable[Any], seconds: float = WAIT_S) -> Any:
    return asyncio.run(asyncio.wait_for(coro, seconds))  # type: ignore[arg-type]


def new_key() -> str:
    return f"s{uuid.uuid4().hex[:12]}"


def stream(
    sandbox: str, key: str, streaming: dict[str, Any] | None = None, spill: Any = None, **query: Any
) -> StreamConnection:
    settings = Settings(
        vendors={"polygon": {"api_key": key}},
        streaming={
            "reconnect_base_seconds": 0.05,
            "reconnect_max_seconds": 0.2,
            "connection_limit_pause_seconds": 30.0,
            "ping_interval_seconds": 0.5,
            "ping_timeout_seconds": 5.0,
            **(streaming or {}),
        },
    )
    url = sandbox.replace("http://", "ws://") + "/stocks?" + urlencode({"session": "2024-06-03", **query})
    return open_stream(settings, "polygon", url=url, spill=spill)


def sandbox_connections(sandbox: str, key: str) -> list[dict[str, Any]]:
    return [c for c in httpx.get(f"{sandbox}/_sandbox/streams").json()["connections"] if c["key"] == key]


async def trades_until(conn: StreamConnection, end: pd.Timestamp, max_batches: int = 10_000) -> pd.DataFrame:
    parts = []
    async for batch in conn.batches(max_rows=5000, max_delay_s=0.05):
        parts.append(batch.trades)
        if len(batch.trades) and batch.trades["ts"].max() >= end:
            return pd.concat(parts, ignore_index=True)
        max_batches -= 1
        assert max_batches > 0, "the stream never reached the end of the span"
    raise AssertionError("the stream ended early")


def test_streamed_trades_of_five_minutes_equal_the_rest_trades_row_for_row(sandbox: str) -> None:
    end = T0 + pd.Timedelta(minutes=5)

    async def scenario() -> tuple[pd.DataFrame, pd.DataFrame]:
        conn = stream(sandbox, new_key(), speed=0)
        await conn.subscribe(["trades"], ["AAPL", "MSFT"])
        try:
            streamed = await trades_until(conn, end)
        finally:
            await conn.close()
        client = polygon_client(sandbox)
        try:
            rest = pd.concat([await client.trades(s, T0, end) for s in ("AAPL", "MSFT")], ignore_index=True)
        finally:
            await client.aclose()
        return streamed, rest

    streamed, rest = run(scenario())
    streamed = streamed[streamed["ts"] < end]
    order = ["symbol", "ts", "trade_id"]
    expected = align_to_stream(rest).sort_values(order, ignore_index=True)
    assert len(expected) > 50
    pd.testing.assert_frame_equal(streamed.sort_values(order, ignore_index=True), expected)


def test_a_dropped_connection_reconnects_and_resubscribes(sandbox: str) -> None:
    key = new_key()
    connected: list[Connected] = []

    async def scenario() -> tuple[list[int], Any]:
        conn = stream(sandbox, key, speed=20)
        conn.on_connected = connected.append
        await conn.subscribe(["trades"], ["AAPL"])
        counts: list[int] = []
        try:
            async for batch in conn.batches(max_rows=5000, max_delay_s=0.05):
                if len(batch.trades):
                    counts.append(len(connected))
                if len(connected) == 1 and len(counts) == 3:
                    dropped = httpx.post(f"{sandbox}/_sandbox/streams/disconnect", json={"key": key}).json()
                    assert dropped == {"disconnected": 1}
                if len(connected) == 2 and counts[-1] == 2:
                    break
                assert len(counts) < 10_000
        finally:
            await conn.close()
        return counts, conn.stats()

    counts, stats = run(scenario())
    assert [c.number for c in connected] == [1, 2]
    assert counts[0] == 1 and counts[-1] == 2  # trades flowed on both connections
    assert (stats.connects, stats.reconnects) == (2, 1)
    assert len(sandbox_connections(sandbox, key)) == 2  # one reconnect, no storm


def test_a_stalled_socket_that_answers_pings_is_reconnected_after_the_data_idle_timeout(sandbox: str) -> None:
    key = new_key()

    async def scenario() -> Any:
        conn = stream(sandbox, key, {"data_idle_timeout_seconds": 1.0}, speed=0, stall_after=50)
        await conn.subscribe(["trades"], ["AAPL"])
        try:
            async for _ in conn.batches(max_rows=5000, max_delay_s=0.05):
                if conn.stats().idle_timeouts >= 1 and conn.stats().connects >= 2:
                    break
        finally:
            await conn.close()
        return conn.stats()

    stats = run(scenario())
    # pings every 0.5 s were answered all along (a ping timeout is no idle timeout); the silence was seen
    assert stats.idle_timeouts >= 1 and stats.connects >= 2
    assert len(sandbox_connections(sandbox, key)) == stats.connects


def all_connections(sandbox: str) -> int:
    return len(httpx.get(f"{sandbox}/_sandbox/streams").json()["connections"])


def test_a_bad_key_is_a_clear_error_and_is_not_retried(sandbox: str) -> None:
    key = f"invalid{uuid.uuid4().hex[:8]}"
    before = all_connections(sandbox)

    async def scenario() -> None:
        conn = stream(sandbox, key, speed=0)
        await conn.subscribe(["trades"], ["AAPL"])
        with pytest.raises(PermanentSourceError, match=r"rejected the credentials.*vendors\.polygon\.api_key"):
            async for _ in conn.batches(max_rows=100, max_delay_s=0.05):
                pass
        await asyncio.sleep(0.5)  # ten reconnect delays: a retry would show in the sandbox
        await conn.close()

    run(scenario())
    assert all_connections(sandbox) == before + 1  # the sandbox names no key it refused


def test_an_evicted_connection_pauses_instead_of_evicting_back(sandbox: str) -> None:
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
            if first.stats().connection_limits:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # twenty reconnect delays: a storm would evict back and forth here
        stats = first.stats(), second.stats()
        await first.close()
        await second.close()
        return stats

    first, second = run(scenario())
    assert first.connection_limits == 1 and first.connects == 1 and not first.connected
    assert second.connects == 1 and second.connection_limits == 0
    assert len(sandbox_connections(sandbox, key)) == 2


def test_a_slow_consumer_spills_the_oldest_frames_instead_of_stalling_the_socket(sandbox: str) -> None:
    spilled: list[bytes] = []

    async def scenario() -> Any:
        conn = stream(
            sandbox,
            new_key(),
            {"buffer_size": 4, "lag_limit_seconds": 0.1},
            lambda frames, _: spilled.extend(frames),
            speed=0,
            batch=50,
        )
        await conn.subscribe(["trades"], ["AAPL"])
        try:
            async for _ in conn.batches(max_rows=50, max_delay_s=0.01):
                await asyncio.sleep(0.2)  # a writer slower than the vendor
                if len(spilled) >= 8:
                    break
        finally:
            await conn.close()
        return conn.stats()

    stats = run(scenario())
    assert stats.spilled == len(spilled) >= 8 and stats.dropped == 0
    assert all(orjson.loads(frame)[0]["ev"] in ("T", "status") for frame in spilled)  # raw frames, replayable
    assert stats.connects == 1  # the vendor never dropped us


def test_an_unknown_symbol_is_acknowledged_and_the_known_ones_stream(sandbox: str) -> None:
    async def scenario() -> tuple[list[Any], pd.DataFrame, int]:
        conn = stream(sandbox, new_key(), speed=0)
        await conn.subscribe(["trades"], ["AAPL", "ZZZZQ"])
        events, parts, dead = [], [], 0
        try:
            async for batch in conn.batches(max_rows=5000, max_delay_s=0.05):
                events += batch.events
                parts.append(batch.trades)
                dead += len(batch.dead)
                if sum(map(len, parts)) >= 100:
                    break
        finally:
            await conn.close()
        return events, pd.concat(parts, ignore_index=True), dead

    events, trades, dead = run(scenario())
    assert [e.message for e in events if e.kind == "subscribed"] == ["subscribed to: T.AAPL", "subscribed to: T.ZZZZQ"]
    assert set(trades["symbol"]) == {"AAPL"} and dead == 0
