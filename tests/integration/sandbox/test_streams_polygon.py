"""Polygon's stocks stream from the sandbox under uvicorn: protocol, the REST market, connection limits.

Every test uses its own API key (the sandbox's connection limits are per key) and bounds itself
in time; the replay runs at speed=0 (as fast as the socket takes it) unless pacing is the point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from tests.support.sandbox_streams import MINUTE_MS, T0, new_key, open_stream, recv, run, ws_url


async def collect(
    ws: Connection, done: Callable[[list[dict[str, Any]]], bool], max_frames: int = 5000
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for _ in range(max_frames):
        events += await recv(ws)
        if done(events):
            return events
    raise AssertionError(f"not done after {max_frames} frames ({len(events)} events)")


def rest_trades(base: str, symbol: str, lo_ms: int, hi_ms: int) -> list[dict[str, Any]]:
    query: dict[str, Any] = {
        "timestamp.gte": lo_ms * 1_000_000,
        "timestamp.lt": hi_ms * 1_000_000,
        "order": "asc",
        "limit": 50000,
        "apiKey": "k",
    }
    body = httpx.get(f"{base}/v3/trades/{symbol}", params=query, timeout=30).json()
    assert "next_url" not in body
    return body["results"]


def rest_minutes(base: str, symbol: str, day: str) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"adjusted": "false", "limit": 50000, "apiKey": "k"}
    body = httpx.get(f"{base}/v2/aggs/ticker/{symbol}/range/1/minute/{day}/{day}", params=query, timeout=30).json()
    return body["results"]


def test_streamed_trades_of_five_minutes_are_the_rest_trades(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=0, session="2024-06-03")
    end = T0 + 5 * MINUTE_MS

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), "T.AAPL") as ws:
            return await collect(ws, lambda ev: ev[-1]["t"] >= end)

    streamed = [e for e in run(scenario()) if e["t"] < end]
    rest = rest_trades(sandbox_url, "AAPL", T0, end)
    assert len(streamed) == len(rest) > 0
    assert [(e["i"], e["p"], e["s"], e["x"], e["q"], e["z"]) for e in streamed] == [
        (r["id"], r["price"], r["size"], r["exchange"], r["sequence_number"], r["tape"]) for r in rest
    ]
    assert [e["t"] for e in streamed] == [r["sip_timestamp"] // 1_000_000 for r in rest]


def test_minute_aggregates_are_the_rest_minute_bars_and_the_bars_of_the_streamed_trades(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=0, session="2024-06-03")

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), "T.MSFT,AM.MSFT") as ws:
            return await collect(ws, lambda ev: sum(e["ev"] == "AM" for e in ev) >= 10)

    events = run(scenario())
    bars = [e for e in events if e["ev"] == "AM"][:10]
    rest = rest_minutes(sandbox_url, "MSFT", "2024-06-03")[:10]
    fields = ("o", "h", "l", "c", "v", "vw", "n")
    assert [{k: b[k] for k in fields} for b in bars] == [{k: r[k] for k in fields} for r in rest]
    assert [b["s"] for b in bars] == [r["t"] for r in rest]
    for bar in bars:
        trades = [e for e in events if e["ev"] == "T" and bar["s"] <= e["t"] < bar["e"]]
        prices = [t["p"] for t in trades]
        assert (prices[0], max(prices), min(prices), prices[-1]) == (bar["o"], bar["h"], bar["l"], bar["c"])
        assert sum(t["s"] for t in trades) == bar["v"] and len(trades) == bar["n"]


def test_second_aggregates_and_quotes_stream_too(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=0, session="2024-06-03")

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), "A.AAPL,Q.AAPL,AM.AAPL") as ws:
            return await collect(ws, lambda ev: any(e["ev"] == "AM" for e in ev))

    events = run(scenario())
    minute = next(e for e in events if e["ev"] == "AM")
    seconds = [e for e in events if e["ev"] == "A" and minute["s"] <= e["s"] < minute["e"]]
    quotes = [e for e in events if e["ev"] == "Q" and minute["s"] <= e["t"] < minute["e"]]
    assert sum(s["v"] for s in seconds) == minute["v"] and all(s["e"] - s["s"] == 1000 for s in seconds)
    assert len(quotes) == minute["n"] and all(q["bp"] < q["ap"] for q in quotes)


def test_wildcards_cover_the_universe_and_frames_are_time_ordered(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=0, session="2024-06-03", universe=3)

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), "T.*") as ws:
            return await collect(ws, lambda ev: ev[-1]["t"] >= T0 + 2 * MINUTE_MS)

    events = run(scenario())
    assert {e["sym"] for e in events} == {"AAPL", "MSFT", "AMZN"}
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


def test_a_bad_key_gets_auth_failed_and_a_policy_close(sandbox_url: str) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        async with connect(ws_url(sandbox_url)) as ws:
            await recv(ws)
            await ws.send(orjson.dumps({"action": "auth", "params": "invalid-key"}).decode())
            reply = await recv(ws)
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            return reply, ws.close_code

    reply, code = run(scenario())
    assert reply == [{"ev": "status", "status": "auth_failed", "message": "authentication failed"}]
    assert code == 1008


def test_subscribing_before_auth_is_refused_without_closing(sandbox_url: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with connect(ws_url(sandbox_url)) as ws:
            await recv(ws)
            await ws.send('{"action":"subscribe","params":"T.AAPL"}')
            first = await recv(ws)
            await ws.send('{"action":"subscribe","params":"NOPE"}')
            return first + await recv(ws)

    replies = run(scenario())
    assert [(r["status"], r["message"]) for r in replies] == [
        ("error", "not authorized"),
        ("error", "invalid subscription(s): NOPE"),
    ]


def test_a_second_connection_of_a_key_evicts_the_first_with_max_connections_and_1008(sandbox_url: str) -> None:
    key = new_key()
    url = ws_url(sandbox_url, speed=60, session="2024-06-03")

    async def scenario() -> tuple[list[dict[str, Any]], int | None, bool]:
        first = await open_stream(url, key, "T.AAPL")
        second = await open_stream(url, key, "T.MSFT")
        last: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed):
            for _ in range(10_000):
                last = await recv(first)
        second_alive = (await recv(second))[0]["sym"] == "MSFT"
        await second.close()
        return last, first.close_code, second_alive

    last, code, second_alive = run(scenario())
    assert last[0]["status"] == "max_connections" and code == 1008 and second_alive


def test_at_end_close_ends_the_replay_with_1000_and_the_control_api_shows_it_done(sandbox_url: str) -> None:
    key = new_key()
    url = ws_url(sandbox_url, speed=0, session="2024-06-03", **{"from": "15:58", "at_end": "close"})

    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        events: list[dict[str, Any]] = []
        async with await open_stream(url, key, "AM.AAPL") as ws:
            with pytest.raises(ConnectionClosed):
                for _ in range(1000):
                    events += await recv(ws)
            return events, ws.close_code

    events, code = run(scenario())
    # the 15:57 bar is due when its minute ends, at 15:58:00, the replay's first instant
    assert code == 1000 and [e["s"] for e in events] == [T0 + m * MINUTE_MS for m in (387, 388, 389)]
    mine = [c for c in httpx.get(f"{sandbox_url}/_sandbox/streams").json()["connections"] if c["key"] == key]
    assert mine and mine[0]["done"] is True and mine[0]["close_code"] == 1000


def test_a_key_configured_on_the_control_api_sets_its_connections_replay(sandbox_url: str) -> None:
    key = new_key()
    response = httpx.post(
        f"{sandbox_url}/_sandbox/streams/keys/{key}", json={"speed": 0, "session": "2024-06-04", "from": "12:00"}
    )
    assert response.status_code == 200 and response.json()["from"] == "12:00:00"
    bad = httpx.post(f"{sandbox_url}/_sandbox/streams/keys/{key}x", json={"spede": 1})
    assert bad.status_code == 400 and "spede" in bad.json()["error"]

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(ws_url(sandbox_url), key, "T.AAPL") as ws:
            return await recv(ws)

    first = run(scenario())[0]
    noon = 1717516800000  # 2024-06-04 12:00 New York
    assert noon <= first["t"] < noon + MINUTE_MS
    httpx.delete(f"{sandbox_url}/_sandbox/streams/keys/{key}")


def test_an_unknown_url_setting_closes_with_the_reason(sandbox_url: str) -> None:
    async def scenario() -> tuple[int | None, str | None]:
        async with connect(ws_url(sandbox_url, sped=3)) as ws:
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            return ws.close_code, ws.close_reason

    code, reason = run(scenario())
    assert code == 1008 and reason is not None and "sped" in reason


def test_subscriptions_change_mid_stream(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=600, session="2024-06-03")

    async def scenario() -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
        async with await open_stream(url, new_key(), "T.AAPL,Q.AAPL") as ws:
            await collect(ws, lambda ev: any(e["ev"] == "Q" for e in ev))
            await ws.send('{"action":"unsubscribe","params":"Q.AAPL"}')
            await ws.send('{"action":"subscribe","params":"AM.AAPL"}')
            acks: list[dict[str, Any]] = []
            frames: list[list[dict[str, Any]]] = []
            for _ in range(2000):  # bounded: 600x replays a market minute in 0.1 s
                frame = await recv(ws)
                if frame[0]["ev"] == "status":
                    acks += frame
                elif len(acks) == 2:
                    frames.append(frame)
                if sum(e["ev"] == "AM" for f in frames for e in f) >= 2:
                    return frames, acks
            raise AssertionError("no minute aggregates after subscribing to them")

    frames, acks = run(scenario())
    assert [a["message"] for a in acks] == ["unsubscribed to: Q.AAPL", "subscribed to: AM.AAPL"]
    # at most the one frame already on its way when the unsubscribe arrived still carries quotes
    assert not any(e["ev"] == "Q" for f in frames[1:] for e in f)
    assert any(e["ev"] == "T" for f in frames for e in f)


def test_sessions_replay_back_to_back(sandbox_url: str) -> None:
    url = ws_url(sandbox_url, speed=0, session="2024-06-03", sessions=2, **{"from": "15:59"})
    next_open = 1717507800000  # 2024-06-04 09:30 New York

    async def scenario() -> list[dict[str, Any]]:
        async with await open_stream(url, new_key(), "AM.AAPL") as ws:
            return await collect(ws, lambda ev: ev[-1]["s"] >= next_open + MINUTE_MS)

    starts = [e["s"] for e in run(scenario())]
    assert starts[:4] == [T0 + 388 * MINUTE_MS, T0 + 389 * MINUTE_MS, next_open, next_open + MINUTE_MS]
