"""Alpaca's v2 stock stream protocol: client actions, control messages, events, JSON or msgpack.

Events carry the REST values (sandbox/wire/alpaca.py renders the same trades and quotes for
/v2/stocks/trades and /quotes): `i` the REST id, exchange letters, conditions, tape letter. `t` is
rendered for the connection's codec, as alpaca does: an RFC 3339 string with nanoseconds in JSON
(seconds for bars, as REST), a msgpack Timestamp in msgpack (alpaca-py calls `.to_datetime()` on
it). Rendering happens with the rest of a chunk in a worker thread, so encoding a frame on the
event loop is one orjson/msgpack call.
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import orjson

from sandbox.streams.protocol import Action
from sandbox.streams.timeline import SymbolDay
from sandbox.ticks import ALPACA_EXCHANGE_CODES, TAPE_LETTERS
from sandbox.wire.common import rfc3339

VENDOR = "alpaca"
FEEDS = ("iex", "sip", "test")
#: Channels a client may subscribe to; the ones the sandbox has data for map to timeline channels.
SUBSCRIBABLE = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
REPLAYED = {
    "trades": ("trades", "corrections", "cancels"),
    "quotes": ("quotes",),
    "bars": ("bars",),
    "updatedBars": ("updatedBars",),
    "dailyBars": ("dailyBars",),
}
ERRORS = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    406: "connection limit exceeded",
    407: "slow client",
    500: "internal error",
}
CODECS = ("json", "msgpack")


def times(t_ns: np.ndarray, unit: str, codec: str) -> list[Any]:
    """`t` values of a codec: RFC 3339 strings (JSON) or msgpack Timestamps, vectorized where it can."""
    if codec == "json":
        return rfc3339(t_ns, unit)
    return [
        msgpack.Timestamp(s, n)
        for s, n in zip((t_ns // 1_000_000_000).tolist(), (t_ns % 1_000_000_000).tolist(), strict=True)
    ]


def error(code: int, message: str | None = None) -> dict[str, Any]:
    return {"T": "error", "code": code, "msg": message or ERRORS[code]}


def success(message: str) -> dict[str, Any]:
    return {"T": "success", "msg": message}


def connected() -> list[dict[str, Any]]:
    return [success("connected")]


def parse_client(frame: str | bytes, channels: tuple[str, ...] = SUBSCRIBABLE) -> Action:
    """One client frame (msgpack from alpaca-py, JSON otherwise) -> an Action (subscriptions to
    ``channels``: the stock stream's, or the news stream's ``news``)."""
    data: Any
    try:
        data = msgpack.unpackb(frame) if isinstance(frame, bytes) else orjson.loads(frame)
    except (ValueError, msgpack.UnpackException):
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return Action("error", error="400")
    if not isinstance(data, dict):
        return Action("error", error="400")
    action = data.get("action")
    if action == "auth":
        return Action("auth", key=str(data.get("key") or ""), secret=str(data.get("secret") or ""))
    if action in ("subscribe", "unsubscribe"):
        topics: dict[str, list[str]] = {}
        for channel in channels:
            symbols = data.get(channel)
            if symbols is None:
                continue
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                return Action("error", error="400")
            topics[channel] = ["*" if s == "*" else s.upper() for s in symbols]
        return Action(action, topics=topics)
    return Action("error", error="400")


def subscription(symbols_of: Any) -> dict[str, Any]:
    """The `subscription` reply listing what the connection now holds (`symbols_of(channel)`)."""
    reply: dict[str, Any] = {"T": "subscription"}
    for channel in SUBSCRIBABLE:
        reply[channel] = symbols_of(channel)
    reply["corrections"] = symbols_of("trades")
    reply["cancelErrors"] = symbols_of("trades")
    return reply


def _bars(day: SymbolDay, kind: str, rows: np.ndarray, codec: str) -> list[dict[str, Any]]:
    b = day.daily if kind == "d" else day.minutes.bars
    cols = zip(
        times(b.t_ns[rows], "s", codec),
        b.open[rows].tolist(),
        b.high[rows].tolist(),
        b.low[rows].tolist(),
        b.close[rows].tolist(),
        b.volume[rows].tolist(),
        b.trades[rows].tolist(),
        b.vwap[rows].tolist(),
        strict=True,
    )
    sym = day.symbol
    return [
        {"T": kind, "S": sym, "o": o, "h": h, "l": lo, "c": c, "v": v, "n": n, "vw": vw, "t": t}
        for t, o, h, lo, c, v, n, vw in cols
    ]


def render(day: SymbolDay, channel: str, rows: np.ndarray, codec: str = "json") -> list[dict[str, Any]]:
    sym, z = day.symbol, TAPE_LETTERS[day.tape]
    if channel == "trades":
        t = day.trades.take(rows)
        cols = zip(
            t.alpaca_id.tolist(),
            ALPACA_EXCHANGE_CODES[t.exchange].tolist(),
            t.price.tolist(),
            t.size.tolist(),
            times(t.t_ns, "ns", codec),
            strict=True,
        )
        return [
            {"T": "t", "S": sym, "i": i, "x": x, "p": p, "s": s, "c": ["@"], "z": z, "t": ns} for i, x, p, s, ns in cols
        ]
    if channel == "quotes":
        q = day.quotes.take(rows)
        cols2 = zip(
            ALPACA_EXCHANGE_CODES[q.bid_exchange].tolist(),
            q.bid.tolist(),
            q.bid_size.tolist(),
            ALPACA_EXCHANGE_CODES[q.ask_exchange].tolist(),
            q.ask.tolist(),
            q.ask_size.tolist(),
            times(q.t_ns, "ns", codec),
            strict=True,
        )
        return [
            {
                "T": "q",
                "S": sym,
                "bx": bx,
                "bp": bp,
                "bs": bs,
                "ax": ax,
                "ap": ap,
                "as": az,
                "c": ["R"],
                "z": z,
                "t": ns,
            }
            for bx, bp, bs, ax, ap, az, ns in cols2
        ]
    if channel == "bars":
        return _bars(day, "b", rows, codec)
    if channel == "updatedBars":
        return _bars(day, "u", rows, codec)
    if channel == "dailyBars":
        return _bars(day, "d", rows, codec)
    if channel == "corrections":
        a = day.corrections.take(rows)
        cols3 = zip(
            ALPACA_EXCHANGE_CODES[a.exchange].tolist(),
            a.old_id.tolist(),
            a.old_price.tolist(),
            a.size.tolist(),
            a.new_id.tolist(),
            a.new_price.tolist(),
            times(a.t_ns, "ns", codec),
            strict=True,
        )
        return [
            {
                "T": "c",
                "S": sym,
                "x": x,
                "oi": oi,
                "op": op,
                "os": size,
                "oc": ["@"],
                "ci": ci,
                "cp": cp,
                "cs": size,
                "cc": ["@"],
                "z": z,
                "t": ns,
            }
            for x, oi, op, size, ci, cp, ns in cols3
        ]
    if channel == "cancels":
        a = day.cancels.take(rows)
        cols4 = zip(
            ALPACA_EXCHANGE_CODES[a.exchange].tolist(),
            a.old_id.tolist(),
            a.old_price.tolist(),
            a.size.tolist(),
            times(a.t_ns, "ns", codec),
            strict=True,
        )
        return [
            {"T": "x", "S": sym, "i": i, "x": x, "p": p, "s": s, "a": "C", "z": z, "t": ns} for x, i, p, s, ns in cols4
        ]
    return []


def restamp(messages: list[dict[str, Any]], wall_ns: int, codec: str = "json") -> None:
    """`stamp=send`: trades and quotes carry the instant their frame is built."""
    now = times(np.array([wall_ns], dtype=np.int64), "ns", codec)[0]
    for m in messages:
        if m.get("T") in ("t", "q"):
            m["t"] = now


def encode_json(messages: list[dict[str, Any]]) -> str:
    return orjson.dumps(messages).decode()


def encode_msgpack(messages: list[dict[str, Any]]) -> bytes:
    return msgpack.packb(messages, datetime=False)
