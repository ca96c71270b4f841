"""Alpaca's real-time news stream (``/v1beta1/news``): the REST news of the same market as ``n`` messages.

The protocol is Alpaca's v2 stream protocol (connect, auth, 406 limits, JSON or msgpack: see
:mod:`sandbox.streams.alpaca`) with one channel, ``news``: ``{"action":"subscribe","news":["*"]}`` ->
``[{"T":"subscription","news":["*"]}]``. Each article is sent when it is published, as
``{"T":"n","id","headline","summary","author","created_at","updated_at","url","content","symbols",
"source":"benzinga"}`` (REST's ``/v1beta1/news`` record without ``images``, as Alpaca's stream
sends it), and sent again, with its new ``updated_at``, headline, body or symbols, when it is
updated. ``created_at``/``updated_at`` are RFC 3339 strings in JSON and msgpack Timestamps in
msgpack (alpaca-py calls ``.to_datetime()`` on them), truncated to the second as REST renders them.

Same news as REST: a symbol's news are exactly what ``/v1beta1/news?symbols=SYM`` serves (the
stories of that symbol's table, with every symbol they mention in ``symbols``); ``*`` means the
connection's universe. Once an article's update is due (and the market clock has passed it, for a
paced replay) REST serves the updated version, which is the last message the stream sent for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np

from sandbox.market import Market
from sandbox.news import NewsItem, vendor_copies
from sandbox.wire.alpaca import news_record
from sandbox.wire.common import rfc3339

VENDOR = "alpaca"
PATH = "/v1beta1/news"
CHANNELS = ("news",)
_BEFORE_EVERYTHING = -(2**62)
_AFTER_EVERYTHING = 2**62


@dataclass(frozen=True)
class NewsDay:
    """One symbol's news events of one session's stories, in due order: each article at its
    publication, and once more at its update when it has one."""

    due: np.ndarray  # int64 ns, sorted
    items: list[NewsItem]  # the version sent at each due instant

    def window(self, lo: int, hi: int) -> tuple[np.ndarray, list[NewsItem]]:
        a, b = (int(i) for i in np.searchsorted(self.due, [lo, hi]))
        return self.due[a:b], self.items[a:b]


def news_day(market: Market, symbol: str, session: int) -> NewsDay:
    """The Alpaca copies of ``symbol``'s stories of ``session``: the original version of each at its
    publication, the updated version at its update (``vendor_copies`` as of before and after it)."""
    if not market.exists(symbol):
        return NewsDay(np.empty(0, np.int64), [])
    table = market.news(symbol)
    rows = table.take(np.flatnonzero(table.session == session))
    originals = vendor_copies(VENDOR, symbol, rows, _BEFORE_EVERYTHING)
    latest = vendor_copies(VENDOR, symbol, rows, _AFTER_EVERYTHING)
    events: list[tuple[int, str, NewsItem]] = []
    for first, last in zip(originals, latest, strict=True):
        events.append((first.t_ns, str(first.id), first))
        if last.updated_ns > last.t_ns:
            events.append((last.updated_ns, str(last.id), last))
    events.sort(key=lambda e: (e[0], e[1]))
    return NewsDay(np.array([e[0] for e in events], dtype=np.int64), [e[2] for e in events])


def render(items: list[NewsItem], codec: str) -> list[dict[str, Any]]:
    """``n`` messages of ``items``: the REST record's fields and values, times for the codec."""
    out = []
    for item in items:
        created, updated = rfc3339(np.array([item.t_ns, item.updated_ns or item.t_ns]))
        record = news_record(item, created, updated)
        del record["images"]
        if codec == "msgpack":
            record["created_at"] = msgpack.Timestamp(item.t_ns // 1_000_000_000, 0)
            record["updated_at"] = msgpack.Timestamp((item.updated_ns or item.t_ns) // 1_000_000_000, 0)
        out.append({"T": "n", **record})
    return out
