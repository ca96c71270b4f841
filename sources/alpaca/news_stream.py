"""Alpaca's real-time news stream ``/v1beta1/news`` (Benzinga), as pure functions; the I/O is
:mod:`sources.stream`.

The protocol is the stock stream's (:mod:`sources.alpaca.stream`: the same welcome, auth, errors
406/407 and subscription reply) on its own endpoint, with one channel: ``{"action":"subscribe",
"news":["*"]}``. Data: ``{"T":"n","id","headline","summary","author","created_at","updated_at","url",
"content","symbols","source"}``, sent when an article is published and again when it is updated.
Each message becomes a row exactly as :func:`sources.alpaca.parsing.parse_news` spells the REST
record of the same article (same id, times, symbols, body), so an article seen on the stream and
later over REST is one stored item. News is sparse: no columnar fast path is needed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
import pandas as pd

from core import model
from core.errors import MarketpipeError
from sources.alpaca.parsing import parse_news
from sources.alpaca.stream import SOURCE, auth_message, control_event, control_events
from sources.stream_parsing import (
    NEWS_DATASETS,
    DeadFrame,
    Decoded,
    StreamBatch,
    StreamEvent,
    StreamProtocol,
    build_checked,
    message_text,
    missing_keys,
)

DEFAULT_URL = "wss://stream.data.alpaca.markets/v1beta1/news"
PATH = "/v1beta1/news"
_REQUIRED = ("id", "created_at", "headline")
#: Messages of the stock stream's types, should one arrive here: counted, not dead.
_IGNORED = frozenset({"t", "q", "b", "u", "d", "s", "l", "c", "x", "o"})


def subscription_messages(action: str, datasets: Collection[str], symbols: Collection[str]) -> list[bytes]:
    """``{"action": ..., "news": [...]}`` (``["*"]`` for every article)."""
    if not set(datasets) & set(NEWS_DATASETS):
        return []
    return [orjson.dumps({"action": action, "news": list(symbols)})]


def news_frame(messages: list[Any]) -> pd.DataFrame:
    """``n`` messages as :data:`core.model.NEWS` rows, parsed as the REST records are."""
    try:
        return parse_news({"news": messages})
    except MarketpipeError as exc:  # a defect the slow path pins on its message
        raise ValueError(str(exc)) from exc


def _check(message: Any) -> str | None:
    reason = missing_keys(message, _REQUIRED)
    if reason is None and not isinstance(message.get("symbols", []), list):
        reason = f"'symbols' is {type(message['symbols']).__name__}, not a list"
    return reason


def build_batch(decoded: Decoded) -> StreamBatch:
    news: list[Any] = []
    received: list[int] = []
    events: list[StreamEvent] = []
    dead: list[DeadFrame] = list(decoded.dead)
    ignored = 0
    for m, ns in zip(decoded.messages, decoded.received_ns, strict=True):
        kind = m.get("T") if type(m) is dict else None
        if kind == "n":
            news.append(m)
            received.append(ns)
        elif kind in ("success", "error", "subscription"):
            events.append(control_event(m, ns))
        elif kind in _IGNORED:
            ignored += 1
        else:
            reason = "not an object" if type(m) is not dict else f"unknown message type {kind!r}"
            dead.append(DeadFrame(message_text(m), f"malformed alpaca news message: {reason}", ns))
    frame, bad, _ = build_checked(news, received, news_frame, _check, "news article")
    empty = StreamBatch.empty(SOURCE)
    return StreamBatch(
        SOURCE,
        empty.trades,
        empty.quotes,
        empty.bars,
        empty.corrections,
        empty.cancels,
        dead + bad,
        events=events,
        ignored=ignored,
        news=frame if len(frame) else model.empty_frame(model.NEWS),
    )


PROTOCOL = StreamProtocol(
    source=SOURCE,
    default_url=DEFAULT_URL,
    path=PATH,
    auth_message=auth_message,
    subscription_messages=subscription_messages,
    control_events=control_events,
    build_batch=build_batch,
    datasets=NEWS_DATASETS,
)
