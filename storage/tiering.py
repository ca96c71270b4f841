"""Hot-to-cold tiering: TimescaleDB chunks older than the hot window become Parquet in the lake.

Layout (Hive-style, readable by pyarrow.dataset, DuckDB, Spark with ``hive_partitioning``)::

    cold/bars/timeframe=1min/date=2026-01-05/<chunk>.parquet        intraday bars, one UTC day
    cold/bars/timeframe=1day/month=2026-01/<chunk>.parquet          daily bars, one UTC month
    cold/features/timeframe=1min/date=2026-01-05/<chunk>.parquet    standard features (wide)
    cold/features/timeframe=1day/month=2026-01/<chunk>.parquet
    cold/feature_values/timeframe=.../<chunk>.parquet               plugin outputs (long)
    cold/trades/date=2026-01-05/<chunk>.parquet                     trades (no timeframe), one UTC day
    cold/option_quotes/date=2026-01-05/<chunk>.parquet              option chain snapshots, one UTC day

Intraday timeframes partition by day (a 1-day chunk is exactly one partition), daily bars by month
(a 30-day chunk spans two months, so it becomes two objects). ``<chunk>`` is the TimescaleDB chunk's
name without its leading underscore (``hyper_3_41_chunk``: pyarrow, Spark and Hive skip files whose
names start with ``_`` or ``.``), so re-exporting a chunk rewrites the same keys; compaction merges a
partition's objects into ``compact-<digest>.parquet``. Partition columns (``timeframe``) are not
repeated inside the files; a dataset without a timeframe (trades) has no ``timeframe=`` level, and
its manifest rows say timeframe ``tick`` (:data:`NO_TIMEFRAME`). Rows are sorted by (symbol, ts)
and written in row groups of ``storage.data_lake.row_group_rows`` rows, so one symbol's range is a
few row groups that the min/max statistics on ``symbol`` and ``ts`` find; compression is
``storage.data_lake.compression``.
The lake holds one database's data: two databases tiering into one bucket could reuse chunk names.
Intraday and daily trees have different partition keys (date vs month): DuckDB reads one timeframe
at a time (``read_parquet('.../cold/bars/timeframe=1min/*/*.parquet', hive_partitioning=true)``),
pyarrow.dataset reads ``cold/bars`` whole with a hive partitioning of timeframe, date and month.

The manifest ``ops.lake_files`` (db/migrations/0010_lake_manifest.sql) lists every object that is
part of the lake, with its rows, time and symbol range, size and content checksum. Objects under
``cold/`` that it does not list are leftovers of an interrupted export or compaction: readers ignore
them, reruns overwrite them, ``sweep_orphans`` deletes them.

Moving one chunk is ONE database transaction, so no crash or S3 outage can lose or duplicate a row:

1. lock the lake (an advisory lock: one mover at a time) and the chunk against writers (SHARE);
2. export the chunk's rows, split by partition, to Parquet objects;
3. read every object back; its row count and :func:`table_checksum` must equal what was exported;
4. insert the objects' manifest rows;
5. ``DROP TABLE`` the chunk (TimescaleDB removes it from the hypertable's catalog);
6. commit.

A failure before 6 rolls back 4 and 5: the chunk stays hot and a rerun redoes it from 1. After 6
the rows are cold only. Late rows for a time range already tiered land in a new chunk, which the
next run tiers into the same partition as another object; readers resolve a key present in two
objects in favour of the newer object (compaction does the same when it merges them), except that
for bars the better-ranked vendor's row (storage.source_precedence) wins first, in either tier:
:func:`storage.router.merge_tiers`, :func:`storage.lifecycle.merge_objects`.

Three temperatures on the full (Timescale License) edition:

- hot: uncompressed chunks, the recent ones: written, corrected and read at full speed;
- warm: chunks older than ``storage.data_lake.compression_after_days``, compressed in TimescaleDB
  by the compression policy :func:`ensure_native_compression` sets (the layout per table is in
  db/routines/60_columnstore.sql). Still in the database: readers and scanners see no difference,
  and a late correction upserts into them (TimescaleDB decompresses the batches it touches);
- cold: chunks older than ``storage.routing.hot_data_days`` (per dataset), in the Parquet lake.
  Moving a chunk reads it through TimescaleDB whether it is compressed or not, and ``DROP TABLE``
  of a compressed chunk drops its compressed part with it.

The Apache edition has no compression: hot and cold only, which is logged once
(:func:`compression_decision`). ``marketpipe lake du`` shows the bytes at each temperature.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from loguru import logger
from psycopg import sql

from core.errors import ConfigurationError, MarketpipeError, RequestError, StorageError
from core.settings import Settings
from db.migrate import FULL_EDITION, running_edition
from storage.aggregates import POLICY_WINDOW
from storage.feature_tables import FEATURE_VALUES_TABLE, FEATURES_TABLE
from storage.hot import BARS_DAILY, BARS_INTRADAY, PRICE_SCALE, Column, TableSpec
from storage.lake import Lake
from storage.news import ITEM_VERSIONS_TABLE, LINK_VERSIONS_TABLE, NEWS_ITEMS_TABLE, NEWS_LINKS_TABLE
from storage.options import OPTION_QUOTES_TABLE
from storage.quotes import QUOTES_TABLE
from storage.trades import TRADES_TABLE

COLD_PREFIX = "cold"
LAKE_LOCK_KEY = 0x6C616B65  # 'lake': one advisory lock id for every mover of lake contents
CRASH_ENV = "MARKETPIPE_CRASH_AT"  # tests only: "tiering:<point>" kills this process with SIGKILL there
DAILY_TIMEFRAMES = frozenset({"1day"})
NO_TIMEFRAME = "tick"  # the manifest's timeframe of datasets that have none (trades): every row is a tick


# ---------------------------------------------------------------------------------------------
# Datasets


@dataclass(frozen=True)
class TierDataset:
    """A hypertable that tiers to the lake, and where its rows go."""

    name: str  # settings and CLI name: storage.routing.hot_data_days_by_dataset.<name>
    table: TableSpec
    lake_name: str  # cold/<lake_name>/...
    symbol_column: str = "symbol"  # what files are sorted by and the manifest's symbol range is of
    time_column: str = "ts"  # the hypertable's time column: partitions, sort order, the manifest's range
    # a key in two objects keeps the row with the latest value of this column, not the newer
    # object's (news: an article's versions by updated_at, as storage.news writes them)
    newest_by: str | None = None

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every stored column, the touch column included (it is part of a row's history)."""
        touched = (Column(self.table.touched_at, "timestamptz"),) if self.table.touched_at else ()
        return (*self.table.columns, *touched)

    @property
    def file_columns(self) -> tuple[Column, ...]:
        """The columns inside a Parquet object: all but the partition column ``timeframe``."""
        return tuple(c for c in self.columns if c.name != "timeframe")

    @property
    def key(self) -> tuple[str, ...]:
        return self.table.key

    @property
    def has_timeframe(self) -> bool:
        """Bars and features partition by timeframe first; trades have none."""
        return "timeframe" in self.table.column_names

    @property
    def prefix(self) -> str:
        return f"{COLD_PREFIX}/{self.lake_name}/"


DATASETS: dict[str, TierDataset] = {
    d.name: d
    for d in (
        TierDataset("bars_intraday", BARS_INTRADAY, "bars"),
        TierDataset("bars_daily", BARS_DAILY, "bars"),
        TierDataset("features", FEATURES_TABLE, "features"),
        TierDataset("feature_values", FEATURE_VALUES_TABLE, "feature_values"),
        TierDataset("trades", TRADES_TABLE, "trades"),
        TierDataset("quotes", QUOTES_TABLE, "quotes"),
        TierDataset(
            "news_items",
            NEWS_ITEMS_TABLE,
            "news_items",
            symbol_column="source",
            time_column="published_at",
            newest_by="updated_at",
        ),
        TierDataset("news_item_symbols", NEWS_LINKS_TABLE, "news_item_symbols", time_column="published_at"),
        # the superseded versions of news items and their links (migration 0026), with the same weeks
        TierDataset(
            "news_item_versions",
            ITEM_VERSIONS_TABLE,
            "news_item_versions",
            symbol_column="source",
            time_column="published_at",
        ),
        TierDataset(
            "news_item_symbol_versions", LINK_VERSIONS_TABLE, "news_item_symbol_versions", time_column="published_at"
        ),
        # option chain snapshots, one UTC day per object, sorted and ranged by underlying
        TierDataset("option_quotes", OPTION_QUOTES_TABLE, "option_quotes", symbol_column="underlying"),
    )
}


def get_dataset(name: str) -> TierDataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise RequestError(
            f"unknown lake dataset {name!r}; use one of {sorted(DATASETS)} (or none for all of them)"
        ) from None


def datasets_of(names: Sequence[str] | str | None) -> list[TierDataset]:
    if names is None:
        return list(DATASETS.values())
    return [get_dataset(n) for n in ([names] if isinstance(names, str) else names)]


# ---------------------------------------------------------------------------------------------
# Pure planning


def partition_of(timeframe: str, day: datetime) -> str:
    """The Hive partition below ``timeframe=``: ``date=YYYY-MM-DD`` (intraday) or ``month=YYYY-MM``."""
    return f"month={day:%Y-%m}" if timeframe in DAILY_TIMEFRAMES else f"date={day:%Y-%m-%d}"


def object_key(ds: TierDataset, timeframe: str, partition: str, name: str) -> str:
    if not ds.has_timeframe:
        return f"{ds.prefix}{partition}/{name}.parquet"
    return f"{ds.prefix}timeframe={timeframe}/{partition}/{name}.parquet"


def parse_key(key: str) -> tuple[str, str, str] | None:
    """``(lake_name, timeframe, partition)`` of a ``cold/`` key (timeframe :data:`NO_TIMEFRAME`
    for a dataset without one), None for anything else."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == COLD_PREFIX:  # cold/<name>/date=.../<file>
        parts = [parts[0], parts[1], f"timeframe={NO_TIMEFRAME}", parts[2], parts[3]]
    if len(parts) != 5 or parts[0] != COLD_PREFIX or not parts[2].startswith("timeframe="):
        return None
    if not parts[3].startswith(("date=", "month=")) or not parts[4].endswith(".parquet"):
        return None
    return parts[1], parts[2].removeprefix("timeframe="), parts[3]


def check_hot_windows(settings: Settings) -> None:
    """Refuse per-dataset hot windows for datasets that do not exist (a typo would keep data hot),
    and a hot window of 1-minute bars the continuous aggregates' refresh policies reach past: a
    refresh over a range tiering dropped would empty the aggregates' buckets there."""
    routing = settings.storage.routing
    unknown = sorted(set(routing.hot_data_days_by_dataset) - set(DATASETS))
    if unknown:
        raise ConfigurationError(
            f"storage.routing.hot_data_days_by_dataset names unknown dataset(s) {unknown}; the datasets are "
            f"{sorted(DATASETS)}: fix the key(s) in the config file or environment"
        )
    minimum = min_hot_days("bars_intraday")
    if routing.hot_days("bars_intraday") < minimum:
        raise ConfigurationError(
            f"the hot window of bars_intraday is {routing.hot_days('bars_intraday')} days; it must be at least "
            f"{minimum} days, longer than the continuous aggregates' {POLICY_WINDOW.days}-day refresh window "
            "(db/routines/70_continuous_aggregates.sql): raise storage.routing.hot_data_days (or its "
            "bars_intraday override)"
        )


def min_hot_days(dataset: str) -> int:
    """The fewest days a chunk of ``dataset`` stays hot, whatever is asked: 1-minute bars outlive the
    continuous aggregates' refresh window (:data:`POLICY_WINDOW`) by a day of margin either side,
    since a refresh over a range tiering dropped would empty the aggregates' buckets there; a chunk
    of any other dataset may move once its time range has passed."""
    return POLICY_WINDOW.days + 2 if dataset == "bars_intraday" else 0


def check_older_than(ds: TierDataset, older_than: datetime, now: datetime) -> None:
    """Refuse an explicit ``older_than`` that would move chunks younger than :func:`min_hot_days`."""
    latest = cutoff(now, min_hot_days(ds.name))
    if older_than <= latest:
        return
    if latest == now:
        why = "is in the future: chunks still being written would move"
    else:
        why = (
            f"is within {min_hot_days(ds.name)} days of now, where the continuous aggregates' "
            f"{POLICY_WINDOW.days}-day refresh (db/routines/70_continuous_aggregates.sql) would empty the "
            "5min to 1day bars of the chunks it moved"
        )
    raise RequestError(
        f"older_than {older_than:%Y-%m-%d %H:%M} UTC {why}; {ds.name} may be tiered up to "
        f"{latest:%Y-%m-%d %H:%M} UTC (now is {now:%Y-%m-%d %H:%M} UTC): give that date or an earlier one, "
        "or leave older_than out to use storage.routing.hot_data_days"
    )


def cutoff(now: datetime, hot_days: int) -> datetime:
    """Chunks that end at or before this instant are older than the hot window."""
    return now - timedelta(days=hot_days)


def arrow_schema(columns: Iterable[Column]) -> pa.Schema:
    types = {
        "text": pa.string(),
        "float8": pa.float64(),
        "int8": pa.int64(),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
        "bytea": pa.binary(),  # news items' MinHash signatures
        "price": pa.float64(),  # dollars in the lake; ticks only in the hot store (storage/hot.py)
    }
    return pa.schema([pa.field(c.name, types[c.pg_type]) for c in columns])


def split_partitions(ds: TierDataset, table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    """A chunk's rows (with ``timeframe``) as ``(timeframe, partition, rows)`` groups, each sorted by
    (symbol, ts, rest of the key) and without the ``timeframe`` column."""
    if table.num_rows == 0:
        return []
    days = pc.floor_temporal(table[ds.time_column], unit="day")
    if not ds.has_timeframe:
        return [
            (
                NO_TIMEFRAME,
                partition_of(NO_TIMEFRAME, day),
                sort_rows(ds, table.filter(pc.equal(days, pa.scalar(day, days.type)))),
            )
            for day in sorted(pc.unique(days).to_pylist())
        ]
    months = pc.floor_temporal(table[ds.time_column], unit="month")
    groups: list[tuple[str, str, pa.Table]] = []
    for timeframe in sorted(pc.unique(table["timeframe"]).to_pylist()):
        of_tf = pc.equal(table["timeframe"], timeframe)
        buckets = months if timeframe in DAILY_TIMEFRAMES else days
        for bucket in sorted(pc.unique(pc.filter(buckets, of_tf)).to_pylist()):
            rows = table.filter(pc.and_(of_tf, pc.equal(buckets, pa.scalar(bucket, buckets.type))))
            groups.append((timeframe, partition_of(timeframe, bucket), sort_rows(ds, rows.drop_columns("timeframe"))))
    return groups


def sort_rows(ds: TierDataset, table: pa.Table) -> pa.Table:
    first = (ds.symbol_column, ds.time_column)
    order = [*first, *(k for k in ds.key if k not in (*first, "timeframe"))]
    return table.sort_by([(name, "ascending") for name in order])


def table_checksum(table: pa.Table) -> str:
    """sha256 over the values of ``table`` in column and row order, independent of its Parquet
    encoding, chunking and string offsets: equal for the rows exported and the rows read back."""
    digest = hashlib.sha256()
    digest.update(str(table.num_rows).encode())
    for name in table.column_names:
        column = table[name].combine_chunks() if table.num_rows else pa.array([], table[name].type)
        digest.update(name.encode() + b"\0" + str(column.type).encode() + b"\0")
        digest.update(np.asarray(column.is_null(), dtype=np.bool_).tobytes())
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            encoded = pc.dictionary_encode(column)  # dictionary in first-seen order: canonical
            digest.update("\x1f".join(str(v) for v in encoded.dictionary.to_pylist()).encode())
            digest.update(np.asarray(encoded.indices.fill_null(0), dtype=np.int64).tobytes())
        elif pa.types.is_timestamp(column.type):
            digest.update(np.asarray(column.cast(pa.int64()).fill_null(0), dtype=np.int64).tobytes())
        elif pa.types.is_floating(column.type):
            digest.update(np.asarray(column.fill_null(0.0), dtype=np.float64).tobytes())
        elif pa.types.is_date32(column.type):  # days since the epoch (option expirations)
            digest.update(np.asarray(column.cast(pa.int32()).fill_null(0), dtype=np.int64).tobytes())
        elif pa.types.is_binary(column.type):  # each value's length, then the values
            digest.update(np.asarray(pc.binary_length(column).fill_null(0), dtype=np.int64).tobytes())
            digest.update(b"".join(v for v in column.to_pylist() if v is not None))
        else:
            digest.update(np.asarray(column.cast(pa.int64()).fill_null(0), dtype=np.int64).tobytes())
    return digest.hexdigest()


def parquet_bytes(table: pa.Table, compression: str, row_group_rows: int) -> bytes:
    sink = io.BytesIO()
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]  # prices do not repeat: no dictionary
    pq.write_table(
        table,
        sink,
        compression=compression,
        row_group_size=row_group_rows,
        use_dictionary=strings,
        write_statistics=True,
        write_page_index=True,
    )
    return sink.getvalue()


@dataclass(frozen=True)
class CompressionDecision:
    """Whether to set TimescaleDB native compression, and why (the one log line)."""

    apply: bool
    reason: str
    policies_set: tuple[str, ...] = ()  # hypertables whose policy this call added or replaced


def compression_decision(edition: str | None, after_days: int) -> CompressionDecision:
    """Native compression needs the Timescale License edition; the Apache build refuses it."""
    if edition == FULL_EDITION:
        return CompressionDecision(
            True,
            f"TimescaleDB timescale edition: native compression (db/routines/60_columnstore.sql) "
            f"for chunks older than {after_days} days (storage.data_lake.compression_after_days)",
        )
    return CompressionDecision(
        False,
        f"TimescaleDB {edition or 'unknown'} edition has no native compression: skipped; old chunks are "
        "compressed by tiering them to the Parquet lake instead (`marketpipe lake tier`)",
    )


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class LakeFile:
    """One manifest row: a verified object of the lake."""

    key: str
    dataset: str
    timeframe: str
    partition: str
    source_chunks: tuple[str, ...]
    min_ts: datetime
    max_ts: datetime
    min_symbol: str
    max_symbol: str
    row_count: int
    size_bytes: int
    checksum: str
    compression: str


@dataclass(frozen=True)
class ChunkResult:
    dataset: str
    chunk: str
    range_start: datetime
    range_end: datetime
    rows: int
    bytes_written: int
    files: tuple[str, ...]
    seconds: float
    compressed: bool = False  # the chunk was warm (natively compressed) when it moved


@dataclass
class TieringReport:
    """What a tiering run moved. ``bytes_written`` counts Parquet bytes written and verified."""

    chunks: list[ChunkResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)

    @property
    def bytes_written(self) -> int:
        return sum(c.bytes_written for c in self.chunks)

    @property
    def files(self) -> int:
        return sum(len(c.files) for c in self.chunks)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_written / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "chunks": len(self.chunks),
            "compressed_chunks": sum(c.compressed for c in self.chunks),
            "files": self.files,
            "rows": self.rows,
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.mb_per_s, 3),
        }


class TieringError(StorageError):
    """A tiering run stopped at a chunk; ``report`` holds the chunks moved before it."""

    def __init__(self, message: str, report: TieringReport) -> None:
        super().__init__(message)
        self.report = report


# ---------------------------------------------------------------------------------------------
# I/O: chunks


@dataclass(frozen=True)
class Chunk:
    schema: str
    name: str
    range_start: datetime
    range_end: datetime
    compressed: bool = False

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def list_chunks(
    conn: psycopg.Connection, ds: TierDataset, older_than: datetime, newer_than: datetime | None = None
) -> list[Chunk]:
    """Chunks of ``ds`` whose whole time range ends at or before ``older_than`` (and starts at or
    after ``newer_than``, when given), oldest first."""
    schema, table = ds.table.name.split(".")
    rows = conn.execute(
        "SELECT chunk_schema, chunk_name, range_start, range_end, is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = %s AND hypertable_name = %s AND range_end <= %s"
        " AND (%s::timestamptz IS NULL OR range_start >= %s) ORDER BY range_start",
        (schema, table, older_than, newer_than, newer_than),
    ).fetchall()
    return [Chunk(*row) for row in rows]


def read_chunk(conn: psycopg.Connection, ds: TierDataset, chunk: Chunk) -> pa.Table:
    """Every row of one chunk as Arrow: a CSV COPY (floats print exactly, with shortest round-trip
    digits since PostgreSQL 12; timestamps as integer microseconds, no time-zone formatting) parsed
    by Arrow's multithreaded CSV reader. Measured here against the server joining rows into large
    text blocks (fewer Python calls): the plain COPY was about twice as fast."""
    select: list[sql.Composable] = []
    for column in ds.columns:
        ident = sql.Identifier(column.name)
        if column.pg_type == "timestamptz":
            select.append(sql.SQL("(extract(epoch FROM {c}) * 1000000)::int8 AS {c}").format(c=ident))
        elif column.pg_type == "price":  # ticks to dollars, as the bar views read them
            select.append(sql.SQL("({c}::float8 / {scale}) AS {c}").format(c=ident, scale=sql.Literal(PRICE_SCALE)))
        elif column.pg_type == "bytea":  # hex text in the CSV, bytes again below
            select.append(sql.SQL("encode({c}, 'hex') AS {c}").format(c=ident))
        else:
            select.append(ident)
    query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT csv)").format(
        sql.SQL(", ").join(select), chunk.identifier
    )
    buffer = io.BytesIO()
    with conn.cursor() as cur:
        with cur.copy(query) as copy:
            for block in copy:
                buffer.write(block)
        sent = cur.rowcount  # from the server's "COPY n"
    schema = arrow_schema(ds.columns)
    if buffer.tell() == 0:
        return schema.empty_table()
    read_types = {f.name: (pa.int64() if pa.types.is_timestamp(f.type) else f.type) for f in schema}
    read_types |= {f.name: pa.string() for f in schema if pa.types.is_binary(f.type)}
    try:
        table = pacsv.read_csv(
            pa.BufferReader(buffer.getbuffer()),
            read_options=pacsv.ReadOptions(column_names=[c.name for c in ds.columns]),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=read_types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowException as exc:
        raise StorageError(f"chunk {chunk.name} of {ds.table.name} could not be read as {schema}: {exc}") from exc
    if sent >= 0 and table.num_rows != sent:
        raise StorageError(f"chunk {chunk.name} of {ds.table.name}: {sent} row(s) sent, {table.num_rows} parsed")
    return pa.table([_from_csv(table[f.name], f.type) for f in schema], schema=schema)


def _from_csv(column: pa.ChunkedArray, to: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """A column as read from the CSV in its lake type: bytes from their hex text."""
    if not pa.types.is_binary(to):
        return column.cast(to)
    return pa.array([None if h is None else bytes.fromhex(h) for h in column.to_pylist()], to)


def crash_point(point: str) -> None:
    """Tests' kill -9 at an exact step (``MARKETPIPE_CRASH_AT=tiering:<point>``); a no-op otherwise."""
    if os.environ.get(CRASH_ENV) == f"tiering:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def require_idle(conn: psycopg.Connection, what: str) -> None:
    """Refuse to move lake contents on a connection inside a transaction. There, psycopg turns each
    chunk's or partition's ``conn.transaction()`` into a SAVEPOINT: nothing commits until the
    caller does, yet compaction deletes the old objects after each one, and a later rollback leaves
    a manifest listing deleted objects."""
    status = conn.info.transaction_status
    if status != psycopg.pq.TransactionStatus.IDLE:
        raise RequestError(
            f"{what} needs a connection outside any transaction, but this one is {status.name}: each chunk "
            "or partition must commit on its own before lake objects are deleted; commit or roll back the "
            "connection's transaction first, or use a connection opened with autocommit=True"
        )


def lock_lake(conn: psycopg.Connection) -> None:
    """Serialize movers of lake contents (tiering, compaction, orphan sweeps) until commit."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LAKE_LOCK_KEY,))


def write_verified(lake: Lake, key: str, rows: pa.Table, compression: str, row_group_rows: int) -> tuple[int, str]:
    """Write ``rows`` to ``key``, read the object back and check it; returns (size, checksum)."""
    data = parquet_bytes(rows, compression, row_group_rows)
    lake.put_bytes(key, data, content_type="application/vnd.apache.parquet")
    expected = table_checksum(rows)
    back = lake.read_parquet(key)
    if back.num_rows != rows.num_rows or not back.schema.equals(rows.schema):
        raise StorageError(
            f"lake object s3://{lake.bucket}/{key} read back {back.num_rows} row(s) with schema {back.schema}, "
            f"expected {rows.num_rows} with {rows.schema}; nothing was dropped, rerun to rewrite it"
        )
    if table_checksum(back) != expected:
        raise StorageError(
            f"lake object s3://{lake.bucket}/{key} read back with different contents (checksum mismatch); "
            "nothing was dropped, rerun to rewrite it"
        )
    return len(data), expected


def describe(
    ds: TierDataset,
    timeframe: str,
    partition: str,
    key: str,
    sources: Sequence[str],
    rows: pa.Table,
    size: int,
    checksum: str,
    compression: str,
) -> LakeFile:
    ts_min, ts_max = pc.min_max(rows[ds.time_column]).values()
    sym_min, sym_max = pc.min_max(rows[ds.symbol_column]).values()
    return LakeFile(
        key,
        ds.name,
        timeframe,
        partition,
        tuple(sources),
        ts_min.as_py(),
        ts_max.as_py(),
        sym_min.as_py(),
        sym_max.as_py(),
        rows.num_rows,
        size,
        checksum,
        compression,
    )


def insert_manifest(conn: psycopg.Connection, files: Sequence[LakeFile]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ops.lake_files (key, dataset, timeframe, partition, source_chunks, min_ts, max_ts,"
            " min_symbol, max_symbol, row_count, size_bytes, checksum, compression)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (key) DO UPDATE SET dataset = EXCLUDED.dataset, timeframe = EXCLUDED.timeframe,"
            " partition = EXCLUDED.partition, source_chunks = EXCLUDED.source_chunks, min_ts = EXCLUDED.min_ts,"
            " max_ts = EXCLUDED.max_ts, min_symbol = EXCLUDED.min_symbol, max_symbol = EXCLUDED.max_symbol,"
            " row_count = EXCLUDED.row_count, size_bytes = EXCLUDED.size_bytes, checksum = EXCLUDED.checksum,"
            " compression = EXCLUDED.compression, created_at = clock_timestamp()",
            [
                (
                    f.key,
                    f.dataset,
                    f.timeframe,
                    f.partition,
                    list(f.source_chunks),
                    f.min_ts,
                    f.max_ts,
                    f.min_symbol,
                    f.max_symbol,
                    f.row_count,
                    f.size_bytes,
                    f.checksum,
                    f.compression,
                )
                for f in files
            ],
        )


def tier_chunk(conn: psycopg.Connection, lake: Lake, settings: Settings, ds: TierDataset, chunk: Chunk) -> ChunkResult:
    """Move one chunk to the lake in one transaction (see the module docstring for the steps);
    ``conn`` must be outside any transaction (:func:`require_idle`)."""
    require_idle(conn, "tier_chunk")
    began = time.monotonic()
    compression = settings.storage.data_lake.compression
    row_group_rows = settings.storage.data_lake.row_group_rows
    with conn.transaction():
        lock_lake(conn)
        exists = conn.execute(
            "SELECT 1 FROM timescaledb_information.chunks WHERE chunk_schema = %s AND chunk_name = %s",
            (chunk.schema, chunk.name),
        ).fetchone()
        if exists is None:  # another mover got it first
            return ChunkResult(ds.name, chunk.name, chunk.range_start, chunk.range_end, 0, 0, (), 0.0)
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(chunk.identifier))
        table = read_chunk(conn, ds, chunk)
        files: list[LakeFile] = []
        for timeframe, partition, rows in split_partitions(ds, table):
            key = object_key(ds, timeframe, partition, chunk.name.lstrip("_."))
            size, checksum = write_verified(lake, key, rows, compression, row_group_rows)
            files.append(describe(ds, timeframe, partition, key, [chunk.name], rows, size, checksum, compression))
        if sum(f.row_count for f in files) != table.num_rows:
            raise StorageError(f"chunk {chunk.name} of {ds.table.name}: partitions do not add up; nothing dropped")
        crash_point("after-verify")
        insert_manifest(conn, files)
        crash_point("after-manifest")
        conn.execute(sql.SQL("DROP TABLE {}").format(chunk.identifier))
        crash_point("after-drop")
    size = sum(f.size_bytes for f in files)
    keys = tuple(f.key for f in files)
    return ChunkResult(
        ds.name,
        chunk.name,
        chunk.range_start,
        chunk.range_end,
        table.num_rows,
        size,
        keys,
        time.monotonic() - began,
        chunk.compressed,
    )


def tier_chunks(
    conn: psycopg.Connection,
    lake: Lake,
    settings: Settings,
    *,
    older_than: datetime | None = None,
    newer_than: datetime | None = None,
    dataset: Sequence[str] | str | None = None,
    now: datetime | None = None,
    on_chunk: Callable[[ChunkResult], None] | None = None,
) -> TieringReport:
    """Move every chunk older than the hot window to the lake, chunk by chunk; returns what moved.

    ``conn``: a connection outside any transaction (autocommit, or idle), else a
    :class:`RequestError`; each chunk commits on its own.
    ``older_than``: move chunks ending at or before this instant instead of each dataset's
    ``now - storage.routing.hot_days(dataset)``, refused (:class:`RequestError`, nothing moved)
    when later than ``now - min_hot_days(dataset)`` (:func:`check_older_than`: never in the future,
    never inside the aggregates' refresh window for 1-minute bars); ``newer_than``: only chunks
    starting at or after this instant (tier one range). ``dataset``: a name or names of :data:`DATASETS`
    (default all). ``on_chunk`` is called after each chunk commits (progress, benchmarks).
    Raises :class:`TieringError` (with the partial report) at the first chunk that fails; that
    chunk and the later ones stay hot, and a rerun finishes the job.
    """
    check_hot_windows(settings)
    require_idle(conn, "tier_chunks")
    report = TieringReport()
    began = time.monotonic()
    moment = now or datetime.now(UTC)
    datasets = datasets_of(dataset)
    if older_than is not None:  # refused before any chunk moves
        for ds in datasets:
            check_older_than(ds, older_than, moment)
    for ds in datasets:
        limit = older_than or cutoff(moment, settings.storage.routing.hot_days(ds.name))
        with conn.transaction():  # ends the listing's transaction on a connection without autocommit
            chunks = list_chunks(conn, ds, limit, newer_than)
        for chunk in chunks:
            try:
                result = tier_chunk(conn, lake, settings, ds, chunk)
            except (MarketpipeError, psycopg.Error) as exc:
                report.seconds = time.monotonic() - began
                raise TieringError(
                    f"tiering stopped at chunk {chunk.name} of {ds.table.name} "
                    f"[{chunk.range_start:%Y-%m-%d %H:%M}, {chunk.range_end:%Y-%m-%d %H:%M}): {exc}; "
                    f"that chunk is still hot and no row was lost ({len(report.chunks)} chunk(s) moved before "
                    "it); fix the cause and rerun `marketpipe lake tier`",
                    report,
                ) from exc
            if result.rows:
                logger.info(
                    "tiered {} {}: {} rows in {} file(s), {:,} B",
                    ds.name,
                    chunk.name,
                    result.rows,
                    len(result.files),
                    result.bytes_written,
                )
            report.chunks.append(result)
            if on_chunk is not None:
                on_chunk(result)
    report.seconds = time.monotonic() - began
    return report


# ---------------------------------------------------------------------------------------------
# I/O: native compression (full edition only)


def compression_enabled(conn: psycopg.Connection, table: TableSpec) -> bool:
    schema, name = table.name.split(".")
    row = conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, name),
    ).fetchone()
    return bool(row and row[0])


def compression_policy_after(conn: psycopg.Connection, table: TableSpec) -> tuple[int, timedelta] | None:
    """The hypertable's compression policy job and its compress_after, or None."""
    schema, name = table.name.split(".")
    row = conn.execute(
        "SELECT job_id, (config->>'compress_after')::interval FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_compression' AND hypertable_schema = %s AND hypertable_name = %s",
        (schema, name),
    ).fetchone()
    return (int(row[0]), row[1]) if row else None


def ensure_native_compression(conn: psycopg.Connection, settings: Settings) -> CompressionDecision:
    """On the full edition, a compression policy on every tiered hypertable that has native
    compression set (db/routines/60_columnstore.sql says how each is laid out) for chunks older than
    ``storage.data_lake.compression_after_days``; a policy with another age is replaced. Idempotent;
    logs one line. On the Apache edition nothing is done (:func:`compression_decision`)."""
    after = settings.storage.data_lake.compression_after_days
    decision = compression_decision(running_edition(conn), after)
    if not decision.apply:
        logger.info(decision.reason)
        return decision
    wanted = timedelta(days=after)
    changed: list[str] = []
    with conn.transaction():
        for ds in DATASETS.values():
            if not compression_enabled(conn, ds.table):
                raise StorageError(
                    f"{ds.table.name} has no native compression set although the full edition runs; "
                    "run `marketpipe db migrate` (routine 60_columnstore.sql sets it)"
                )
            policy = compression_policy_after(conn, ds.table)
            if policy is not None and policy[1] == wanted:
                continue
            if policy is not None:
                conn.execute("SELECT remove_compression_policy(%s::regclass)", (ds.table.name,))
            conn.execute(
                "SELECT add_compression_policy(%s::regclass, compress_after => %s::interval)",
                (ds.table.name, wanted),
            )
            changed.append(ds.table.name)
    logger.info(decision.reason + (f"; policy set on {', '.join(changed)}" if changed else "; policies up to date"))
    return CompressionDecision(True, decision.reason, tuple(changed))


# ---------------------------------------------------------------------------------------------
# I/O: the manifest


_FILE_COLUMNS = (
    "key, dataset, timeframe, partition, source_chunks, min_ts, max_ts, min_symbol, max_symbol,"
    " row_count, size_bytes, checksum, compression"
)


def _lake_file(row: Sequence) -> LakeFile:
    values = list(row)
    values[4] = tuple(values[4])
    return LakeFile(*values)


def manifest_files(
    conn: psycopg.Connection,
    *,
    dataset: Sequence[str] | str | None = None,
    timeframe: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    symbols: Sequence[str] | None = None,
) -> list[LakeFile]:
    """Manifest rows, narrowed to files that can hold rows of ``symbols`` in ``[start, end)``;
    oldest first (a key in two files: the later one wins)."""
    names = [d.name for d in datasets_of(dataset)]
    where: list[str] = ["dataset = ANY(%s)"]
    args: list[object] = [names]
    if timeframe is not None:
        where.append("timeframe = %s")
        args.append(timeframe)
    if start is not None:
        where.append("max_ts >= %s")
        args.append(start)
    if end is not None:
        where.append("min_ts < %s")
        args.append(end)
    if symbols:  # byte order on both sides: the file bounds come from Arrow, the query's from Python
        where.append('max_symbol COLLATE "C" >= %s AND min_symbol COLLATE "C" <= %s')
        args += [min(symbols), max(symbols)]
    rows = conn.execute(
        f"SELECT {_FILE_COLUMNS} FROM ops.lake_files WHERE {' AND '.join(where)} ORDER BY created_at, key",
        args,
    ).fetchall()
    return [_lake_file(r) for r in rows]
