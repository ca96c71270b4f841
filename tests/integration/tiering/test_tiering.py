"""Tiering on the real stack: old chunks move to the lake and every read gives the same rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from core.errors import RequestError
from core.model import CORPORATE_ACTIONS, frame
from core.settings import Settings
from storage.corporate_actions import upsert_corporate_actions
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.router import StorageRouter
from storage.tiering import DATASETS, manifest_files, table_checksum, tier_chunks
from tests.support.tiering import make_bars, year_window


def hot_rows(conn: psycopg.Connection, table: str, symbols: list[str]) -> int:
    return conn.execute(f"SELECT count(*) FROM {table} WHERE symbol = ANY(%s)", (symbols,)).fetchone()[0]


def a_split(symbol: str, ex_date: str) -> pd.DataFrame:
    columns = {
        "symbol": [symbol],
        "action": ["split"],
        "ex_date": [pd.Timestamp(ex_date, tz="UTC")],
        "new_rate": [2.0],
        "old_rate": [1.0],
        "source": ["test"],
    }
    return frame(CORPORATE_ACTIONS, columns, what="test split")


def test_old_chunks_move_to_the_lake_and_reads_are_identical(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(3))
    minutes = pd.concat(
        [make_bars(names, "1990-06-04", 3, "1min", 20), make_bars(names, "1990-06-04", 3, "5min", 10, seed=2)]
    )
    days = make_bars(names, "1990-05-01", 60, "1day", seed=3)  # spans three months and several 30-day chunks
    upsert_bars(conn, pd.concat([minutes, days], ignore_index=True))
    upsert_corporate_actions(conn, a_split(names[0], "1990-06-05"))
    router = StorageRouter(conn, lake, stack)
    queries = [
        (names, "1990-06-01", "1990-06-10", "1min", False),
        (names[:2], "1990-06-05", "1990-06-07", "5min", False),
        (names, "1990-04-01", "1990-09-01", "1day", False),
        (names, "1990-06-01", "1990-06-10", "1min", "split"),
        (names, "1990-04-01", "1990-09-01", "1day", True),
    ]
    before = [router.read_bars(s, a, b, tf, adjusted=adj) for s, a, b, tf, adj in queries]
    assert [len(f) for f in before] == [3 * 3 * 20, 2 * 2 * 10, 3 * 60, 3 * 3 * 20, 3 * 60]

    older, newer = year_window(1990)
    report = tier_chunks(conn, lake, stack, older_than=older.replace(year=1991), newer_than=older)

    assert report.rows == len(minutes) + len(days)
    assert hot_rows(conn, "market.bars", names) == 0
    files = manifest_files(conn, dataset=["bars_intraday", "bars_daily"], start=older, end=newer, symbols=names)
    assert sum(f.row_count for f in files) == report.rows
    assert {f.key.split("/")[3] for f in files if f.timeframe == "1day"} >= {"month=1990-05", "month=1990-06"}
    for f in files:
        stored = pq.read_table(f"{lake.bucket}/{f.key}", filesystem=lake.filesystem())
        assert stored.num_rows == f.row_count and table_checksum(stored) == f.checksum
        assert stored.column_names[:2] == ["symbol", "ts"] and "timeframe" not in stored.column_names
        assert stored.sort_by([("symbol", "ascending"), ("ts", "ascending")]).equals(stored)
    after = [router.read_bars(s, a, b, tf, adjusted=adj) for s, a, b, tf, adj in queries]
    for expected, actual in zip(before, after, strict=True):
        assert_frame_equal(actual, expected)


def test_rerun_after_tiering_changes_nothing(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = [symbols() for _ in range(2)]
    upsert_bars(conn, make_bars(names, "1991-06-04", 2, "1min", 15))
    older, _ = year_window(1991)
    first = tier_chunks(conn, lake, stack, older_than=older.replace(year=1992), newer_than=older)
    second = StorageRouter(conn, lake, stack).tier(older_than=older.replace(year=1992), newer_than=older)
    assert first.rows == 60 and second.rows == 0 and second.chunks == []


def test_a_range_in_the_lake_is_refused_without_cold_fallback(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = [symbols()]
    upsert_bars(conn, make_bars(names, "1992-06-04", 1, "1min", 5))
    older, _ = year_window(1992)
    tier_chunks(conn, lake, stack, older_than=older.replace(year=1993), newer_than=older)
    strict = stack.model_copy(
        update={
            "storage": stack.storage.model_copy(
                update={"routing": stack.storage.routing.model_copy(update={"cold_fallback_enabled": False})}
            )
        }
    )
    router = StorageRouter(conn, lake, strict, now=datetime(1992, 12, 1, tzinfo=UTC))

    with pytest.raises(RequestError) as refused:
        router.read_bars(names, "1992-06-01", "1992-06-30", "1min")

    message = str(refused.value)
    assert "1992-06-01 00:00" in message and "cold_fallback_enabled" in message and "1992-11-01" in message


def test_a_range_across_both_tiers_merges_and_late_rows_win(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    from storage.lifecycle import compact

    names = sorted(symbols() for _ in range(2))
    upsert_bars(conn, make_bars(names, "1993-06-07", 3, "1min", 10))  # Mon..Wed
    router = StorageRouter(conn, lake, stack)
    before = router.read_bars(names, "1993-06-07", "1993-06-10", "1min")
    monday, tuesday = datetime(1993, 6, 7, tzinfo=UTC), datetime(1993, 6, 8, tzinfo=UTC)
    tier_chunks(conn, lake, stack, older_than=tuesday, newer_than=monday)  # Monday's chunk only

    plan = router.plan(DATASETS["bars_intraday"], names, monday, datetime(1993, 6, 10, tzinfo=UTC), "1min")
    assert plan.name == "hot+cold"
    assert_frame_equal(router.read_bars(names, "1993-06-07", "1993-06-10", "1min"), before)

    late = before[(before["symbol"] == names[0])].head(1).assign(close=12345.0, high=12346.0)
    upsert_bars(conn, late)  # a correction of a bar already in the lake lands in a new hot chunk
    expected = before.copy()
    expected.loc[late.index, ["close", "high"]] = [12345.0, 12346.0]
    assert_frame_equal(router.read_bars(names, "1993-06-07", "1993-06-10", "1min"), expected)

    tier_chunks(conn, lake, stack, older_than=tuesday, newer_than=monday)
    files = [
        f
        for f in manifest_files(conn, dataset="bars_intraday", timeframe="1min", symbols=names)
        if f.partition == "date=1993-06-07"
    ]
    assert len(files) == 2  # the late row's chunk became a second object of the partition
    assert_frame_equal(router.read_bars(names, "1993-06-07", "1993-06-10", "1min"), expected)

    compact(conn, lake, stack, dataset="bars_intraday", min_files=2)
    assert_frame_equal(router.read_bars(names, "1993-06-07", "1993-06-10", "1min"), expected)
