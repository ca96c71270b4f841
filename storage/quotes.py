"""Quotes in the hot store: ``market.quotes`` (db/migrations/0015_quotes_stream_bars.sql), written by
the same idempotent binary-COPY upsert as bars and trades (:func:`storage.hot.upsert_frame`).

A quote has no vendor id: its natural key is (symbol, ts, bid/ask exchange, bid/ask price and size),
so a replayed or re-sent quote (a stream reconnect, a REST catch-up over the same span) is the same
row and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import psycopg

from core.model import QUOTE_KEY, QUOTES
from storage.hot import Column, Method, TableSpec, UpsertResult, upsert_frame
from storage.trades import check_natural_key, read_ticks

_QUOTE_TYPES = {
    "symbol": "text",
    "ts": "timestamptz",
    "bid_price": "float8",
    "bid_size": "int8",
    "bid_exchange": "text",
    "ask_price": "float8",
    "ask_size": "int8",
    "ask_exchange": "text",
    "conditions": "text",
    "tape": "text",
    "source": "text",
}
QUOTES_TABLE = TableSpec(
    name="market.quotes",
    columns=tuple(Column(name, _QUOTE_TYPES[name]) for name in QUOTES),
    key=QUOTE_KEY,
)


def check_quote_keys(quotes: pd.DataFrame) -> None:
    check_natural_key(quotes, QUOTE_KEY, "quote")


def upsert_quotes(conn: psycopg.Connection, quotes: pd.DataFrame, *, method: Method = "auto") -> UpsertResult:
    """Idempotently upsert canonical quotes (:data:`core.model.QUOTES`) into ``market.quotes``."""
    if quotes.empty:
        return UpsertResult()
    check_quote_keys(quotes)
    return upsert_frame(conn, quotes, QUOTES_TABLE, method=method)


def read_quotes(conn: psycopg.Connection, symbols: Sequence[str], start: object, end: object) -> pd.DataFrame:
    """Hot quotes of ``symbols`` with ``start <= ts < end``, canonical QUOTES frame sorted by the key."""
    return read_ticks(conn, QUOTES_TABLE, QUOTES, symbols, start, end)
