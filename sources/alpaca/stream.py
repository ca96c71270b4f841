"""Alpaca's market-data stream ``/v2/{feed}``, as pure functions: auth and subscribe messages, control
events, and frames -> :class:`~sources.stream.StreamBatch` (the I/O is :mod:`sources.stream`).

Wire format (JSON text frames; alpaca-py asks for msgpack, we do not): every frame is a JSON array.
Control: ``{"T":"success","msg":"connected"|"authenticated"}``, ``{"T":"error","code","msg"}`` (402
auth failed, 405 symbol limit exceeded, 406 connection limit exceeded, 407 slow client, 409
insufficient subscription, ...), ``{"T":"subscription",...}``.
Data: trade ``{"T":"t","S","i","x","p","s","c","z","t"}``, quote ``{"T":"q","S","bx","bp","bs","ax","ap",
"as","c","z","t"}``, minute bar ``b`` and updated minute bar ``u`` (``{"S","o","h","l","c","v","n","vw","t"}``),
correction ``{"T":"c","S","x","oi","op","os","oc","ci","cp","cs","cc","z","t"}``, cancel/error
``{"T":"x","S","i","x","p","s","a","z","t"}``. Times are RFC 3339 with up to nanoseconds.

Rows are spelled as :mod:`sources.alpaca.parsing` spells the REST rows (``i`` as a string, exchange
and tape letters as sent, conditions comma-joined), so a streamed trade and the REST trade of the
same print are the same row. The ``bars`` dataset subscribes to ``bars`` and ``updatedBars``: an
updated bar (sent after late trades of a minute already sent) is the REST bar of that minute, and
both arrive as rows of the same minute (the later one wins at the writer). Daily bars, statuses,
LULDs and news are counted as ignored.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
import pandas as pd

from core import model
from sources.stream_parsing import (
    CANCELS,
    CORRECTIONS,
    DeadFrame,
    Decoded,
    StreamBatch,
    StreamEvent,
    StreamProtocol,
    Wire,
    build_checked,
    columns_frame,
    conditions_column,
    constant_column,
    fields,
    float_column,
    id_column,
    int_column,
    message_text,
    rfc3339_column,
    shared_frames,
    str_column,
    symbol_column,
)

SOURCE = "alpaca"
DEFAULT_URL = "wss://stream.data.alpaca.markets/v2/{feed}"
PATH = "/v2/{feed}"
DEFAULT_FEED = "iex"
FEEDS = ("iex", "sip", "test")
CHANNELS: dict[str, tuple[str, ...]] = {"trades": ("trades",), "quotes": ("quotes",), "bars": ("bars", "updatedBars")}
_IGNORED = frozenset({"d", "s", "l", "n", "o"})
_ERROR_KINDS = {402: "auth_failed", 406: "connection_limit", 407: "slow_consumer"}
# Refusals no reconnect can change (kind ``plan_limit``): what the key's plan allows, and what to do.
_PLAN_LIMITS = {
    405: "the key's Alpaca plan allows fewer symbols than subscribed: stream fewer symbols (or split them "
    "across keys), or upgrade the Alpaca market-data subscription",
    409: "the key's Alpaca market-data subscription does not include this feed: stream the iex feed "
    "(feed=iex), or upgrade the subscription",
}


# -- messages we send ---------------------------------------------------------------------------


def auth_message(api_key: str, secret_key: str | None = None) -> bytes:
    return orjson.dumps({"action": "auth", "key": api_key, "secret": secret_key or ""})


def subscription_messages(action: str, datasets: Collection[str], symbols: Collection[str]) -> list[bytes]:
    """One ``subscribe``/``unsubscribe`` naming each channel's symbols (``["*"]`` for all)."""
    body: dict[str, Any] = {"action": action}
    for dataset in datasets:
        for channel in CHANNELS[dataset]:
            body[channel] = list(symbols)
    return [orjson.dumps(body)] if len(body) > 1 else []


# -- control events -------------------------------------------------------------------------------


def control_event(message: dict[str, Any], received_ns: int) -> StreamEvent:
    kind = message.get("T")
    if kind == "success":
        text = str(message.get("msg", ""))
        return StreamEvent(text if text in ("connected", "authenticated") else "status", text, None, received_ns)
    if kind == "error":
        code = message.get("code")
        code = code if isinstance(code, int) else None
        text = str(message.get("msg", "error"))
        if code in _PLAN_LIMITS:
            return StreamEvent("plan_limit", f"{text!r} (code {code}): {_PLAN_LIMITS[code]}", code, received_ns)
        return StreamEvent(_ERROR_KINDS.get(code or 0, "error"), text, code, received_ns)
    summary = {k: v for k, v in message.items() if k != "T" and v}
    return StreamEvent("subscribed", orjson.dumps(summary).decode(), None, received_ns)


def control_events(frame: bytes, received_ns: int) -> list[StreamEvent]:
    """The control events of one frame (none when it is not JSON)."""
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return []
    items = decoded if isinstance(decoded, list) else [decoded]
    return [
        control_event(m, received_ns)
        for m in items
        if isinstance(m, dict) and m.get("T") in ("success", "error", "subscription")
    ]


# -- data -----------------------------------------------------------------------------------------


WIRE = Wire(SOURCE, symbol="S", bar_time="t", times=rfc3339_column)


def _corrections(ms: list[Any]) -> pd.DataFrame:
    if not ms:
        return model.empty_frame(CORRECTIONS)
    f = fields(ms, ("S", "t", "oi", "op", "os", "cp", "cs"), ("x", "oc", "ci", "cc", "z"))
    return columns_frame(
        CORRECTIONS,
        {
            "symbol": symbol_column(f["S"]),
            "ts": rfc3339_column(f["t"]),
            "exchange": str_column(f["x"]),
            "original_trade_id": id_column(f["oi"]),
            "original_price": float_column(f["op"]),
            "original_size": int_column(f["os"]),
            "original_conditions": conditions_column(f["oc"]),
            "corrected_trade_id": str_column(f["ci"]),
            "corrected_price": float_column(f["cp"]),
            "corrected_size": int_column(f["cs"]),
            "corrected_conditions": conditions_column(f["cc"]),
            "tape": str_column(f["z"]),
            "source": constant_column(SOURCE, len(ms)),
        },
    )


def _cancels(ms: list[Any]) -> pd.DataFrame:
    if not ms:
        return model.empty_frame(CANCELS)
    f = fields(ms, ("S", "t", "i", "p", "s"), ("x", "a", "z"))
    return columns_frame(
        CANCELS,
        {
            "symbol": symbol_column(f["S"]),
            "ts": rfc3339_column(f["t"]),
            "exchange": str_column(f["x"]),
            "trade_id": id_column(f["i"]),
            "price": float_column(f["p"]),
            "size": int_column(f["s"]),
            "action": str_column(f["a"]),
            "tape": str_column(f["z"]),
            "source": constant_column(SOURCE, len(ms)),
        },
    )


_KINDS = ("t", "q", "b", "c", "x")


def build_batch(decoded: Decoded) -> StreamBatch:
    """Messages -> one batch: one pass to group them by type, then column by column."""
    groups: dict[str, list[Any]] = {k: [] for k in _KINDS}
    times: dict[str, list[int]] = {k: [] for k in _KINDS}
    events: list[StreamEvent] = []
    dead: list[DeadFrame] = list(decoded.dead)
    ignored = 0
    for m, ns in zip(decoded.messages, decoded.received_ns, strict=True):
        kind = m.get("T") if type(m) is dict else None
        slot = ("b" if kind == "u" else kind) if type(kind) is str else ""  # an updated bar is a bar
        group = groups.get(slot)
        if group is not None:
            group.append(m)
            times[slot].append(ns)
        elif kind in ("success", "error", "subscription"):
            events.append(control_event(m, ns))
        elif kind in _IGNORED:
            ignored += 1
        else:
            reason = "not an object" if type(m) is not dict else f"unknown message type {kind!r}"
            dead.append(DeadFrame(message_text(m), f"malformed alpaca message: {reason}", ns))
    trades, trade_ns, quotes, bars, bad = shared_frames(
        WIRE, (groups["t"], times["t"]), (groups["q"], times["q"]), (groups["b"], times["b"])
    )
    dead += bad
    correction_keys = ("t", "oi", "op", "os", "cp", "cs")
    corrections, bad, _ = build_checked(
        groups["c"], times["c"], _corrections, WIRE.check(*correction_keys), "correction"
    )
    dead += bad
    cancels, bad, _ = build_checked(groups["x"], times["x"], _cancels, WIRE.check("t", "i", "p", "s"), "cancel")
    dead += bad
    return StreamBatch(
        SOURCE,
        trades,
        quotes,
        bars,
        corrections,
        cancels,
        dead,
        trade_ns,
        events,
        ignored,
    )


def parse_frames(frames: list[bytes], received_ns: list[int]) -> StreamBatch:
    return PROTOCOL.parse_frames(frames, received_ns)


PROTOCOL = StreamProtocol(
    source=SOURCE,
    default_url=DEFAULT_URL,
    path=PATH,
    auth_message=auth_message,
    subscription_messages=subscription_messages,
    control_events=control_events,
    build_batch=build_batch,
    default_feed=DEFAULT_FEED,
    feeds=FEEDS,
)
