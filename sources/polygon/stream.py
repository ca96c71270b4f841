"""Polygon's stocks WebSocket, as pure functions: auth and subscribe messages, control events, and
frames -> :class:`~sources.stream.StreamBatch` (the I/O is :mod:`sources.stream`).

Wire format (shared/REFERENCE.md, the massive SDK): every frame is a JSON array of events. Status
``{"ev":"status","status","message"}`` (connected, auth_success, auth_failed, success for each
subscription, max_connections before close 1008 when another connection of the key evicts us,
slow_consumer); trade ``{"ev":"T","sym","i","x","p","s","c","t","q","z"}``; quote ``{"ev":"Q","sym",
"bx","bp","bs","ax","ap","as","c","t","q","z"}``; minute aggregate ``{"ev":"AM","sym","v","vw","o","c",
"h","l","n","s","e",...}``. Times are Unix milliseconds.

Rows are spelled as :mod:`sources.polygon.parsing` spells the REST rows (ids and exchange/tape
codes as strings, conditions comma-joined), with one difference the wire imposes: the stream's
times are milliseconds, REST's ``sip_timestamp`` nanoseconds. :func:`align_to_stream` floors REST
trades/quotes to the stream's resolution, so a REST row and the streamed row of the same print are
equal (the hybrid join's keys include ``ts``).

Per-second aggregates (``A``) are not modelled (``core.model`` timeframes start at one minute): they
are counted as ignored and never subscribed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
import pandas as pd

from sources.stream_parsing import (
    DeadFrame,
    Decoded,
    StreamBatch,
    StreamEvent,
    StreamProtocol,
    Wire,
    epoch_column,
    message_text,
    shared_frames,
)

SOURCE = "polygon"
DEFAULT_URL = "wss://socket.polygon.io/stocks"
PATH = "/stocks"
MS = 1_000_000  # ns per stream time unit
CHANNELS = {"trades": "T", "quotes": "Q", "bars": "AM"}
_IGNORED = frozenset({"A", "LULD", "NOI", "FMV", "LV"})

_STATUS_KINDS = {
    "connected": "connected",
    "auth_success": "authenticated",
    "auth_failed": "auth_failed",
    "max_connections": "connection_limit",
    "slow_consumer": "slow_consumer",
    "error": "error",
}


# -- messages we send ---------------------------------------------------------------------------


def auth_message(api_key: str, secret_key: str | None = None) -> bytes:
    return orjson.dumps({"action": "auth", "params": api_key})


def subscription_messages(action: str, datasets: Collection[str], symbols: Collection[str]) -> list[bytes]:
    """One ``subscribe``/``unsubscribe`` with ``T.AAPL,Q.AAPL,AM.AAPL``-style params (``T.*`` for all)."""
    params = ",".join(f"{CHANNELS[d]}.{s}" for d in datasets for s in symbols)
    return [orjson.dumps({"action": action, "params": params})] if params else []


# -- control events -------------------------------------------------------------------------------


def status_event(message: dict[str, Any], received_ns: int) -> StreamEvent:
    status = str(message.get("status", ""))
    text = str(message.get("message", status))
    kind = _STATUS_KINDS.get(status)
    if kind is None and status == "success":
        kind = "unsubscribed" if text.startswith("unsubscribed") else "subscribed"
    return StreamEvent(kind or "status", text if kind != "status" else f"{status}: {text}", None, received_ns)


def control_events(frame: bytes, received_ns: int) -> list[StreamEvent]:
    """The status events of one frame (none when it is not JSON)."""
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return []
    items = decoded if isinstance(decoded, list) else [decoded]
    return [status_event(m, received_ns) for m in items if isinstance(m, dict) and m.get("ev") == "status"]


# -- data -----------------------------------------------------------------------------------------


WIRE = Wire(SOURCE, symbol="sym", bar_time="s", times=lambda values: epoch_column(values, MS))


def build_batch(decoded: Decoded) -> StreamBatch:
    """Messages -> one batch: one pass to group them by type, then column by column."""
    trades: list[Any] = []
    trade_ns: list[int] = []
    quotes: list[Any] = []
    quote_ns: list[int] = []
    bars: list[Any] = []
    bar_ns: list[int] = []
    events: list[StreamEvent] = []
    dead: list[DeadFrame] = list(decoded.dead)
    ignored = 0
    for m, ns in zip(decoded.messages, decoded.received_ns, strict=True):
        kind = m.get("ev") if type(m) is dict else None
        if kind == "T":
            trades.append(m)
            trade_ns.append(ns)
        elif kind == "Q":
            quotes.append(m)
            quote_ns.append(ns)
        elif kind == "AM":
            bars.append(m)
            bar_ns.append(ns)
        elif kind == "status":
            events.append(status_event(m, ns))
        elif kind in _IGNORED:
            ignored += 1
        else:
            reason = "not an object" if type(m) is not dict else f"unknown event type {kind!r}"
            dead.append(DeadFrame(message_text(m), f"malformed polygon message: {reason}", ns))
    trade_frame, trade_received, quote_frame, bar_frame, bad = shared_frames(
        WIRE, (trades, trade_ns), (quotes, quote_ns), (bars, bar_ns)
    )
    dead += bad
    empty = StreamBatch.empty(SOURCE)
    return StreamBatch(
        SOURCE,
        trade_frame,
        quote_frame,
        bar_frame,
        empty.corrections,
        empty.cancels,
        dead,
        trade_received,
        events,
        ignored,
    )


def parse_frames(frames: list[bytes], received_ns: list[int]) -> StreamBatch:
    return PROTOCOL.parse_frames(frames, received_ns)


def align_to_stream(frame: pd.DataFrame) -> pd.DataFrame:
    """REST trades or quotes at the stream's millisecond resolution (``ts`` floored), so the REST row
    and the streamed row of one print are equal."""
    if frame.empty:
        return frame
    out = frame.copy()
    out["ts"] = out["ts"].dt.floor("ms")
    return out


PROTOCOL = StreamProtocol(
    source=SOURCE,
    default_url=DEFAULT_URL,
    path=PATH,
    auth_message=auth_message,
    subscription_messages=subscription_messages,
    control_events=control_events,
    build_batch=build_batch,
)
