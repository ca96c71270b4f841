"""Polygon's stocks-cluster stream protocol: client actions, status messages, event rendering.

Events carry the REST values (sandbox/wire/polygon.py renders the same trades and quotes for
/v3/trades and /v3/quotes): the trade id is the REST `id`, `q` the REST `sequence_number`,
times the REST `sip_timestamp` in milliseconds, exchanges Polygon's numeric ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from sandbox.streams.protocol import Action
from sandbox.streams.timeline import SymbolDay
from sandbox.ticks import POLYGON_EXCHANGE_IDS

VENDOR = "polygon"
#: Polygon's event prefixes and the neutral channel each one streams.
EVENTS = {"T": "trades", "Q": "quotes", "AM": "bars", "A": "seconds"}
#: Neutral channels replayed for a subscribed one (Polygon has no corrections or cancels on this feed).
REPLAYED = {channel: (channel,) for channel in EVENTS.values()}
MAX_CONNECTIONS_MESSAGE = (
    "Maximum number of websocket connections exceeded. You tried to connect more than {n} times. "
    "Please contact support to raise your limit."
)


def status(state: str, message: str) -> dict[str, Any]:
    return {"ev": "status", "status": state, "message": message}


def connected() -> list[dict[str, Any]]:
    return [status("connected", "Connected Successfully")]


def encode(messages: list[dict[str, Any]]) -> str:
    return orjson.dumps(messages).decode()


def _topics(params: str) -> tuple[dict[str, list[str]], list[str], list[str]]:
    topics: dict[str, list[str]] = {}
    good, bad = [], []
    for raw in params.split(","):
        item = raw.strip()
        if not item:
            continue
        event, _, symbol = item.partition(".")
        channel = EVENTS.get(event)
        if channel is None or not symbol:
            bad.append(item)
            continue
        topics.setdefault(channel, []).append("*" if symbol == "*" else symbol.upper())
        good.append(item)
    return topics, good, bad


def parse_client(frame: str | bytes) -> Action:
    """One client frame -> an Action; malformed frames and unknown actions become errors."""
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return Action("error", error="invalid json")
    if not isinstance(data, dict):
        return Action("error", error="invalid message: expected a JSON object")
    action = data.get("action")
    params = data.get("params")
    if action == "auth":
        return Action("auth", key=params if isinstance(params, str) else "")
    if action in ("subscribe", "unsubscribe"):
        if not isinstance(params, str):
            return Action("error", error=f"{action}: params must be a string like 'T.AAPL,Q.*'")
        topics, good, bad = _topics(params)
        if bad:
            return Action("error", error=f"invalid subscription(s): {','.join(bad)}")
        return Action(action, topics=topics, params=good)
    return Action("error", error=f"unknown action: {action!r}")


def subscription_replies(action: Action) -> list[dict[str, Any]]:
    verb = "subscribed to" if action.kind == "subscribe" else "unsubscribed to"
    return [status("success", f"{verb}: {p}") for p in action.params]


def _aggs(day: SymbolDay, ev: str, rows: np.ndarray, width_ms: int) -> list[dict[str, Any]]:
    agg = day.minutes if ev == "AM" else day.seconds
    b = agg.bars
    start = (b.t_ns[rows] // 1_000_000).tolist()
    volume = b.volume[rows].tolist()
    count = b.trades[rows].tolist()
    cols = zip(
        volume,
        agg.accumulated_volume[rows].tolist(),
        b.vwap[rows].tolist(),
        b.open[rows].tolist(),
        b.close[rows].tolist(),
        b.high[rows].tolist(),
        b.low[rows].tolist(),
        agg.session_vwap[rows].tolist(),
        count,
        start,
        strict=True,
    )
    op, sym = agg.session_open, day.symbol
    return [
        {
            "ev": ev,
            "sym": sym,
            "v": v,
            "av": av,
            "op": op,
            "vw": vw,
            "o": o,
            "c": c,
            "h": h,
            "l": lo,
            "a": a,
            "z": v // n if n else 0,
            "n": n,
            "s": s,
            "e": s + width_ms,
        }
        for v, av, vw, o, c, h, lo, a, n, s in cols
    ]


def render(day: SymbolDay, channel: str, rows: np.ndarray) -> list[dict[str, Any]]:
    """Wire events of `rows` of one channel of `day`."""
    sym, tape = day.symbol, day.tape
    if channel == "trades":
        t = day.trades.take(rows)
        prefix = str(day.session)
        cols = zip(
            t.sequence.tolist(),
            POLYGON_EXCHANGE_IDS[t.exchange].tolist(),
            t.price.tolist(),
            t.size.tolist(),
            (t.t_ns // 1_000_000).tolist(),
            strict=True,
        )
        return [
            {"ev": "T", "sym": sym, "i": f"{prefix}{q:08d}", "x": x, "p": p, "s": s, "t": ms, "q": q, "z": tape}
            for q, x, p, s, ms in cols
        ]
    if channel == "quotes":
        qt = day.quotes.take(rows)
        cols2 = zip(
            POLYGON_EXCHANGE_IDS[qt.bid_exchange].tolist(),
            qt.bid.tolist(),
            qt.bid_size.tolist(),
            POLYGON_EXCHANGE_IDS[qt.ask_exchange].tolist(),
            qt.ask.tolist(),
            qt.ask_size.tolist(),
            (qt.t_ns // 1_000_000).tolist(),
            qt.sequence.tolist(),
            strict=True,
        )
        return [
            {
                "ev": "Q",
                "sym": sym,
                "bx": bx,
                "bp": bp,
                "bs": bs,
                "ax": ax,
                "ap": ap,
                "as": az,
                "t": ms,
                "q": q,
                "z": tape,
            }
            for bx, bp, bs, ax, ap, az, ms, q in cols2
        ]
    if channel == "bars":
        return _aggs(day, "AM", rows, 60_000)
    if channel == "seconds":
        return _aggs(day, "A", rows, 1_000)
    return []


def restamp(messages: list[dict[str, Any]], wall_ns: int) -> None:
    """`stamp=send`: trades and quotes carry the instant their frame is built."""
    ms = wall_ns // 1_000_000
    for m in messages:
        if m.get("ev") in ("T", "Q"):
            m["t"] = ms
