"""Tiering and compaction commit chunk by chunk, partition by partition, or not at all.

Inside a caller's transaction psycopg makes each ``conn.transaction()`` a SAVEPOINT: compaction
would delete a partition's old objects before anything committed, and a later rollback would leave
the manifest listing deleted objects. So every mover refuses such a connection; an idle one without
autocommit works, each step committing on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.errors import RequestError
from core.settings import Settings
from db.connect import database_connection
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.lifecycle import CompactionPlan, compact, compact_partition, sweep_orphans
from storage.tiering import TieringReport, manifest_files, tier_chunks
from tests.support.tiering import make_bars


def tier_day(conn: psycopg.Connection, lake: Lake, settings: Settings, day: datetime) -> TieringReport:
    return tier_chunks(
        conn, lake, settings, dataset="bars_intraday", older_than=day + timedelta(days=1), newer_than=day
    )


def partition_keys(conn: psycopg.Connection, day: datetime) -> set[str]:
    """Every object of ``day``'s 1-minute partition (earlier sessions' tests may have left some)."""
    files = manifest_files(conn, dataset="bars_intraday", timeframe="1min", start=day, end=day + timedelta(days=1))
    return {f.key for f in files if f.partition == f"date={day:%Y-%m-%d}"}


def two_objects_of_one_day(
    conn: psycopg.Connection, lake: Lake, settings: Settings, names: list[str], day: datetime
) -> list[str]:
    """``day``'s 1-minute bars tiered, then a late correction of one of them tiered as a second
    object of the same partition; returns the two keys."""
    bars = make_bars(names, f"{day:%Y-%m-%d}", 1, "1min", 10)
    upsert_bars(conn, bars)
    first = tier_day(conn, lake, settings, day)
    upsert_bars(conn, bars.head(1).assign(close=12345.0, high=12346.0))
    second = tier_day(conn, lake, settings, day)
    keys = [key for report in (first, second) for chunk in report.chunks for key in chunk.files]
    assert len(keys) == 2 and set(keys) <= partition_keys(conn, day)
    return keys


def hot_rows(conn: psycopg.Connection, names: list[str]) -> int:
    return conn.execute("SELECT count(*) FROM market.bars WHERE symbol = ANY(%s)", (names,)).fetchone()[0]


def test_movers_refuse_a_connection_inside_a_transaction(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(2))
    monday, tuesday = datetime(1976, 6, 7, tzinfo=UTC), datetime(1976, 6, 8, tzinfo=UTC)
    keys = two_objects_of_one_day(conn, lake, stack, names, monday)
    upsert_bars(conn, make_bars(names, "1976-06-08", 1, "1min", 10))  # a hot chunk for tier_chunks
    files = [f for f in manifest_files(conn, dataset="bars_intraday", timeframe="1min") if f.key in keys]
    plan = CompactionPlan("bars_intraday", "1min", "date=1976-06-07", tuple(files))
    moves: list[tuple[str, Callable[[psycopg.Connection], object]]] = [
        ("compact_partition", lambda tx: compact_partition(tx, lake, stack, plan)),
        ("compact", lambda tx: compact(tx, lake, stack, dataset="bars_intraday", min_files=2)),
        ("sweep_orphans", lambda tx: sweep_orphans(tx, lake)),
        ("tier_chunks", lambda tx: tier_day(tx, lake, stack, tuesday)),
    ]

    with database_connection(stack) as tx:
        tx.execute("SELECT 1")  # without autocommit, any statement opens a transaction
        for name, move in moves:
            with pytest.raises(RequestError, match=f"^{name} needs a connection outside any transaction") as refused:
                move(tx)
            assert "autocommit=True" in str(refused.value)
        tx.rollback()

    assert set(keys) <= partition_keys(conn, monday)
    assert all(lake.exists(key) for key in keys)
    assert hot_rows(conn, names) == 2 * 10  # Tuesday's chunk stayed hot


def test_an_idle_connection_without_autocommit_commits_each_step(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(2))
    monday, tuesday = datetime(1978, 6, 5, tzinfo=UTC), datetime(1978, 6, 6, tzinfo=UTC)
    keys = two_objects_of_one_day(conn, lake, stack, names, monday)
    upsert_bars(conn, make_bars(names, "1978-06-06", 1, "1min", 10))

    with database_connection(stack) as tx:
        try:
            moved = tier_day(tx, lake, stack, tuesday)
            tiered_status = tx.info.transaction_status
            compacted = compact(tx, lake, stack, dataset="bars_intraday", min_files=2)
            compacted_status = tx.info.transaction_status
        finally:
            tx.commit()  # whatever a mover left open, so that a failure here leaves no half-compacted lake

    assert moved.rows == 2 * 10 and tiered_status == psycopg.pq.TransactionStatus.IDLE
    assert compacted_status == psycopg.pq.TransactionStatus.IDLE
    merged = partition_keys(conn, monday)  # seen from another connection: committed
    assert len(merged) == 1 and merged <= {r.key for r in compacted.partitions}
    assert not any(lake.exists(key) for key in keys)
    assert hot_rows(conn, names) == 0
