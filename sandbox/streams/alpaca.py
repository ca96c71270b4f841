"""Alpaca's v2 stock stream protocol: client actions, control messages, events, JSON or msgpack.

Events carry the REST values (sandbox/wire/alpaca.py renders the same trades and quotes for
/v2/stocks/trades and /quotes): `i` the REST id, exchange letters, conditions, tape letter. Until
a frame is encoded, `t` is an int of UTC nanoseconds; the codec renders it as alpaca does: an
RFC 3339 string with nanoseconds in JSON (seconds for bars, as REST), a msgpack Timestamp in
msgpack (alpaca-py calls `.to_datetime()` on it).
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
_BAR_TYPES = ("b", "u", "d")


def error(code: int, message: str | None = None) -> dict[str, Any]:
    return {"T": "error", "code": code, "msg": message or ERRORS[code]}


def success(message: str) -> dict[str, Any]:
    return {"T": "success", "msg": message}


def connected() -> list[dict[str, Any]]:
    return [success("connected")]


def parse_client(frame: str | bytes) -> Action:
    """One client frame (msgpack from alpaca-py, JSON otherwise) -> an Action."""
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
        for channel in SUBSCRIBABLE:
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


def _bars(day: SymbolDay, kind: str, rows: np.ndarray) -> list[dict[str, Any]]:
    b = day.daily if kind == "d" else day.minutes.bars
    cols = zip(
        b.t_ns[rows].tolist(),
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


def render(day: SymbolDay, channel: str, rows: np.ndarray) -> list[dict[str, Any]]:
    sym, z = day.symbol, TAPE_LETTERS[day.tape]
    if channel == "trades":
        t = day.trades.take(rows)
        cols = zip(
            t.alpaca_id.tolist(),
            ALPACA_EXCHANGE_CODES[t.exchange].tolist(),
            t.price.tolist(),
            t.size.tolist(),
            t.t_ns.tolist(),
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
            q.t_ns.tolist(),
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
        return _bars(day, "b", rows)
    if channel == "updatedBars":
        return _bars(day, "u", rows)
    if channel == "dailyBars":
        return _bars(day, "d", rows)
    if channel == "corrections":
        a = day.corrections.take(rows)
        cols3 = zip(
            ALPACA_EXCHANGE_CODES[a.exchange].tolist(),
            a.old_id.tolist(),
            a.old_price.tolist(),
            a.size.tolist(),
            a.new_id.tolist(),
            a.new_price.tolist(),
            a.t_ns.tolist(),
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
            a.t_ns.tolist(),
            strict=True,
        )
        return [
            {"T": "x", "S": sym, "i": i, "x": x, "p": p, "s": s, "a": "C", "z": z, "t": ns} for x, i, p, s, ns in cols4
        ]
    return []


def restamp(messages: list[dict[str, Any]], wall_ns: int) -> None:
    """`stamp=send`: trades and quotes carry the instant their frame is built."""
    for m in messages:
        if m.get("T") in ("t", "q"):
            m["t"] = wall_ns


def _with_times(messages: list[dict[str, Any]], render_time: Any) -> list[dict[str, Any]]:
    return [{**m, "t": render_time(m)} if isinstance(m.get("t"), int) else m for m in messages]


def encode_json(messages: list[dict[str, Any]]) -> str:
    stamped = [m for m in messages if isinstance(m.get("t"), int)]
    if not stamped:
        return orjson.dumps(messages).decode()
    ticks = [m for m in stamped if m["T"] not in _BAR_TYPES]
    bars = [m for m in stamped if m["T"] in _BAR_TYPES]
    text: dict[int, str] = {}
    for group, unit in ((ticks, "ns"), (bars, "s")):
        if group:
            for m, s in zip(group, rfc3339(np.array([m["t"] for m in group], dtype=np.int64), unit), strict=True):
                text[id(m)] = s
    return orjson.dumps(_with_times(messages, lambda m: text[id(m)])).decode()


def encode_msgpack(messages: list[dict[str, Any]]) -> bytes:
    out = _with_times(messages, lambda m: msgpack.Timestamp.from_unix_nano(m["t"]))
    return msgpack.packb(out, datetime=False)
