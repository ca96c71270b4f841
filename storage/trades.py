"""Trades in the hot store: ``market.trades`` (db/migrations/0013_trades.sql), written by the same
idempotent binary-COPY upsert as bars (:func:`storage.hot.upsert_frame`) and read back in the
canonical trade model (:data:`core.model.TRADES`).

The natural key is (symbol, ts, exchange, trade_id): a vendor's trade id identifies a trade within
one symbol's feed from one exchange, so re-sending a page changes nothing and a corrected trade
(same key, new price or size) rewrites its row. A trade without an exchange or an id has no
identity; the writer refuses it, naming the column and how many rows lack it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd
import psycopg

from core.errors import RequestError, StorageError
from core.model import TRADE_KEY, TRADES, frame, to_utc
from storage.hot import Column, Method, TableSpec, UpsertResult, upsert_frame

_TRADE_TYPES = {
    "symbol": "text",
    "ts": "timestamptz",
    "price": "float8",
    "size": "int8",
    "exchange": "text",
    "trade_id": "text",
    "conditions": "text",
    "tape": "text",
    "source": "text",
}
TRADES_TABLE = TableSpec(
    name="market.trades",
    columns=tuple(Column(name, _TRADE_TYPES[name]) for name in TRADES),
    key=TRADE_KEY,
)


def check_natural_key(rows: pd.DataFrame, key: Sequence[str], what: str) -> None:
    """Refuse rows of ``what`` (trade, quote) whose natural ``key`` is incomplete, before anything is written."""
    for column in key:
        if column not in rows.columns:
            raise StorageError(f"cannot store {what}s: the frame lacks the key column {column!r} (key: {tuple(key)})")
        missing = int(rows[column].isna().sum())
        if missing:
            raise StorageError(
                f"cannot store {missing} {what}(s) without {column} (of {len(rows)}): {column} is part of the "
                f"natural key {tuple(key)}; drop those rows or fill {column} from the vendor's payload"
            )


def check_trade_keys(trades: pd.DataFrame) -> None:
    check_natural_key(trades, TRADE_KEY, "trade")


def upsert_trades(conn: psycopg.Connection, trades: pd.DataFrame, *, method: Method = "auto") -> UpsertResult:
    """Idempotently upsert canonical trades (:data:`core.model.TRADES`) into ``market.trades``."""
    if trades.empty:
        return UpsertResult()
    check_trade_keys(trades)
    return upsert_frame(conn, trades, TRADES_TABLE, method=method)


def check_trade_request(symbols: Sequence[str], start: object, end: object) -> tuple[list[str], datetime, datetime]:
    """The symbols as a list and the range as UTC datetimes; a clear error for anything else."""
    if isinstance(symbols, str) or not all(isinstance(s, str) and s for s in symbols):
        raise RequestError(f"symbols must be a list of non-empty strings, got {symbols!r}; e.g. ['AAPL', 'MSFT']")
    if not symbols:
        raise RequestError("symbols is empty; pass at least one symbol, e.g. ['AAPL']")
    lo, hi = to_utc(start).to_pydatetime(), to_utc(end).to_pydatetime()
    if hi <= lo:
        raise RequestError(
            f"end {hi:%Y-%m-%d %H:%M:%S} UTC is not after start {lo:%Y-%m-%d %H:%M:%S} UTC; "
            "trades are read for start <= ts < end"
        )
    return list(symbols), lo, hi


def read_ticks(
    conn: psycopg.Connection,
    table: TableSpec,
    schema: Mapping[str, str],
    symbols: Sequence[str],
    start: object,
    end: object,
) -> pd.DataFrame:
    """Hot rows of a tick table (trades, quotes) of ``symbols`` with ``start <= ts < end``, in the
    canonical ``schema``, sorted by the table's key."""
    names, lo, hi = check_trade_request(symbols, start, end)
    what = table.name.split(".")[-1]
    query = f"SELECT {', '.join(schema)} FROM {table.name} WHERE symbol = ANY(%s) AND ts >= %s AND ts < %s"
    try:
        rows = conn.execute(query + " ORDER BY " + ", ".join(table.key), (names, lo, hi)).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read {what} of {names[:5]}: {exc}") from exc
    columns: list[Sequence[object]] = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return frame(dict(schema), dict(zip(schema, columns, strict=True)), what=f"hot-store {what}")


def read_trades(conn: psycopg.Connection, symbols: Sequence[str], start: object, end: object) -> pd.DataFrame:
    """Hot trades of ``symbols`` with ``start <= ts < end``, canonical TRADES frame sorted by the key."""
    return read_ticks(conn, TRADES_TABLE, TRADES, symbols, start, end)
