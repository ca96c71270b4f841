"""The hot-store writer: idempotent, columnar upserts into TimescaleDB.

Every write is at-least-once safe. A frame is collapsed on its natural key (the last row of a key
wins), encoded column by column with numpy straight into PostgreSQL's binary COPY format, copied
into a temporary staging table, and merged into the target with ONE set-based statement::

    INSERT INTO target SELECT ... FROM staging
    ON CONFLICT (natural key) DO UPDATE SET <value columns>, ingested_at = now()
    WHERE (target.<value columns>) IS DISTINCT FROM (excluded.<value columns>)

so re-running a range changes nothing (no row is rewritten, ``ingested_at`` stays put) and a
corrected value rewrites exactly its row. All of it runs in one transaction (a savepoint when the
caller already holds one): nothing half-written is ever visible, and a caller may commit data and
its watermark together (:func:`write_bars`).

Why the hand-built COPY stream: rows of a frame differ only in a few text lengths and null flags,
so rows sharing that *layout* have identical byte structure and become one numpy structured array
(``tobytes()`` is the wire format). A batch of bars has one or two layouts per symbol length, so
encoding costs a handful of vectorised numpy operations instead of a Python call per value
(psycopg's ``write_row`` adapts every value in Python).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.pq import TransactionStatus

from core.errors import PermanentSourceError, StorageError
from core.model import BARS, canonical_timeframe, frame, sole_value, to_utc
from core.settings import DEFAULT_SOURCE_PRECEDENCE
from storage.watermarks import advance_watermarks, watermarks_of

# ---------------------------------------------------------------------------------------------
# Table specifications


@dataclass(frozen=True)
class Column:
    """A column of a target table and its PostgreSQL type (one of :data:`PG_TYPES`)."""

    name: str
    pg_type: str


PG_TYPES = ("text", "float8", "int8", "timestamptz", "date", "price")
# "price": a price in dollars in the frame, stored as bigint ticks of 1/PRICE_SCALE dollar (the bar
# hypertables, db/migrations/0023_bar_price_ticks.sql): rounded to the nearest tick when encoded.
PRICE_SCALE = 10_000
_MAX_PRICE = 2**53 / PRICE_SCALE  # ticks beyond 2**53 would not read back exactly as double precision


def sql_type(pg_type: str) -> str:
    """The PostgreSQL type of a column kind (a price is stored as bigint ticks)."""
    return "int8" if pg_type == "price" else pg_type


@dataclass(frozen=True)
class TableSpec:
    """What the writer needs to know about a target: its columns, natural key and touch column.

    ``touched_at`` names a ``timestamptz DEFAULT now()`` column that is set on insert and moved
    only when a row's values change.
    """

    name: str  # schema-qualified, e.g. "market.bars_intraday"
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    touched_at: str | None = "ingested_at"
    time_column: str | None = "ts"  # the key's time column: lets new-range batches skip staging
    defaults: tuple[tuple[str, object], ...] = ()  # values for columns a frame may omit
    # A table holding one vendor's row per key (the consolidated bars): where the rows of other
    # vendors go, the key plus `source`; rows are ranked by the writer's source precedence.
    vendor_table: str | None = None
    # Value columns a merged row without a value (null) leaves as stored: a vendor that omits a
    # field on a refetch does not erase what it sent before (a filing's acceptance time).
    kept_when_null: tuple[str, ...] = ()

    def complete(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame with every defaulted column it lacks filled in."""
        missing = {name: value for name, value in self.defaults if name not in frame.columns}
        return frame.assign(**missing) if missing else frame

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.name not in self.key)

    def at(self, name: str) -> TableSpec:
        """The same shape under another table name (a benchmark's copy, a test table); the vendor
        table, if any, stays the same."""
        return replace(self, name=name)

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(*self.name.split("."))


BAR_KEY = ("symbol", "timeframe", "ts")
_BAR_TYPES = {
    "symbol": "text",
    "timeframe": "text",
    "ts": "timestamptz",
    "open": "price",
    "high": "price",
    "low": "price",
    "close": "price",
    "volume": "int8",
    "vwap": "price",
    "trade_count": "int8",
    "source": "text",
    "quality_flags": "int8",
}
# The canonical bar columns plus the validation bitmask (0 = passed every rule; lenient mode
# stores failing bars flagged, see db/migrations/0007_bar_quality_flags.sql).
BAR_COLUMNS = (*BARS, "quality_flags")
# The bar tables hold the consolidated series (one vendor's row per bar, by precedence); the other
# vendors' rows live in market.vendor_bars_* (db/migrations/0018_vendor_bars.sql). The writer
# writes the hypertables, prices in ticks (market.bars_*_store); readers read the views in dollars
# of the same name without "_store" (db/routines/10_market_bars.sql).
BARS_INTRADAY = TableSpec(
    name="market.bars_intraday_store",
    columns=tuple(Column(name, _BAR_TYPES[name]) for name in BAR_COLUMNS),
    key=BAR_KEY,
    defaults=(("quality_flags", np.int64(0)),),
    vendor_table="market.vendor_bars_intraday",
)
BARS_DAILY = replace(BARS_INTRADAY, name="market.bars_daily_store", vendor_table="market.vendor_bars_daily")

INTRADAY_TIMEFRAMES = frozenset({"1min", "5min", "15min", "1hour"})
DAILY_TIMEFRAMES = frozenset({"1day"})


def bar_table(timeframe: str) -> TableSpec:
    """The hypertable that holds bars of ``timeframe`` (canonical or any spelling of it)."""
    try:
        canonical = canonical_timeframe(timeframe)
    except PermanentSourceError as exc:  # a bad spelling is a storage-side refusal here
        raise StorageError(f"cannot store bars of timeframe {timeframe!r}: {exc}") from exc
    if canonical in INTRADAY_TIMEFRAMES:
        return BARS_INTRADAY
    if canonical in DAILY_TIMEFRAMES:
        return BARS_DAILY
    allowed = sorted(INTRADAY_TIMEFRAMES | DAILY_TIMEFRAMES)
    raise StorageError(f"cannot store bars of timeframe {timeframe!r}: the hot store keeps {allowed}")


def route_bars(frame: pd.DataFrame) -> dict[TableSpec, pd.DataFrame]:
    """Split a bars frame by target hypertable (one entry, and no copy, in the common case)."""
    timeframes = pd.unique(frame["timeframe"].dropna()) if len(frame) else []
    if len(frame) and frame["timeframe"].isna().any():
        raise StorageError("cannot store bars without a timeframe: the timeframe column holds nulls")
    tables = {tf: bar_table(str(tf)) for tf in timeframes}
    if len(set(tables.values())) <= 1:
        return {next(iter(tables.values())): frame} if tables else {}
    routed: dict[TableSpec, list[str]] = {}
    for tf, table in tables.items():
        routed.setdefault(table, []).append(tf)
    return {table: frame[frame["timeframe"].isin(tfs)] for table, tfs in routed.items()}


# ---------------------------------------------------------------------------------------------
# Pure frame preparation


def collapse_duplicates(frame: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """Keep the last row of every natural key (a vendor's later correction wins)."""
    if len(frame) < 2:
        return frame
    duplicated = frame.duplicated(subset=list(key), keep="last")
    return frame[~duplicated.to_numpy()] if duplicated.any() else frame


_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in Unix days
_FIXED = {"float8": ">f8", "int8": ">i8", "timestamptz": ">i8", "date": ">i4", "price": ">i8"}


@dataclass
class _Encoded:
    """One column ready for the wire: fixed-width big-endian values, or text by dictionary."""

    values: np.ndarray  # fixed: per-row values; text: per-row dictionary codes (-1 = null)
    nulls: np.ndarray | None = None  # fixed only
    dictionary: np.ndarray | None = None  # text only: distinct values as bytes (dtype S<n>)
    lengths: np.ndarray | None = None  # text only: byte length of each dictionary entry


def utc_index(values: pd.Series) -> pd.DatetimeIndex:
    """A date-like column as a UTC DatetimeIndex (naive values are taken as UTC)."""
    index = pd.DatetimeIndex(values)
    return index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")


def _encode_column(series: pd.Series, pg_type: str) -> _Encoded:
    if pg_type == "text":
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        encoded = [str(u).encode() for u in uniques]
        dictionary = np.array(encoded or [b""], dtype=f"S{max((len(e) for e in encoded), default=1) or 1}")
        lengths = np.array([len(e) for e in encoded] or [0], dtype=np.int64)
        return _Encoded(codes.astype(np.int64, copy=False), dictionary=dictionary, lengths=lengths)
    if pg_type == "float8":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        nulls = np.isnan(values)
        return _Encoded(values.astype(">f8"), nulls if nulls.any() else None)
    if pg_type == "price":
        return _encode_price(series)
    if pg_type == "int8":
        nulls = series.isna().to_numpy()
        values = series.to_numpy(dtype=np.int64, na_value=0)
        return _Encoded(values.astype(">i8"), nulls if nulls.any() else None)
    if pg_type in ("timestamptz", "date"):
        index = utc_index(series)
        nulls = np.asarray(index.isna())
        micros = index.as_unit("us").asi8
        if pg_type == "timestamptz":
            values = (micros - _PG_EPOCH_US).astype(">i8")
        else:
            values = (np.floor_divide(micros, 86_400_000_000) - _PG_EPOCH_DAYS).astype(">i4")
        return _Encoded(values, nulls if nulls.any() else None)
    raise StorageError(f"the hot writer cannot encode PostgreSQL type {pg_type!r}; supported: {PG_TYPES}")


def _encode_price(series: pd.Series) -> _Encoded:
    """Dollars as whole ticks of 1/PRICE_SCALE (round half to even); NaN is NULL. A price the
    ticks cannot hold exactly (infinite, or beyond 2**53 ticks) is refused, naming it."""
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    nulls = np.isnan(values)
    bad = ~nulls & ~(np.abs(values) < _MAX_PRICE)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise StorageError(
            f"price {values[first]!r} in column {series.name!r} (row {first}) cannot be stored: prices are kept as "
            f"ticks of 1/{PRICE_SCALE:,} dollar and must be finite and below {_MAX_PRICE:,.0f} in absolute value; "
            "fix or drop the row"
        )
    ticks = np.rint(np.where(nulls, 0.0, values) * PRICE_SCALE).astype(np.int64)
    return _Encoded(ticks.astype(">i8"), nulls if nulls.any() else None)


def encode_copy_binary(frame: pd.DataFrame, columns: Sequence[Column]) -> bytes:
    """``frame[columns]`` as a complete ``COPY ... FROM STDIN (FORMAT BINARY)`` stream."""
    return b"".join(bytes(chunk) for chunk in iter_copy_binary(frame, columns))


def iter_copy_binary(
    frame: pd.DataFrame, columns: Sequence[Column], rows_per_chunk: int = 32_768
) -> Iterator[bytes | memoryview]:
    """The binary COPY stream of ``frame[columns]`` in pieces of at most ``rows_per_chunk`` rows,
    so the client can encode the next piece while the server digests the previous one.

    Each row's *layout* (the byte length of every text field, null or not for every field)
    decides its byte structure; rows are grouped by layout and each group is written as one numpy
    structured array. Row order inside a piece is not preserved (a table has none).
    """
    yield _PGCOPY_HEADER
    for start in range(0, len(frame), rows_per_chunk):
        yield from _encode_rows(frame.iloc[start : start + rows_per_chunk], columns)
    yield _PGCOPY_TRAILER


def _encode_rows(frame: pd.DataFrame, columns: Sequence[Column]) -> Iterator[memoryview]:
    n = len(frame)
    encoded = [_encode_column(frame[c.name], c.pg_type) for c in columns]
    # Per-row layout: a small integer per column (text: byte length or -1; fixed: 1 null, 0 not).
    layout: list[np.ndarray | None] = []
    for enc in encoded:
        if enc.dictionary is not None:
            assert enc.lengths is not None
            layout.append(np.where(enc.values < 0, -1, enc.lengths[np.maximum(enc.values, 0)]))
        else:
            layout.append(enc.nulls.astype(np.int64) if enc.nulls is not None else None)
    group_ids = np.zeros(n, dtype=np.int64)
    for part in layout:
        if part is None or (part == part[0]).all():
            continue
        group_ids, _ = pd.factorize(group_ids * (int(part.max()) + 2) + (part + 1))
    n_groups = int(group_ids.max()) + 1
    if n_groups == 1:
        yield _encode_group(encoded, layout, columns, slice(None), n, 0)
        return
    order = np.argsort(group_ids, kind="stable")
    bounds = np.searchsorted(group_ids[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        rows = order[bounds[g] : bounds[g + 1]]
        yield _encode_group(encoded, layout, columns, rows, len(rows), int(rows[0]))


def _encode_group(
    encoded: list[_Encoded],
    layout: list[np.ndarray | None],
    columns: Sequence[Column],
    rows: slice | np.ndarray,
    count: int,
    first: int,
) -> memoryview:
    """Rows of one layout as a structured array: constants (field count, lengths) are stamped
    from a one-row template, then each column's values are assigned in one vectorised step."""
    fields: list[tuple[str, str]] = [("n", ">i2")]
    constants: list[int] = [len(columns)]
    data: list[tuple[str, np.ndarray]] = []
    for i, (enc, part, column) in enumerate(zip(encoded, layout, columns, strict=True)):
        marker = int(part[first]) if part is not None else 0
        fields.append((f"l{i}", ">i4"))
        if enc.dictionary is not None:
            constants.append(marker)  # text: byte length, or -1 for null
            if marker > 0:
                fields.append((f"d{i}", f"S{marker}"))
                data.append((f"d{i}", enc.dictionary[enc.values[rows]]))
        elif marker:
            constants.append(-1)
        else:
            dtype = _FIXED[column.pg_type]
            constants.append(np.dtype(dtype).itemsize)
            fields.append((f"d{i}", dtype))
            data.append((f"d{i}", enc.values[rows]))
    row_dtype = np.dtype(fields)
    template = np.zeros(1, dtype=row_dtype)
    for name, value in zip(("n", *(f"l{i}" for i in range(len(columns)))), constants, strict=True):
        template[name] = value
    block = np.repeat(template, count)
    for name, values in data:
        block[name] = values
    return block.data.cast("B")


# ---------------------------------------------------------------------------------------------
# The writer


@dataclass(frozen=True)
class UpsertResult:
    """What one upsert did, counted by the database: rows new, rewritten, and already identical."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0  # rows of the input dropped because a later row had the same key
    # rows kept in the vendor table instead: the stored row's vendor ranks better (counted in unchanged too)
    refused: int = 0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, int, int, int, int]:
        return (self.inserted, self.updated, self.unchanged, self.duplicates, self.refused)

    def as_dict(self) -> dict[str, int]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "refused": self.refused,
        }


_STAGE = sql.Identifier("_mp_stage")  # dropped after each merge; ON COMMIT DROP covers a failure
# auto: COPY straight in when no stored row of the batch's series falls in its range (checked first),
# else merge; merge: always stage and merge; copy_first: COPY in a savepoint and merge only when it
# hits a stored key (a live stream's batches are new data unless replayed: no pre-check per batch).
Method = Literal["auto", "merge", "copy_first"]


def upsert_frame(
    conn: psycopg.Connection,
    frame: pd.DataFrame,
    table: TableSpec,
    *,
    method: Method = "auto",
    precedence: Sequence[str] = DEFAULT_SOURCE_PRECEDENCE,
) -> UpsertResult:
    """Idempotently upsert ``frame`` into ``table``.

    The merge path: binary COPY into a temporary staging table, then one
    ``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE IS DISTINCT FROM``. With ``method="auto"``
    a batch whose every series (key minus the time column) has no stored row inside the batch's
    time range cannot conflict, so it is COPYed straight into the target (the new-data case of
    incremental runs and backfills, about twice as fast). If a concurrent writer stores one of its
    keys meanwhile, the COPY fails with a unique violation, its savepoint is rolled back and the
    batch takes the merge path: the result is the same either way.

    A table with a ``vendor_table`` (the consolidated bars) holds one vendor's row per key: a row
    replaces a stored row of another vendor only when its ``source`` ranks at least as well in
    ``precedence`` (best first; unlisted sources rank last, equal among themselves), and the row
    that loses, stored or new, is upserted into the vendor table in the same statement. Only the
    merge path can meet another vendor's row: a COPYed batch has no stored row in its range.

    Runs in ``conn.transaction()``: its own transaction, or a savepoint inside the caller's.
    """
    collapsed = _collapsed(frame, table)
    duplicates = len(frame) - len(collapsed)
    if collapsed.empty:
        return UpsertResult(duplicates=duplicates)
    try:
        with conn.transaction(), conn.cursor() as cur:
            copy_at_once = method == "copy_first" or (
                method == "auto" and table.time_column and not _overlaps_stored(cur, collapsed, table)
            )
            if copy_at_once:
                try:
                    with conn.transaction():
                        inserted = _copy(cur, collapsed, table, table.identifier)
                        _invalidate_aggregates(cur, collapsed, table)
                    return UpsertResult(inserted, 0, len(collapsed) - inserted, duplicates)
                except psycopg.errors.UniqueViolation:
                    pass  # a concurrent writer got there first: merge instead
            inserted, updated, refused = _merge(cur, collapsed, table, precedence)
    except psycopg.Error as exc:
        raise StorageError(
            f"upsert of {len(collapsed)} row(s) into {table.name} failed and was rolled back: {exc}"
        ) from exc
    return UpsertResult(inserted, updated, len(collapsed) - inserted - updated, duplicates, refused)


def _collapsed(frame: pd.DataFrame, table: TableSpec) -> pd.DataFrame:
    """``frame`` completed to ``table``'s columns, the last row of each key kept."""
    frame = table.complete(frame)
    missing = [c for c in table.column_names if c not in frame.columns]
    if missing:
        raise StorageError(f"cannot write to {table.name}: the frame lacks column(s) {missing}")
    return collapse_duplicates(frame, table.key)


def _copy(cur: psycopg.Cursor, frame: pd.DataFrame, table: TableSpec, target: sql.Identifier) -> int:
    """Binary COPY of ``frame`` into ``target``; a writer thread sends while numpy encodes."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, _names(table.column_names))
    with cur.copy(statement, writer=QueuedLibpqWriter(cur)) as copy:
        for chunk in iter_copy_binary(frame, table.columns):
            copy.write(chunk)
    return cur.rowcount


def _invalidate_aggregates(cur: psycopg.Cursor, frame: pd.DataFrame, table: TableSpec) -> None:
    """Tell the continuous aggregates on ``table`` (db/routines/70_continuous_aggregates.sql) that
    the time range of a COPYed batch changed.

    TimescaleDB 2.28.3 copies into a hypertable that has an AFTER INSERT trigger with a transition
    table (market.latest_bars' trigger, 0011_scanners.sql) row by row (TS_CIM_SINGLE in its
    copy.c), and that path records no continuous-aggregate invalidation, unlike INSERT and the
    buffered COPY: a refresh would then never see bars copied below the aggregates' invalidation
    threshold (every late or backfilled batch). A no-op UPDATE of the first and last row the batch
    has on each UTC day does record them: TimescaleDB logs the range a transaction modified per
    chunk, and chunks hold whole UTC days (0002_bars.sql), so the ranges cover the batch; two index
    probes a day. Nothing is done for a table without aggregates.
    """
    time_col = table.time_column
    if time_col is None or not _has_aggregates(cur, table):
        return
    edges = frame.iloc[day_edges(utc_index(frame[time_col]).asi8)]
    key = [c for c in table.key if c != time_col]
    stamps = list(utc_index(edges[time_col]).to_pydatetime())
    cur.execute(
        sql.SQL(
            "UPDATE {target} t SET {value} = t.{value} FROM unnest({arrays}, %s::timestamptz[]) AS e({series}, ts)"
            " WHERE {join} AND t.{time} = e.ts"
            # constants the planner sees: chunk exclusion by time and, on compressed chunks, the
            # segment and batch filters; a join alone made TimescaleDB decompress every compressed
            # batch of the table (38.1M tuples in bench storage) to find two rows a day
            " AND t.{time} = ANY(%s::timestamptz[]) AND t.{time} BETWEEN %s AND %s AND {constants}"
        ).format(
            target=table.identifier,
            time=sql.Identifier(time_col),
            value=sql.Identifier(table.value_columns[0]),  # not ts: a compressed chunk refuses to move its orderby
            arrays=sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in key),
            series=_names(key),
            join=sql.SQL(" AND ").join(sql.SQL("t.{c} = e.{c}").format(c=sql.Identifier(c)) for c in key),
            constants=sql.SQL(" AND ").join(
                sql.SQL("t.{c} = ANY(%s::text[])").format(c=sql.Identifier(c)) for c in key
            ),
        ),
        [
            *(edges[c].astype(str).tolist() for c in key),
            stamps,
            stamps,
            min(stamps),
            max(stamps),
            *(sorted(set(edges[c].astype(str))) for c in key),
        ],
    )


def day_edges(times_ns: np.ndarray) -> np.ndarray:
    """Sorted positions of the earliest and the latest instant of each UTC day in ``times_ns``
    (the first such row where several share it, as pandas' ``idxmin``/``idxmax``)."""
    if not len(times_ns):
        return np.empty(0, dtype=np.int64)
    days = times_ns // 86_400_000_000_000
    earliest = np.lexsort((times_ns, days))  # stable: equal instants keep their order
    latest = np.lexsort((-times_ns, days))
    sorted_days = days[earliest]
    starts = np.flatnonzero(np.r_[True, sorted_days[1:] != sorted_days[:-1]])
    return np.unique(np.concatenate([earliest[starts], latest[starts]]))


def _has_aggregates(cur: psycopg.Cursor, table: TableSpec) -> bool:
    """Whether continuous aggregates are built on ``table``. A yes is kept for the connection's life
    (a pooled connection writes one symbol after another; the catalog view costs the server ~2.5 ms
    of planning each time); a no is asked again, so an aggregate created meanwhile is never missed
    (an aggregate dropped meanwhile costs a no-op update, nothing else)."""
    with _AGGREGATES_LOCK:
        known = _TABLES_WITH_AGGREGATES.get(cur.connection)
        if known is not None and table.name in known:
            return True
    schema, name = table.name.split(".")
    row = cur.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates"
        " WHERE hypertable_schema = %s AND hypertable_name = %s)",
        (schema, name),
    ).fetchone()
    found = bool(row and row[0])
    if found:
        with _AGGREGATES_LOCK:
            _TABLES_WITH_AGGREGATES.setdefault(cur.connection, set()).add(table.name)
    return found


_TABLES_WITH_AGGREGATES: weakref.WeakKeyDictionary[psycopg.Connection, set[str]] = weakref.WeakKeyDictionary()
_AGGREGATES_LOCK = threading.Lock()


def _merge(
    cur: psycopg.Cursor, frame: pd.DataFrame, table: TableSpec, precedence: Sequence[str]
) -> tuple[int, int, int]:
    """Staging table + one set-based upsert; returns (inserted, updated, refused) as counted by the server."""
    stage = _STAGE
    cols = _names(table.column_names)
    values = table.value_columns
    incoming = {
        c: sql.SQL("COALESCE(EXCLUDED.{c}, t.{c})" if c in table.kept_when_null else "EXCLUDED.{c}").format(
            c=sql.Identifier(c)
        )
        for c in values
    }
    assignments = [sql.SQL("{} = {}").format(sql.Identifier(c), incoming[c]) for c in values]
    if table.touched_at:
        assignments.append(sql.SQL("{} = now()").format(sql.Identifier(table.touched_at)))
    changed = sql.SQL("({old}) IS DISTINCT FROM ({new})").format(
        old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in values),
        new=sql.SQL(", ").join(incoming[c] for c in values),
    )
    upsert = sql.SQL(
        "INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {stage}"
        " ON CONFLICT ({key}) DO UPDATE SET {assignments} WHERE {changed}"
    ).format(
        target=table.identifier,
        cols=cols,
        stage=stage,
        key=_names(table.key),
        assignments=sql.SQL(", ").join(assignments),
        changed=changed,
    )
    params: dict[str, object] | None = None
    merge: sql.Composed
    if table.vendor_table is None:
        merge = sql.SQL(
            "WITH merged AS ({upsert} RETURNING (t.xmax = 0) AS inserted)"
            " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), 0 FROM merged"
        ).format(upsert=upsert)
    else:
        clash = _meets_other_vendors(cur, frame, table)
        merge, params = _ranked_merge(table, upsert, assignments, changed, list(precedence), clash=clash)
    defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(sql_type(c.pg_type))) for c in table.columns
    )
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(stage, defs))
    _copy(cur, frame, table, stage)
    cur.execute(merge, params)
    row = cur.fetchone()
    cur.execute(sql.SQL("DROP TABLE {}").format(stage))  # a second upsert in this transaction starts clean
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _ranked_merge(
    table: TableSpec,
    upsert: sql.Composable,
    assignments: Sequence[sql.Composable],
    changed: sql.Composable,
    precedence: list[str],
    *,
    clash: bool = True,
) -> tuple[sql.Composed, dict[str, object]]:
    """The merge of a table holding one vendor's row per key (see :func:`upsert_frame`), as ONE
    statement: ``clash`` pairs each staged row with a stored row of the same key from another
    vendor (all parts of a statement see the same snapshot, so it sees the rows before the
    upsert); the losing row of each pair goes to the vendor table; the upsert's update is
    guarded by the rank. A batch from the vendor already stored joins to no clash and writes
    nothing else; without ``clash`` (no other vendor's row is stored in the batch's range) the
    join is left out and only the guard stays (a concurrent writer of another vendor that commits
    in between is still never overwritten by a worse-ranked row, which is then not kept apart)."""
    assert table.vendor_table is not None
    vendor = sql.Identifier(*table.vendor_table.split("."))
    names = table.column_names

    def side(prefix: str) -> sql.Composable:
        # the vendor table holds dollars (double precision): a price column's ticks are converted
        return sql.SQL(", ").join(
            sql.SQL("{}::float8 / {}").format(sql.Identifier(f"{prefix}{c.name}"), sql.Literal(PRICE_SCALE))
            if c.pg_type == "price"
            else sql.Identifier(f"{prefix}{c.name}")
            for c in table.columns
        )

    params = _rank_params(precedence)
    guard = sql.SQL("{} <= {}").format(_source_rank(sql.SQL("EXCLUDED.source")), _source_rank(sql.SQL("t.source")))
    if not clash:
        alone = sql.SQL(
            "WITH merged AS ({upsert} AND {guard} RETURNING (t.xmax = 0) AS inserted)"
            " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), 0 FROM merged"
        ).format(upsert=upsert, guard=guard)
        return alone, params
    statement = sql.SQL(
        "WITH clash AS MATERIALIZED ("
        " SELECT {new_cols}, {old_cols}, {rank_new} <= {rank_old} AS wins"
        " FROM {stage} s JOIN {target} t ON {join} WHERE t.source IS DISTINCT FROM s.source),"
        " kept AS ("
        " INSERT INTO {vendor} AS t ({cols})"
        " SELECT {old} FROM clash WHERE wins UNION ALL SELECT {new} FROM clash WHERE NOT wins"
        " ON CONFLICT ({vendor_key}) DO UPDATE SET {assignments} WHERE {changed}),"
        " merged AS ({upsert} AND {guard} RETURNING (t.xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),"
        " (SELECT count(*) FROM clash WHERE NOT wins) FROM merged"
    ).format(
        new_cols=sql.SQL(", ").join(
            sql.SQL("s.{} AS {}").format(sql.Identifier(c), sql.Identifier(f"n_{c}")) for c in names
        ),
        old_cols=sql.SQL(", ").join(
            sql.SQL("t.{} AS {}").format(sql.Identifier(c), sql.Identifier(f"o_{c}")) for c in names
        ),
        rank_new=_source_rank(sql.SQL("s.source")),
        rank_old=_source_rank(sql.SQL("t.source")),
        stage=_STAGE,
        target=table.identifier,
        join=sql.SQL(" AND ").join(sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(c)) for c in table.key),
        vendor=vendor,
        cols=_names(names),
        old=side("o_"),
        new=side("n_"),
        vendor_key=_names((*table.key, "source")),
        assignments=sql.SQL(", ").join(assignments),
        changed=changed,
        upsert=upsert,
        guard=guard,
    )
    return statement, params


def _source_rank(column: sql.Composable) -> sql.Composable:
    """A row's rank by its source ``column`` in the precedence (:func:`_rank_params`): lower is better,
    unlisted sources after every listed one and equal among themselves (as
    :func:`storage.vendors.source_ranks` ranks outside the database)."""
    return sql.SQL("coalesce(array_position(%(precedence)s::text[], {c}), %(unlisted)s)").format(c=column)


def _rank_params(precedence: Sequence[str]) -> dict[str, object]:
    return {"precedence": list(precedence), "unlisted": len(precedence) + 1}


def promote_vendor_rows(
    conn: psycopg.Connection,
    keys: pd.DataFrame,
    table: TableSpec,
    *,
    precedence: Sequence[str] = DEFAULT_SOURCE_PRECEDENCE,
) -> pd.DataFrame:
    """Serve the best other vendor's row of each key of ``keys`` (``table``'s key columns) whose
    served row was just deleted: the row the vendor table holds for that key ranked best in
    ``precedence`` (equal ranks: the one ingested last, as the merge's guard lets the newer row win),
    moved out of the vendor table into ``table`` with ``ingested_at`` now() (the served row
    changed), in ONE statement for the whole batch. Without this a key whose served row goes would
    be missing from the consolidated series while a vendor's bar of it is stored. A key with no
    row in the vendor table stays without a served row. Returns the promoted rows' key, ``source``
    and ``quality_flags``, read from the database.

    Call it in the transaction that deleted the served rows, after it (a key still served would
    make the insert fail: it is a bug of the caller, not a state to merge)."""
    if table.vendor_table is None:
        raise StorageError(f"{table.name} keeps no other vendors' rows: it has no vendor table to promote from")
    key = list(table.key)
    columns = [*key, "source", "quality_flags"]
    if keys.empty:
        return pd.DataFrame({c: [] for c in columns})
    time_col = table.time_column
    assert time_col is not None and time_col in key
    series = [c for c in key if c != time_col]
    types = {c.name: c.pg_type for c in table.columns}
    vendor = sql.Identifier(*table.vendor_table.split("."))
    on = sql.SQL(" AND ").join(sql.SQL("v.{c} = k.{c}").format(c=sql.Identifier(c)) for c in key)
    # constants the planner sees: chunk exclusion by time and the key's index by series (the join
    # alone plans every chunk of the vendor table, which is never tiered)
    constants = sql.SQL(" AND ").join(
        [
            sql.SQL("v.{t} BETWEEN %(first)s AND %(last)s").format(t=sql.Identifier(time_col)),
            *(
                sql.SQL("v.{c} = ANY({p}::{type}[])").format(
                    c=sql.Identifier(c), p=sql.Placeholder(c), type=sql.SQL(types[c])
                )
                for c in series
            ),
        ]
    )
    served = sql.SQL(", ").join(
        sql.SQL("round({c} * {scale})::bigint").format(c=sql.Identifier(c.name), scale=sql.Literal(PRICE_SCALE))
        if c.pg_type == "price"
        else sql.Identifier(c.name)
        for c in table.columns
    )
    statement = sql.SQL(
        "WITH k AS (SELECT * FROM unnest({arrays}) AS k({key})),"
        " best AS (SELECT DISTINCT ON ({v_key}) {v_key}, v.source FROM k JOIN {vendor} v ON {on} WHERE {constants}"
        " ORDER BY {v_key}, {rank}, v.ingested_at DESC, v.source),"
        " moved AS (DELETE FROM {vendor} v USING best k WHERE {on} AND v.source = k.source AND {constants}"
        " RETURNING v.*)"
        " INSERT INTO {target} ({cols}, ingested_at) SELECT {served}, now() FROM moved"
        " RETURNING {returned}"
    ).format(
        arrays=sql.SQL(", ").join(
            sql.SQL("{p}::{type}[]").format(p=sql.Placeholder(c), type=sql.SQL(types[c])) for c in key
        ),
        key=_names(key),
        v_key=sql.SQL(", ").join(sql.SQL("v.{}").format(sql.Identifier(c)) for c in key),
        vendor=vendor,
        on=on,
        constants=constants,
        rank=_source_rank(sql.SQL("v.source")),
        target=table.identifier,
        cols=_names(table.column_names),
        served=served,
        returned=_names(columns),
    )
    stamps = _sql_time(keys[time_col], types[time_col])
    params: dict[str, object] = {
        **{c: keys[c].astype(str).tolist() for c in series},
        time_col: stamps,
        "first": min(stamps),
        "last": max(stamps),
        **_rank_params(precedence),
    }
    try:
        rows = conn.execute(statement, params).fetchall()
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot serve other vendors' rows from {table.vendor_table} in place of {len(keys)} deleted bar(s)"
            f" of {table.name}: {exc}"
        ) from exc
    promoted = pd.DataFrame(rows, columns=columns)
    if not promoted.empty:
        promoted[time_col] = pd.to_datetime(promoted[time_col], utc=True)
    return promoted


def keep_vendor_rows(conn: psycopg.Connection, frame: pd.DataFrame, table: TableSpec) -> int:
    """Upsert bars that lost their key to another vendor's row outside this writer (lake compaction,
    :mod:`storage.lifecycle`) into ``table``'s vendor table, prices in dollars as that table holds
    them, each row with its own ``ingested_at``: a stored row of the same key and source is replaced
    only by one ingested later with other values, so a rerun changes nothing and an older version
    never overwrites a newer one. Returns the rows written."""
    if table.vendor_table is None:
        raise StorageError(f"{table.name} keeps no other vendors' rows: it has no vendor table")
    if frame.empty:
        return 0
    vendor = TableSpec(
        name=table.vendor_table,
        columns=(
            *(Column(c.name, "float8" if c.pg_type == "price" else c.pg_type) for c in table.columns),
            Column("ingested_at", "timestamptz"),
        ),
        key=(*table.key, "source"),
        touched_at=None,
    )
    compared = [c for c in table.value_columns if c != "source"]
    statement = sql.SQL(
        "INSERT INTO {vendor} AS t ({cols}) SELECT {cols} FROM {stage}"
        " ON CONFLICT ({key}) DO UPDATE SET {assignments}"
        " WHERE EXCLUDED.ingested_at > t.ingested_at AND ({old}) IS DISTINCT FROM ({new})"
    ).format(
        vendor=vendor.identifier,
        cols=_names(vendor.column_names),
        stage=_STAGE,
        key=_names(vendor.key),
        assignments=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in vendor.value_columns
        ),
        old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in compared),
        new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in compared),
    )
    defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in vendor.columns
    )
    rows = _collapsed(frame, vendor)
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(_STAGE, defs))
            _copy(cur, rows, vendor, _STAGE)
            cur.execute(statement)
            written = cur.rowcount
            cur.execute(sql.SQL("DROP TABLE {}").format(_STAGE))
    except psycopg.Error as exc:
        raise StorageError(
            f"keeping {len(rows)} other vendors' row(s) in {table.vendor_table} failed and was rolled back: {exc}"
        ) from exc
    return written


#: Planner settings for the probe of :func:`_overlaps_stored`, the values it restores after.
_INDEX_PROBES = {"enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"}


def _overlaps_stored(
    cur: psycopg.Cursor, frame: pd.DataFrame, table: TableSpec, *, other_than_source: str | None = None
) -> bool:
    """Whether any series of the batch already has a stored row inside the batch's time range
    (with ``other_than_source``: a row of another source).

    The probe is planned as index lookups, a few per series and chunk, whatever the statistics
    say: the chunks a backfill or today's ingest fills were analysed empty (a new chunk, or the
    rows a rerun deleted), so the planner hashed the batch's series against a sequential scan of
    every chunk in its range, reading every row the earlier batches of the run had just stored
    (0.48 CPU-s of PostgreSQL's ~5 for 780k bars in 12 batches; 0.04 as lookups). The settings
    hold for this statement only (``set_config(..., is_local)``, restored after); the caller is in
    a transaction (:func:`upsert_frame`, :func:`write_series_bars`)."""
    time_col = table.time_column
    assert time_col is not None
    series = [c for c in table.key if c != time_col]
    types = {c.name: c.pg_type for c in table.columns}
    bounds = _series_bounds(frame, series, time_col)
    arrays = [bounds[c].astype(object).tolist() for c in series]
    lo, hi = (_sql_time(bounds[b], types[time_col]) for b in ("min", "max"))
    # Tables without a source column (features) are asked about any stored row.
    other = sql.SQL(" AND t.source <> %s::text") if other_than_source is not None else sql.SQL("")
    query = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM unnest({arrays}, %s, %s) AS b({series}, lo, hi)"
        " JOIN {target} t ON {join} AND t.{time} BETWEEN b.lo AND b.hi"
        " WHERE t.{time} BETWEEN %s AND %s{other})"
    ).format(
        arrays=sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(types[c])) for c in series),
        series=_names(series),
        target=table.identifier,
        join=sql.SQL(" AND ").join(sql.SQL("t.{c} = b.{c}").format(c=sql.Identifier(c)) for c in series),
        time=sql.Identifier(time_col),
        other=other,
    )
    params = [*arrays, lo, hi, min(lo), max(hi)] + ([other_than_source] if other_than_source is not None else [])
    with _planned_as_index_probes(cur):
        row = cur.execute(query, params).fetchone()
    return bool(row and row[0])


@contextmanager
def _planned_as_index_probes(cur: psycopg.Cursor) -> Iterator[None]:
    """Statements inside are planned without sequential scans, hash or merge joins (a nested loop
    of index lookups), then the transaction's own settings come back. One round trip each way."""
    names = list(_INDEX_PROBES)
    settings = sql.SQL(", ").join(sql.SQL("set_config(%s, %s, true)") for _ in names)
    # the settings are read in a materialized CTE, so before the outer select list changes them
    previous = cur.execute(
        sql.SQL("WITH previous AS MATERIALIZED (SELECT {}) SELECT previous.*, {} FROM previous").format(
            sql.SQL(", ").join(sql.SQL("current_setting(%s)") for _ in names), settings
        ),
        [*names, *(v for name in names for v in (name, _INDEX_PROBES[name]))],
    ).fetchone()
    assert previous is not None
    try:
        yield
    finally:
        if not cur.connection.broken and cur.connection.info.transaction_status == TransactionStatus.INTRANS:
            cur.execute(
                sql.SQL("SELECT {}").format(settings),
                [v for name, old in zip(names, previous[: len(names)], strict=True) for v in (name, old)],
            )


def _series_bounds(frame: pd.DataFrame, series: list[str], time_col: str) -> pd.DataFrame:
    """Each series' first and last instant (columns ``series`` + ``min``, ``max``); a frame of one
    series (one symbol's page: the usual batch) without a group-by (~1 ms)."""
    first = {c: sole_value(frame[c]) for c in series}
    if all(value is not None for value in first.values()):
        times = frame[time_col]
        return pd.DataFrame({**{c: [first[c]] for c in series}, "min": [times.min()], "max": [times.max()]})
    return frame.groupby(series, sort=False, observed=True)[time_col].agg(["min", "max"]).reset_index()


def _meets_other_vendors(cur: psycopg.Cursor, frame: pd.DataFrame, table: TableSpec) -> bool:
    """Whether a merge of the batch may meet another vendor's stored row: the batch holds several
    sources, or a stored row of its series and range has another source. A re-sent or corrected
    batch of the stored vendor (the usual merge) then skips the clash join of :func:`_ranked_merge`
    (measured on 195k rows: with the join an unchanged rerun took 1.5x as long as before the vendor
    table, with this check 1.2x)."""
    sources = pd.unique(frame["source"])
    if len(sources) != 1 or table.time_column is None:
        return True
    return _overlaps_stored(cur, frame, table, other_than_source=str(sources[0]))


def _sql_time(values: pd.Series, pg_type: str) -> list:
    index = utc_index(values)
    if pg_type == "date":
        return [ts.date() for ts in index]
    return list(index.to_pydatetime())


def _names(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in names)


def upsert_bars(
    conn: psycopg.Connection, frame: pd.DataFrame, *, precedence: Sequence[str] = DEFAULT_SOURCE_PRECEDENCE
) -> UpsertResult:
    """Upsert canonical bars (``core.model.BARS``), each timeframe into its hypertable; the
    consolidated row of a bar is the best-ranked vendor's in ``precedence`` (storage.source_precedence),
    the others' rows go to the vendor tables (:func:`upsert_frame`)."""
    if frame.empty:
        return UpsertResult()
    with conn.transaction():
        return sum(
            (upsert_frame(conn, part, table, precedence=precedence) for table, part in route_bars(frame).items()),
            UpsertResult(),
        )


def write_bars(
    conn: psycopg.Connection,
    frame: pd.DataFrame,
    *,
    dataset: str = "bars",
    precedence: Sequence[str] = DEFAULT_SOURCE_PRECEDENCE,
) -> UpsertResult:
    """Upsert bars and advance their watermarks in ONE transaction: a watermark is never ahead of
    committed data, and a failure anywhere leaves both untouched."""
    with conn.transaction():
        result = upsert_bars(conn, frame, precedence=precedence)
        advance_watermarks(conn, watermarks_of(frame, dataset=dataset))
    return result


def write_series_bars(
    conn: psycopg.Connection,
    frames: Sequence[pd.DataFrame],
    *,
    dataset: str = "bars",
    precedence: Sequence[str] = DEFAULT_SOURCE_PRECEDENCE,
) -> list[UpsertResult]:
    """Several series' bars (a frame per symbol, no symbol in two frames) and their watermarks in
    ONE transaction: what ``[write_bars(conn, f) for f in frames]`` does, each frame's result
    counted apart. When no series has a stored row inside its range (a backfill's new data), all
    of them go in by one COPY, one aggregate invalidation and one watermark statement instead of a
    dozen statements per series; otherwise, or when a concurrent writer stores a key meanwhile,
    each frame is written as :func:`write_bars` writes it."""
    if len(frames) < 2 or not _disjoint_symbols(frames):
        with conn.transaction():
            return [write_bars(conn, frame, dataset=dataset, precedence=precedence) for frame in frames]
    with conn.transaction():
        results = _copy_new_series(conn, frames)
        if results is None:
            return [write_bars(conn, frame, dataset=dataset, precedence=precedence) for frame in frames]
        filled = [frame for frame in frames if len(frame)]
        if filled:
            advance_watermarks(conn, watermarks_of(pd.concat(filled, ignore_index=True), dataset=dataset))
        return results


def _disjoint_symbols(frames: Sequence[pd.DataFrame]) -> bool:
    seen: set[str] = set()
    for part in frames:
        symbols = set(pd.unique(part["symbol"])) if len(part) else set()
        if symbols & seen:
            return False
        seen |= symbols
    return True


def _copy_new_series(conn: psycopg.Connection, frames: Sequence[pd.DataFrame]) -> list[UpsertResult] | None:
    """Every frame's bars by one COPY per hypertable when none of their series has a stored row in
    its range; each frame's result (all its rows inserted, its duplicate keys dropped). None, with
    nothing written, when some series has one (they take the merge path)."""
    filled = [f for f in frames if len(f)]
    if not filled:
        return [UpsertResult() for _ in frames]
    parts = {table: _collapsed(part, table) for table, part in route_bars(pd.concat(filled, ignore_index=True)).items()}
    try:
        with conn.transaction(), conn.cursor() as cur:
            if any(table.time_column is None or _overlaps_stored(cur, rows, table) for table, rows in parts.items()):
                return None
            try:
                with conn.transaction():
                    for table, rows in parts.items():
                        _copy(cur, rows, table, table.identifier)
                        _invalidate_aggregates(cur, rows, table)
            except psycopg.errors.UniqueViolation:
                return None  # a concurrent writer got there first: merge instead
    except psycopg.Error as exc:
        raise StorageError(
            f"COPY of {sum(len(r) for r in parts.values())} new bar(s) of {len(filled)} series failed "
            f"and was rolled back: {exc}"
        ) from exc
    kept = pd.concat([rows["symbol"] for rows in parts.values()]).value_counts()
    results = []
    for part in frames:
        inserted = int(kept.reindex(pd.unique(part["symbol"])).fillna(0).sum()) if len(part) else 0
        results.append(UpsertResult(inserted, 0, 0, len(part) - inserted))
    return results


# ---------------------------------------------------------------------------------------------
# The reader

Adjustment = Literal["raw", "split", "all"]
ADJUSTMENTS: tuple[str, ...] = ("raw", "split", "all")


def check_adjustment(adjustment: str) -> None:
    if adjustment not in ADJUSTMENTS:
        raise StorageError(f"unknown adjustment {adjustment!r}; use one of {list(ADJUSTMENTS)}")


def read_bars(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    start: object,
    end: object,
    timeframe: str = "1day",
    *,
    adjustment: Adjustment = "raw",
) -> pd.DataFrame:
    """Bars of ``symbols`` with ``start <= ts < end`` in the canonical BARS dtypes, sorted by
    symbol and ts; ``adjustment`` is ``raw``, ``split`` or ``all`` (see ``market.adjusted_bars``
    in db/routines/20_adjusted_bars.sql and :mod:`storage.corporate_actions`)."""
    check_adjustment(adjustment)
    bar_table(timeframe)  # refuses timeframes the hot store does not keep, before any query
    lo, hi = to_utc(start), to_utc(end)
    try:
        rows = conn.execute(
            "SELECT symbol, ts, timeframe, open, high, low, close, volume, vwap, trade_count, source "
            "FROM market.adjusted_bars(%s, %s, %s, %s, %s)",
            (list(symbols), lo.to_pydatetime(), hi.to_pydatetime(), canonical_timeframe(timeframe), adjustment),
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read {timeframe} bars of {list(symbols)[:5]}: {exc}") from exc
    columns: list[Sequence[object]] = list(zip(*rows, strict=True)) if rows else [[] for _ in BARS]
    return frame(BARS, dict(zip(BARS, columns, strict=True)), what="hot-store bars")


def symbols_with_bars(conn: psycopg.Connection, timeframe: str, start: object, end: object) -> list[str]:
    """Symbols with stored bars of ``timeframe`` and ``start <= ts < end``, sorted."""
    rows = conn.execute(
        "SELECT DISTINCT symbol FROM market.bars WHERE timeframe = %s AND ts >= %s AND ts < %s ORDER BY 1",
        (canonical_timeframe(timeframe), to_utc(start).to_pydatetime(), to_utc(end).to_pydatetime()),
    ).fetchall()
    return [str(r[0]) for r in rows]
