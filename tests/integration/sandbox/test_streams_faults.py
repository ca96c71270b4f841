"""Stream faults on demand, shared replay clocks and the rate knob, against the sandbox under uvicorn.

Each test has its own key, bounds every loop in count and time, and asserts what the client sees.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from tests.support.sandbox_streams import MINUTE_MS, T0, new_key, open_stream, recv, run


def polygon_url(base: str, **query: Any) -> str:
    return base.replace("http://", "ws://") + "/stocks?" + urlencode({"session": "2024-06-03", **query})


async def recv_raw(ws: Connection, timeout: float = 10) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout)


async def drain_until_closed(ws: Connection, max_frames: int = 100_000) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed):
        for _ in range(max_frames):
            events += await recv(ws)
    return events


def connection(base: str, key: str) -> dict[str, Any]:
    found = [c for c in httpx.get(f"{base}/_sandbox/streams").json()["connections"] if c["key"] == key]
    assert found, f"no connection of key {key}"
    return found[0]


def rest_trade_ids(base: str, symbol: str, lo_ms: int, hi_ms: int) -> list[str]:
    query: dict[str, Any] = {
        "timestamp.gte": lo_ms * 1_000_000,
        "timestamp.lt": hi_ms * 1_000_000,
        "order": "asc",
        "limit": 50000,
    }
    body = httpx.get(f"{base}/v3/trades/{symbol}", params={**query, "apiKey": "k"}, timeout=30).json()
    return [r["id"] for r in body["results"]]


def test_disconnect_after_n_messages_drops_the_socket_without_a_close_frame(sandbox_url: str) -> None:
    url = polygon_url(sandbox_url, speed=0, disconnect_after=40)

    async def scenario() -> tuple[int, Any, Any]:
        ws = await open_stream(url, new_key(), "T.AAPL")
        with pytest.raises(ConnectionClosedError) as closed:
            for _ in range(10_000):
                await recv(ws)
        return ws.close_code or 0, closed.value.rcvd, closed.value.sent

    code, received_close, _ = run(scenario())
    assert received_close is None and code == 1006  # an abrupt drop, as a network failure looks


def test_disconnect_after_seconds_with_a_close_code(sandbox_url: str) -> None:
    url = polygon_url(sandbox_url, speed=60, disconnect_after_s=0.3, disconnect_code=1011)

    async def scenario() -> int | None:
        ws = await open_stream(url, new_key(), "T.AAPL")
        await drain_until_closed(ws)
        return ws.close_code

    assert run(scenario()) == 1011


def test_a_stall_sends_nothing_but_answers_pings_then_delivers_the_backlog(sandbox_url: str) -> None:
    key = new_key()
    url = polygon_url(sandbox_url, speed=0, stall_after=10, stall_s=1.5, **{"from": "09:30"})
    end = T0 + 3 * MINUTE_MS

    async def scenario() -> tuple[list[dict[str, Any]], str, float]:
        ws = await open_stream(url, key, "T.AAPL", max_queue=None)
        events = await recv(ws)
        for _ in range(100):
            if connection(sandbox_url, key)["state"] == "stalled":
                break
            await asyncio.sleep(0.02)
        state = connection(sandbox_url, key)["state"]
        started = time.monotonic()
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)
        latency = time.monotonic() - started
        for _ in range(10_000):
            events += await recv(ws)
            if events[-1]["t"] >= end:
                break
        await ws.close()
        return events, state, latency

    events, state, latency = run(scenario())
    assert state == "stalled" and latency < 5  # the pong came back while the stream was stalled
    streamed = [e["i"] for e in events if e["t"] < end]
    assert streamed == rest_trade_ids(sandbox_url, "AAPL", T0, end)  # nothing lost across the stall


def test_malformed_frames_do_not_parse_but_control_replies_do(sandbox_url: str) -> None:
    url = polygon_url(sandbox_url, speed=0, malformed=1.0)

    async def scenario() -> list[str | bytes]:
        async with await open_stream(url, new_key(), "T.AAPL") as ws:
            return [await recv_raw(ws) for _ in range(5)]

    frames = run(scenario())
    for frame in frames:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(frame)


def test_duplicates_and_reordering_keep_every_trade(sandbox_url: str) -> None:
    url = polygon_url(sandbox_url, speed=0, duplicate=0.05, reorder=0.05, seed=3)
    end = T0 + 10 * MINUTE_MS

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), "T.AAPL") as ws:
            events: list[dict[str, Any]] = []
            for _ in range(10_000):
                events += await recv(ws)
                if min(e["t"] for e in events[-20:]) >= end:
                    return events
            raise AssertionError("the stream did not pass 09:40")

    events = run(scenario())
    ids = [e["i"] for e in events if e["t"] < end]
    stamps = [e["t"] for e in events]
    assert len(ids) > len(set(ids))  # some sent twice
    assert stamps != sorted(stamps)  # some out of order
    assert sorted(set(ids)) == rest_trade_ids(sandbox_url, "AAPL", T0, end)


@pytest.mark.parametrize("vendor", ["polygon", "alpaca"])
def test_a_slow_consumer_is_kicked_after_the_server_side_buffer_fills(sandbox_url: str, vendor: str) -> None:
    key = new_key()
    query: dict[str, Any] = {"session": "2024-06-03", "speed": 0, "universe": 20, "kick_slow": 4, "batch": 2000}
    path = "/stocks" if vendor == "polygon" else "/v2/sip"
    url = sandbox_url.replace("http://", "ws://") + f"{path}?{urlencode(query)}"

    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)  # a small window: it fills fast
        host, port = sandbox_url.removeprefix("http://").split(":")
        sock.connect((host, int(port)))
        ws = await connect(url, sock=sock, max_queue=1)
        await recv(ws)
        auth = (
            {"action": "auth", "params": key} if vendor == "polygon" else {"action": "auth", "key": key, "secret": "s"}
        )
        await ws.send(orjson.dumps(auth).decode())
        await recv(ws)
        sub = (
            {"action": "subscribe", "params": "T.*,Q.*"} if vendor == "polygon" else {"trades": ["*"], "quotes": ["*"]}
        )
        await ws.send(orjson.dumps({"action": "subscribe", **sub}).decode())
        for _ in range(500):  # do not read until the sandbox gives up on us (at most 10 s)
            if connection(sandbox_url, key)["state"] in ("closing", "closed"):
                break
            await asyncio.sleep(0.02)
        events = await drain_until_closed(ws)
        return events, ws.close_code

    events, code = run(scenario())
    last = events[-1]
    if vendor == "polygon":
        assert last["ev"] == "status" and last["status"] == "slow_consumer"
    else:
        assert last == {"T": "error", "code": 407, "msg": "slow client"}
    assert code == 1008


def test_the_control_api_disconnects_a_key_on_demand(sandbox_url: str) -> None:
    key = new_key()

    async def scenario() -> tuple[int, int | None]:
        ws = await open_stream(polygon_url(sandbox_url, speed=1), key, "T.AAPL")
        async with httpx.AsyncClient() as client:
            reply = await client.post(f"{sandbox_url}/_sandbox/streams/disconnect", json={"key": key, "code": 4000})
        await drain_until_closed(ws)
        return reply.json()["disconnected"], ws.close_code

    assert run(scenario()) == (1, 4000)


def test_a_shared_clock_runs_on_between_connections(sandbox_url: str) -> None:
    name = f"c{uuid.uuid4().hex[:8]}"
    started = httpx.post(f"{sandbox_url}/_sandbox/streams/clocks/{name}", json={"session": "2024-06-03", "speed": 600})
    assert started.status_code == 200 and started.json()["session"] == "2024-06-03"
    url = polygon_url(sandbox_url, clock=name)

    async def first_trade(key: str) -> dict[str, Any]:
        async with await open_stream(url, key, "T.AAPL") as ws:
            return (await recv(ws))[0]

    first = run(first_trade(new_key()))
    before = httpx.get(f"{sandbox_url}/_sandbox/streams/clocks/{name}").json()["market_ns"]
    second = run(first_trade(new_key()))  # a new connection joins the running clock, not its start
    assert second["t"] * 1_000_000 >= before > first["t"] * 1_000_000
    httpx.delete(f"{sandbox_url}/_sandbox/streams/clocks/{name}")


def test_rate_mode_streams_many_symbols_by_message_count(sandbox_url: str) -> None:
    url = polygon_url(sandbox_url, rate=50_000, universe=50, batch=500)

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), "T.*,Q.*") as ws:
            events: list[dict[str, Any]] = []
            for _ in range(1000):
                events += await recv(ws)
                if len(events) >= 20_000:
                    return events
            raise AssertionError("fewer than 20,000 messages in 1000 frames")

    events = run(scenario())
    symbols = {e["sym"] for e in events}  # a few illiquid symbols may not trade in the first minutes
    assert 40 <= len(symbols) <= 50 and "S0030" in symbols and {e["ev"] for e in events} == {"T", "Q"}


def test_stamp_send_puts_the_wall_clock_in_trade_times(sandbox_url: str) -> None:
    url = polygon_url(sandbox_url, speed=0, stamp="send")

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), "T.AAPL") as ws:
            return await recv(ws)

    before_ms = time.time_ns() // 1_000_000
    events = run(scenario())
    assert all(e["t"] >= before_ms for e in events)  # not the 2024 market time
