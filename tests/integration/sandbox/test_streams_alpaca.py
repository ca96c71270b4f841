"""Alpaca's v2 stream from the sandbox under uvicorn: JSON and msgpack, the REST market, 406 and reaping.

Every test uses its own key (connection slots are per key and endpoint) and bounds itself in time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

import httpx
import msgpack  # type: ignore[import-untyped]
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

OPEN = "2024-06-03T13:30:00Z"


def run(coro: Coroutine[Any, Any, Any], seconds: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, seconds))


def new_key() -> str:
    return f"a{uuid.uuid4().hex[:12]}"


def ws_url(base: str, feed: str = "iex", **query: Any) -> str:
    return base.replace("http://", "ws://") + f"/v2/{feed}" + ("?" + urlencode(query) if query else "")


def decode(frame: str | bytes) -> list[dict[str, Any]]:
    return msgpack.unpackb(frame) if isinstance(frame, bytes) else orjson.loads(frame)


async def recv(ws: Connection, timeout: float = 10) -> list[dict[str, Any]]:
    return decode(await asyncio.wait_for(ws.recv(), timeout))


def pack(message: dict[str, Any], binary: bool) -> str | bytes:
    return msgpack.packb(message) if binary else orjson.dumps(message).decode()


async def authenticate(url: str, key: str, binary: bool = False) -> tuple[Connection, list[dict[str, Any]]]:
    headers: dict[str, Any] = {"Content-Type": "application/msgpack"} if binary else {}
    ws = await connect(url, additional_headers=headers)
    assert await recv(ws) == [{"T": "success", "msg": "connected"}]
    await ws.send(pack({"action": "auth", "key": key, "secret": "s3cret"}, binary))
    return ws, await recv(ws)


async def open_stream(url: str, key: str, binary: bool = False, **channels: list[str]) -> Connection:
    ws, reply = await authenticate(url, key, binary)
    assert reply == [{"T": "success", "msg": "authenticated"}]
    await ws.send(pack({"action": "subscribe", **channels}, binary))
    (sub,) = await recv(ws)
    assert sub["T"] == "subscription" and all(sub[c] == s for c, s in channels.items())
    return ws


async def collect(
    ws: Connection, done: Callable[[list[dict[str, Any]]], bool], max_frames: int = 5000
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for _ in range(max_frames):
        events += await recv(ws)
        if done(events):
            return events
    raise AssertionError(f"not done after {max_frames} frames ({len(events)} events)")


def rest(base: str, kind: str, symbol: str, start: str, end: str, **extra: str) -> list[dict[str, Any]]:
    headers: dict[str, Any] = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
    query: dict[str, Any] = {"start": start, "end": end, "limit": 10000, **extra}
    body = httpx.get(f"{base}/v2/stocks/{symbol}/{kind}", params=query, headers=headers, timeout=30).json()
    assert body["next_page_token"] is None
    return body[kind]


def test_json_trades_and_bars_are_the_rest_ones_with_rfc3339_nanosecond_times(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=0, session="2024-06-03")

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), trades=["AAPL"], bars=["AAPL"]) as ws:
            return await collect(ws, lambda ev: sum(e["T"] == "b" for e in ev) >= 3)

    events = run(scenario())
    bars = [e for e in events if e["T"] == "b"][:3]
    trades = [e for e in events if e["T"] == "t" and e["t"] < "2024-06-03T13:33:00Z"]
    rest_trades = rest(sandbox_url, "trades", "AAPL", OPEN, "2024-06-03T13:32:59.999999999Z")
    assert [{k: t[k] for k in rest_trades[0]} for t in trades] == rest_trades
    assert all(len(t["t"]) == len("2024-06-03T13:30:00.123456789Z") for t in trades)
    rest_bars = rest(sandbox_url, "bars", "AAPL", OPEN, "2024-06-03T13:32:00Z", timeframe="1Min")
    assert [{k: b[k] for k in rest_bars[0]} for b in bars] == rest_bars


def test_msgpack_when_asked_with_timestamps_alpaca_py_can_read(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, "sip", speed=0, session="2024-06-03")

    async def scenario() -> tuple[Any, list[dict[str, Any]]]:
        async with await open_stream(url, new_key(), binary=True, quotes=["MSFT"], dailyBars=["MSFT"]) as ws:
            frame = await asyncio.wait_for(ws.recv(), 10)
            return frame, await collect(ws, lambda ev: any(e["T"] == "d" for e in ev))

    frame, events = run(scenario())
    assert isinstance(frame, bytes)
    quote = decode(frame)[0]
    assert quote["T"] == "q" and quote["t"].to_datetime().year == 2024 and quote["bp"] < quote["ap"]
    daily = next(e for e in events if e["T"] == "d")
    assert daily["t"].to_datetime().isoformat() == "2024-06-03T04:00:00+00:00"  # midnight New York


def test_corrections_and_cancels_applied_give_the_rest_trades(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=0, session="2024-06-03", corrections=0.1, cancels=0.1, seed=9)
    end = "2024-06-03T13:40:00Z"

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), trades=["NVDA"]) as ws:
            return await collect(ws, lambda ev: ev[-1]["t"] > "2024-06-03T13:41:00Z")

    events = run(scenario())
    book: dict[int, tuple[float, int]] = {}
    kinds = {"t": 0, "c": 0, "x": 0}
    for e in events:
        kinds[e["T"]] += 1
        if e["T"] == "t" and e["t"] < end:
            book[e["i"]] = (e["p"], e["s"])
        elif e["T"] == "c" and e["oi"] in book:
            del book[e["oi"]]
            book[e["ci"]] = (e["cp"], e["cs"])
        elif e["T"] == "x" and e["i"] in book:
            del book[e["i"]]
    truth = rest(sandbox_url, "trades", "NVDA", OPEN, "2024-06-03T13:39:59.999999999Z")
    assert kinds["c"] > 0 and kinds["x"] > 0
    assert book == {t["i"]: (t["p"], t["s"]) for t in truth}


def test_a_second_connection_of_a_key_gets_406_and_the_first_goes_on(sandbox_url: str) -> None:
    key = new_key()
    url = ws_url(sandbox_url, speed=60, session="2024-06-03")

    async def scenario() -> tuple[list[dict[str, Any]], int | None, list[dict[str, Any]]]:
        first = await open_stream(url, key, trades=["AAPL"])
        second, reply = await authenticate(url, key)
        with pytest.raises(ConnectionClosed):
            await recv(second)
        still = await recv(first)
        await first.close()
        return reply, second.close_code, still

    reply, code, still = run(scenario())
    assert reply == [{"T": "error", "code": 406, "msg": "connection limit exceeded"}] and code == 1008
    assert still[0]["T"] == "t"


def test_a_half_dead_connection_holds_its_slot_until_reaped(sandbox_url: str) -> None:
    key = new_key()
    url = ws_url(sandbox_url, speed=60, session="2024-06-03", reap_s=1.5)

    async def scenario() -> tuple[list[dict[str, Any]], list[str]]:
        first = await open_stream(url, key, trades=["AAPL"])
        first.transport.abort()  # the client vanishes: no close frame, as after kill -9
        await asyncio.sleep(0.2)
        second, refused = await authenticate(url, key)
        await second.close()
        outcomes = []
        for _ in range(100):  # reconnect every 0.1 s, at most 10 s, until the slot is reaped
            ws, reply = await authenticate(url, key)
            outcomes.append(reply[0]["msg"])
            await ws.close()
            if reply[0]["T"] == "success":
                break
            await asyncio.sleep(0.1)
        return refused, outcomes

    refused, outcomes = run(scenario())
    assert refused[0]["code"] == 406
    assert outcomes[-1] == "authenticated" and len(outcomes) > 1


def test_a_clean_close_frees_the_slot_at_once(sandbox_url: str) -> None:
    key = new_key()
    url = ws_url(sandbox_url, speed=60, session="2024-06-03")

    async def scenario() -> list[dict[str, Any]]:
        first = await open_stream(url, key, trades=["AAPL"])
        await first.close()
        for _ in range(50):  # the server notices the close within a few event-loop turns
            if not any(c["key"] == key and c["state"] != "closed" for c in await _connections(sandbox_url)):
                break
            await asyncio.sleep(0.05)
        second, reply = await authenticate(url, key)
        await second.close()
        return reply

    assert run(scenario()) == [{"T": "success", "msg": "authenticated"}]


async def _connections(base: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{base}/_sandbox/streams")).json()["connections"]


def test_auth_errors_follow_alpaca_codes(sandbox_url: str) -> None:
    async def scenario() -> list[Any]:
        out: list[Any] = []
        ws, reply = await authenticate(ws_url(sandbox_url), "invalid-key")
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        out += [reply, ws.close_code]
        async with connect(ws_url(sandbox_url, "test")) as ws2:
            await recv(ws2)
            await ws2.send('{"action":"subscribe","trades":["AAPL"]}')
            out.append(await recv(ws2))
            await ws2.send("{not json")
            out.append(await recv(ws2))
        return out

    failed, code, unauthenticated, syntax = run(scenario())
    assert failed == [{"T": "error", "code": 402, "msg": "auth failed"}] and code == 1008
    assert unauthenticated == [{"T": "error", "code": 401, "msg": "not authenticated"}]
    assert syntax == [{"T": "error", "code": 400, "msg": "invalid syntax"}]


def test_no_auth_in_time_gets_404(sandbox_url: str) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        async with connect(ws_url(sandbox_url, auth_timeout_s=0.3)) as ws:
            await recv(ws)
            reply = await recv(ws)
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            return reply, ws.close_code

    reply, code = run(scenario())
    assert reply == [{"T": "error", "code": 404, "msg": "auth timeout"}] and code == 1008


def test_late_trades_bring_updated_bars(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=0, session="2024-06-03", late=0.2, late_s=20, seed=4)

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), trades=["AAPL"], bars=["AAPL"], updatedBars=["AAPL"]) as ws:
            return await collect(ws, lambda ev: sum(e["T"] == "u" for e in ev) >= 2)

    events = run(scenario())
    trades = [e["t"] for e in events if e["T"] == "t"]
    assert trades != sorted(trades)  # late ones arrive after younger ones
    update = next(e for e in events if e["T"] == "u")
    bar = next(e for e in events if e["T"] == "b" and e["t"] == update["t"])
    assert events.index(bar) < events.index(update) and {**bar, "T": "u"} == update
