"""Talking to the sandbox's Polygon stocks stream from a test: open, authenticate, subscribe, receive.

Shared by the sandbox stream tests (no test module imports another).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection

T0 = 1717421400000  # 2024-06-03 09:30 New York, ms
MINUTE_MS = 60_000


def run(coro: Coroutine[Any, Any, Any], seconds: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, seconds))


def new_key() -> str:
    return f"k{uuid.uuid4().hex[:12]}"


def ws_url(base: str, **query: Any) -> str:
    return base.replace("http://", "ws://") + "/stocks" + ("?" + urlencode(query) if query else "")


async def recv(ws: Connection, timeout: float = 10) -> list[dict[str, Any]]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def open_stream(url: str, key: str, params: str, **connect_args: Any) -> Connection:
    ws = await connect(url, **connect_args)
    assert (await recv(ws))[0]["status"] == "connected"
    await ws.send(orjson.dumps({"action": "auth", "params": key}).decode())
    assert (await recv(ws))[0]["status"] == "auth_success"
    await ws.send(orjson.dumps({"action": "subscribe", "params": params}).decode())
    replies = await recv(ws)
    assert [r["message"] for r in replies] == [f"subscribed to: {p}" for p in params.split(",")]
    return ws
