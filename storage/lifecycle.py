"""The lake's lifecycle: compaction of small cold objects, orphan sweeps, raw-zone retention, usage.

Compaction merges the objects of one partition (``cold/<dataset>/timeframe=../<date|month>=../``)
once it holds ``storage.data_lake.compact_min_files`` of them (daily data tiers a 30-day chunk at a
time into monthly partitions, features of daily bars one 1-day chunk at a time, late rows add
objects). Like tiering it is one transaction under the lake lock: read every object and check it
against its manifest checksum, merge (a key in two objects: the newer object's row; for bars the
better-ranked vendor's row first, the loser going to market.vendor_bars_* in the same transaction;
for news items the latest version: :func:`merge_objects`), sort by (symbol, ts), write
``compact-<digest>.parquet``, read it back and verify it, replace the partition's manifest rows by
the new one, commit; only then delete the old objects. A crash before the commit leaves the old
objects listed and the new one an orphan; after it, the old objects are orphans. Either way no
reader (they read what the manifest lists) sees a row twice or misses one, and
:func:`sweep_orphans` (run by ``marketpipe lake compact``) deletes the leftovers.

Raw-zone retention (:func:`prune_raw`) deletes vendor pages (``raw/...``, ``ops.raw_pages``) whose
data date is older than ``storage.data_lake.raw_retention_days``, except pages not yet processed.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from loguru import logger

from core.errors import StorageError
from core.settings import Settings
from db.migrate import FULL_EDITION, running_edition
from storage.hot import keep_vendor_rows
from storage.lake import Lake
from storage.raw import RAW_PREFIX
from storage.tiering import (
    COLD_PREFIX,
    DATASETS,
    LakeFile,
    TierDataset,
    crash_point,
    describe,
    insert_manifest,
    lock_lake,
    manifest_files,
    object_key,
    require_idle,
    sort_rows,
    table_checksum,
    write_verified,
)
from storage.vendors import source_ranks

ORPHAN_GRACE = timedelta(hours=1)  # a raw page is written before its ops.raw_pages row: leave young objects be


# ---------------------------------------------------------------------------------------------
# Compaction: pure planning


@dataclass(frozen=True)
class CompactionPlan:
    dataset: str
    timeframe: str
    partition: str
    files: tuple[LakeFile, ...]  # oldest first: a later file's row wins a duplicated key

    @property
    def key(self) -> str:
        digest = hashlib.sha256("\n".join(sorted(f.key for f in self.files)).encode()).hexdigest()[:16]
        return object_key(DATASETS[self.dataset], self.timeframe, self.partition, f"compact-{digest}")


def plan_compaction(files: Sequence[LakeFile], min_files: int) -> list[CompactionPlan]:
    """Partitions holding at least ``min_files`` (and at least two) objects; ``files`` oldest first."""
    groups: dict[tuple[str, str, str], list[LakeFile]] = {}
    for f in files:
        groups.setdefault((f.dataset, f.timeframe, f.partition), []).append(f)
    return [
        CompactionPlan(*where, tuple(group))
        for where, group in sorted(groups.items())
        if len(group) >= max(min_files, 2)
    ]


@dataclass(frozen=True)
class PartitionMerge:
    """What merging a partition's objects gives: its rows, one per key, sorted; and the rows of
    other vendors that lost their bar to a better-ranked vendor's (or to an equally ranked,
    newer one): the newest row of each (key, source), for the vendor table. Empty but for datasets
    whose table ranks vendors (the bars)."""

    rows: pa.Table
    displaced: pa.Table


def merge_objects(ds: TierDataset, tables: Sequence[pa.Table], *, precedence: Sequence[str]) -> PartitionMerge:
    """Rows of several objects of a partition (oldest first) merged on the key: the row of the later
    table, except that the row the hot store would keep wins first, wherever it sits: for bars the
    better-ranked ``source`` in ``precedence`` (:func:`storage.vendors.source_ranks`, as the hot
    writer and the read router rank them), for news the latest ``updated_at``
    (:attr:`TierDataset.newest_by`). The hot writers only see hot rows: without this a worse
    vendor's bar, or a stale version of an article, written hot after the better row was tiered
    would be the newer object's row, and compaction would delete the better one from the lake."""
    # an object written before a column was added (news_items' minhash) has it as nulls
    merged = pa.concat_tables(tables, promote_options="default").combine_chunks()
    key = [k for k in ds.key if k != "timeframe"]
    displaced = merged.slice(0, 0)
    priority = _priority(ds, merged, precedence)
    if priority is None:
        keep = _last_of_each(merged, key)
    else:
        order = np.argsort(priority, kind="stable")  # lowest first, so the winner of a key is its last row
        keep = np.sort(order[_last_of_each(merged.select(key).take(pa.array(order)), key)])
        if ds.table.vendor_table is not None:
            newest = _last_of_each(merged, [*key, "source"])
            displaced = merged.take(pa.array(np.setdiff1d(newest, keep, assume_unique=True)))
    rows = merged.take(pa.array(keep)) if len(keep) != merged.num_rows else merged
    return PartitionMerge(sort_rows(ds, rows), displaced)


def _priority(ds: TierDataset, rows: pa.Table, precedence: Sequence[str]) -> np.ndarray | None:
    """Per row, what decides a key before the objects' order (higher wins); None when only the
    order does (one vendor's bars, datasets without versions)."""
    if ds.table.vendor_table is not None:
        if pc.count_distinct(rows["source"]).as_py() < 2:
            return None
        return -source_ranks(rows["source"].to_numpy(zero_copy_only=False), precedence)
    if ds.newest_by is not None:
        stamps = pc.fill_null(rows[ds.newest_by].cast(pa.int64()), np.iinfo(np.int64).min)
        return stamps.to_numpy()
    return None


def _last_of_each(table: pa.Table, key: Sequence[str]) -> np.ndarray:
    """Positions of the last row of each ``key`` value in ``table``, ascending."""
    position = pa.array(np.arange(table.num_rows, dtype=np.int64))
    latest = table.select(list(key)).append_column("_row", position)
    return np.sort(latest.group_by(list(key), use_threads=False).aggregate([("_row", "max")])["_row_max"].to_numpy())


# ---------------------------------------------------------------------------------------------
# Compaction: I/O


@dataclass(frozen=True)
class CompactionResult:
    dataset: str
    timeframe: str
    partition: str
    key: str
    files_merged: int
    rows: int
    size_bytes: int
    deleted: tuple[str, ...]
    vendor_rows: int = 0  # other vendors' rows that lost their bar here, kept in the vendor table


@dataclass
class CompactionReport:
    partitions: list[CompactionResult] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    seconds: float = 0.0


def compact_partition(
    conn: psycopg.Connection, lake: Lake, settings: Settings, plan: CompactionPlan
) -> CompactionResult:
    """Merge one partition's objects (see the module docstring for the steps); ``conn`` must be
    outside any transaction (:func:`~storage.tiering.require_idle`)."""
    require_idle(conn, "compact_partition")
    ds = DATASETS[plan.dataset]
    compression = settings.storage.data_lake.compression
    with conn.transaction():
        lock_lake(conn)
        current = [
            f
            for f in manifest_files(conn, dataset=plan.dataset, timeframe=plan.timeframe)
            if f.partition == plan.partition
        ]
        if len(current) < 2:  # another run compacted it meanwhile
            return CompactionResult(plan.dataset, plan.timeframe, plan.partition, "", 0, 0, 0, ())
        plan = CompactionPlan(plan.dataset, plan.timeframe, plan.partition, tuple(current))
        tables = []
        for f in plan.files:
            table = lake.read_parquet(f.key)
            if table.num_rows != f.row_count or table_checksum(table) != f.checksum:
                raise StorageError(
                    f"lake object s3://{lake.bucket}/{f.key} does not match its manifest row ({table.num_rows} "
                    f"row(s) read, {f.row_count} recorded, or a different checksum); it was not compacted: "
                    "restore it from the bucket's versions or a backup before compacting this partition"
                )
            tables.append(table)
        merge = merge_objects(ds, tables, precedence=settings.storage.source_precedence)
        rows = merge.rows
        if merge.displaced.num_rows:  # kept like the hot writer keeps them, in this transaction
            keep_vendor_rows(conn, merge.displaced.to_pandas().assign(timeframe=plan.timeframe), ds.table)
        key = plan.key
        size, checksum = write_verified(lake, key, rows, compression, settings.storage.data_lake.row_group_rows)
        sources = sorted({c for f in plan.files for c in f.source_chunks})
        merged = describe(ds, plan.timeframe, plan.partition, key, sources, rows, size, checksum, compression)
        conn.execute("DELETE FROM ops.lake_files WHERE key = ANY(%s)", ([f.key for f in plan.files],))
        insert_manifest(conn, [merged])
        crash_point("compaction-before-commit")
    deleted = _delete_quietly(lake, [f.key for f in plan.files if f.key != key])
    return CompactionResult(
        plan.dataset,
        plan.timeframe,
        plan.partition,
        key,
        len(plan.files),
        rows.num_rows,
        size,
        tuple(deleted),
        merge.displaced.num_rows,
    )


def compact(
    conn: psycopg.Connection,
    lake: Lake,
    settings: Settings,
    *,
    dataset: Sequence[str] | str | None = None,
    min_files: int | None = None,
) -> CompactionReport:
    """Compact every partition with at least ``min_files`` objects (default
    ``storage.data_lake.compact_min_files``), then delete orphaned objects. ``conn``: a connection
    outside any transaction (autocommit, or idle), else a :class:`RequestError`; each partition
    commits on its own before its old objects are deleted."""
    require_idle(conn, "compact")
    began = time.monotonic()
    report = CompactionReport()
    threshold = min_files if min_files is not None else settings.storage.data_lake.compact_min_files
    with conn.transaction():  # ends the listing's transaction on a connection without autocommit
        files = manifest_files(conn, dataset=dataset)
    for plan in plan_compaction(files, threshold):
        result = compact_partition(conn, lake, settings, plan)
        if result.key:
            logger.info(
                "compacted {} objects of {} into {} ({} rows)",
                result.files_merged,
                plan.key.rsplit("/", 1)[0],
                result.key,
                result.rows,
            )
            if result.vendor_rows:
                logger.info(
                    "kept {} bar(s) that lost to a better-ranked vendor's in {}",
                    result.vendor_rows,
                    DATASETS[plan.dataset].table.vendor_table,
                )
            report.partitions.append(result)
    report.orphans_deleted = sweep_orphans(conn, lake)
    report.seconds = time.monotonic() - began
    return report


def orphans(conn: psycopg.Connection, lake: Lake) -> list[str]:
    """Objects under ``cold/`` that the manifest does not list (interrupted exports or compactions)."""
    listed = {r[0] for r in conn.execute("SELECT key FROM ops.lake_files").fetchall()}
    return sorted(o.key for o in lake.list(f"{COLD_PREFIX}/") if o.key not in listed)


def sweep_orphans(conn: psycopg.Connection, lake: Lake) -> list[str]:
    """Delete :func:`orphans`, under the lake lock so that no export in flight loses its object;
    ``conn`` must be outside any transaction (:func:`~storage.tiering.require_idle`)."""
    require_idle(conn, "sweep_orphans")
    with conn.transaction():
        lock_lake(conn)
        found = orphans(conn, lake)
        return _delete_quietly(lake, found)


def _delete_quietly(lake: Lake, keys: Sequence[str]) -> list[str]:
    """Delete what can be deleted now; what cannot stays an orphan for the next sweep."""
    deleted = []
    for key in keys:
        try:
            lake.delete(key)
            deleted.append(key)
        except StorageError as exc:
            logger.warning("left orphan {} for the next `marketpipe lake compact`: {}", key, exc)
    return deleted


# ---------------------------------------------------------------------------------------------
# Raw-zone retention

_RAW_DATE = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")


def raw_cutoff(today: date, retention_days: int) -> date:
    """Pages whose data date is before this are pruned."""
    return today - timedelta(days=retention_days)


def raw_key_date(key: str) -> date | None:
    match = _RAW_DATE.search(key)
    return date.fromisoformat(match[1]) if match else None


@dataclass(frozen=True)
class PruneReport:
    cutoff: date
    pages: int  # ops.raw_pages rows deleted
    objects: int  # raw/ objects deleted
    kept_unprocessed: int


def prune_raw(conn: psycopg.Connection, lake: Lake, retention_days: int, *, now: datetime | None = None) -> PruneReport:
    """Delete raw-zone pages older than ``retention_days`` (by data date) and their rows, keeping
    pages the processing stage has not processed yet. Rows are deleted in the transaction that
    deletes their objects: a failure keeps both (a page whose object is gone is only a lost replay)."""
    moment = now or datetime.now(UTC)
    limit = raw_cutoff(moment.date(), retention_days)
    with conn.transaction():
        keys = [
            r[0]
            for r in conn.execute(
                "DELETE FROM ops.raw_pages WHERE data_date < %s AND processed_at IS NOT NULL RETURNING key", (limit,)
            ).fetchall()
        ]
        kept = {r[0] for r in conn.execute("SELECT key FROM ops.raw_pages WHERE data_date < %s", (limit,)).fetchall()}
        stale = set(keys)
        for obj in lake.list(f"{RAW_PREFIX}/"):
            day = raw_key_date(obj.key)
            young = obj.last_modified is not None and obj.last_modified > moment - ORPHAN_GRACE
            if day is not None and day < limit and obj.key not in kept and not young:
                stale.add(obj.key)
        for key in sorted(stale):
            lake.delete(key)
    return PruneReport(limit, len(keys), len(stale), len(kept))


# ---------------------------------------------------------------------------------------------
# Usage


@dataclass(frozen=True)
class Usage:
    dataset: str
    timeframe: str | None
    tier: str  # hot (uncompressed chunks), warm (natively compressed chunks) or cold (the lake)
    files: int  # chunks (hot, warm) or Parquet objects (cold)
    rows: int | None
    bytes: int
    uncompressed_bytes: int | None = None  # warm: what its chunks took before compression


_CHUNK_SIZES = """
SELECT c.is_compressed, count(*), coalesce(sum(s.total_bytes), 0)
  FROM timescaledb_information.chunks c
  JOIN chunks_detailed_size(%(table)s::regclass) s ON s.chunk_schema = c.chunk_schema AND s.chunk_name = c.chunk_name
 WHERE c.hypertable_schema = %(schema)s AND c.hypertable_name = %(name)s
 GROUP BY c.is_compressed
"""


def usage(conn: psycopg.Connection) -> list[Usage]:
    """Bytes per dataset at each temperature: hot and warm (chunks, indexes included; warm is
    compressed, with its size before compression) and cold (the manifest's Parquet objects)."""
    full = running_edition(conn) == FULL_EDITION
    out = []
    for ds in DATASETS.values():
        schema, name = ds.table.name.split(".")
        by_state = {
            bool(compressed): (int(n), int(size))
            for compressed, n, size in conn.execute(
                _CHUNK_SIZES, {"table": ds.table.name, "schema": schema, "name": name}
            ).fetchall()
        }
        chunks, size = by_state.get(False, (0, 0))
        out.append(Usage(ds.name, None, "hot", chunks, None, size))
        if full:
            chunks, size = by_state.get(True, (0, 0))
            before = conn.execute(
                "SELECT coalesce(sum(before_compression_total_bytes), 0) FROM chunk_compression_stats(%s::regclass)"
                " WHERE compression_status = 'Compressed'",
                (ds.table.name,),
            ).fetchone()
            out.append(Usage(ds.name, None, "warm", chunks, None, size, int(before[0]) if before else 0))
    rows = conn.execute(
        "SELECT dataset, timeframe, count(*), sum(row_count), sum(size_bytes) FROM ops.lake_files"
        " GROUP BY dataset, timeframe ORDER BY dataset, timeframe"
    ).fetchall()
    out += [Usage(d, tf, "cold", int(n), int(r), int(b)) for d, tf, n, r, b in rows]
    return out
