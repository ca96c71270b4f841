"""Alpaca's news stream from the sandbox under uvicorn: the REST news of the same days as `n` messages,
updates sent again, JSON and msgpack, one symbol's subscription."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import msgpack  # type: ignore[import-untyped]
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

# Five sessions, 2024-06-03 (Monday) to 06-07, whole news days; New York midnight is 04:00 UTC.
REPLAY = {"session": "2024-06-03", "sessions": 5, "from": "00:00", "speed": 0, "at_end": "close"}
WINDOW = ("2024-06-03T04:00:00Z", "2024-06-08T03:59:59Z")
FIELDS = {"T", "id", "headline", "summary", "author", "created_at", "updated_at", "url", "content", "symbols", "source"}


def news_url(base: str, **query: Any) -> str:
    return base.replace("http://", "ws://") + "/v1beta1/news?" + urlencode(query)


def rest_news(base: str, symbols: str | None = None) -> list[dict[str, Any]]:
    headers = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
    query: dict[str, Any] = {"start": WINDOW[0], "end": WINDOW[1], "limit": 50, "sort": "asc"}
    if symbols:
        query["symbols"] = symbols
    out: list[dict[str, Any]] = []
    while True:
        body = httpx.get(f"{base}/v1beta1/news", params=query, headers=headers, timeout=30).json()
        out += body["news"]
        if not body["next_page_token"]:
            return out
        query["page_token"] = body["next_page_token"]


async def replay(url: str, symbols: list[str], binary: bool = False) -> tuple[list[Any], list[dict[str, Any]]]:
    """(control replies, data messages) of a whole replay (the sandbox closes it at the end)."""

    def decode(frame: str | bytes) -> list[dict[str, Any]]:
        return msgpack.unpackb(frame) if isinstance(frame, bytes) else orjson.loads(frame)

    def pack(message: dict[str, Any]) -> str | bytes:
        return msgpack.packb(message) if binary else orjson.dumps(message).decode()

    headers = {"Content-Type": "application/msgpack"} if binary else {}
    controls: list[Any] = []
    data: list[dict[str, Any]] = []
    async with connect(url, additional_headers=headers) as ws:
        controls.append(decode(await ws.recv()))
        await ws.send(pack({"action": "auth", "key": f"n{uuid.uuid4().hex[:12]}", "secret": "s"}))
        controls.append(decode(await ws.recv()))
        await ws.send(pack({"action": "subscribe", "news": symbols}))
        controls.append(decode(await ws.recv()))
        try:
            while True:
                data += decode(await asyncio.wait_for(ws.recv(), 30))
        except ConnectionClosed:
            pass
    return controls, data


def latest_versions(messages: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    latest: dict[int, dict[str, Any]] = {}
    for m in messages:
        latest[m["id"]] = m
    return latest


def test_the_stream_sends_the_rest_news_of_the_days_and_each_update_again(sandbox_url: str) -> None:
    controls, messages = asyncio.run(asyncio.wait_for(replay(news_url(sandbox_url, **REPLAY), ["*"]), 120))
    assert controls == [
        [{"T": "success", "msg": "connected"}],
        [{"T": "success", "msg": "authenticated"}],
        [{"T": "subscription", "news": ["*"]}],
    ]
    assert messages and all(set(m) == FIELDS and m["T"] == "n" and m["source"] == "benzinga" for m in messages)
    published = [m["created_at"] for m in messages if m["updated_at"] == m["created_at"]]
    assert published == sorted(published)  # sent as published
    rest = rest_news(sandbox_url)
    latest = latest_versions(messages)
    in_window = {i: m for i, m in latest.items() if WINDOW[0] <= m["created_at"] <= WINDOW[1]}
    assert sorted(in_window) == sorted(r["id"] for r in rest)
    for record in rest:  # the last version streamed is what REST serves now
        assert {k: v for k, v in in_window[record["id"]].items() if k != "T"} == {
            k: v for k, v in record.items() if k != "images"
        }
    updated = [r for r in rest if r["updated_at"] != r["created_at"]]
    assert updated and len(messages) == len(latest) + sum(
        1 for m in latest.values() if m["updated_at"] != m["created_at"]
    )
    for record in updated:  # first sent as published, then again as updated
        versions = [m for m in messages if m["id"] == record["id"]]
        assert [v["updated_at"] for v in versions] == [record["created_at"], record["updated_at"]]
        assert versions[1]["headline"].startswith("UPDATE: ")


def test_a_symbols_subscription_gets_what_rest_serves_for_it_in_msgpack(sandbox_url: str) -> None:
    symbol = rest_news(sandbox_url)[0]["symbols"][0]  # a story's own symbol comes first
    _, messages = asyncio.run(asyncio.wait_for(replay(news_url(sandbox_url, **REPLAY), [symbol], True), 120))
    rest = rest_news(sandbox_url, symbol)
    latest = latest_versions(messages)
    assert rest and sorted(latest) == sorted(r["id"] for r in rest)
    for record in rest:
        streamed = latest[record["id"]]
        assert isinstance(streamed["created_at"], msgpack.Timestamp)
        created = streamed["created_at"].to_datetime().astimezone(UTC)
        assert created == datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
        assert (streamed["headline"], streamed["symbols"], streamed["url"]) == (
            record["headline"],
            record["symbols"],
            record["url"],
        )
