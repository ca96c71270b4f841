"""Tiering under faults: an S3 outage in the middle of an export, and kill -9 at each step between
verifying the objects and committing the drop. Afterwards a rerun leaves every row exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

from core.errors import StorageError
from core.settings import Settings
from stack.daemon import ManagedProcess
from stack.supervisor import Stack
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.lifecycle import orphans
from storage.router import StorageRouter
from storage.tiering import CRASH_ENV, TieringError, manifest_files, tier_chunks
from tests.support.stack import free_block, free_port
from tests.support.tiering import make_bars, year_window

STARTUP_SECONDS = 60


def wait_for_lake(lake: Lake) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            lake.ensure_bucket()
            return
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def private_lake(stack: Settings) -> Iterator[tuple[Settings, ManagedProcess]]:
    """A second `weed mini` of our own on other free ports, so stopping it disturbs no other test."""
    used: set[int] = set()
    state_dir = Path(tempfile.mkdtemp(prefix="marketpipe-outage-", dir="/tmp"))
    lake_settings = stack.lake.model_copy(
        update={"port": free_port(used), "internal_port_base": free_block(used), "bucket": "tiering-outage"}
    )
    settings = stack.model_copy(update={"state_dir": state_dir, "lake": lake_settings})
    process = Stack(settings).lake_process
    process.start()
    try:
        wait_for_lake(Lake.from_settings(settings.lake))
        yield settings, process
    finally:
        process.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


class LakeThatLosesItsServer(Lake):
    """The real lake, whose server is stopped right after the n-th object is written."""

    def __init__(self, settings: Settings, process: ManagedProcess, stop_after_puts: int) -> None:
        lake = settings.lake
        assert lake.secret_key is not None
        super().__init__(
            lake.endpoint_url, lake.access_key, lake.secret_key.get_secret_value(), lake.bucket, lake.region
        )
        self.process, self.remaining = process, stop_after_puts

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        super().put_bytes(key, data, content_type)
        self.remaining -= 1
        if self.remaining == 0:
            self.process.stop()


def hot_count(conn: psycopg.Connection, names: list[str]) -> int:
    return conn.execute("SELECT count(*) FROM market.bars WHERE symbol = ANY(%s)", (names,)).fetchone()[0]


def cold_rows(lake: Lake, conn: psycopg.Connection, names: list[str], year: int) -> pa.Table:
    start, end = year_window(year)
    files = manifest_files(conn, dataset="bars_intraday", start=start, end=end, symbols=names)
    if not files:
        return pa.table({"symbol": pa.array([], pa.string())})
    tables = [lake.read_parquet(f.key) for f in files]
    table = pa.concat_tables(tables)
    return table.filter(pa.compute.is_in(table["symbol"], pa.array(names)))


def test_s3_outage_mid_export_loses_nothing_and_a_rerun_finishes(
    stack: Settings,
    conn: psycopg.Connection,
    symbols: Callable[[], str],
    private_lake: tuple[Settings, ManagedProcess],
) -> None:
    settings, process = private_lake
    names = sorted(symbols() for _ in range(3))
    bars = pd.concat(
        [make_bars(names, "1994-06-06", 3, "1min", 20), make_bars(names, "1994-06-06", 3, "5min", 8, seed=4)]
    )
    upsert_bars(conn, bars)
    router = StorageRouter(conn, Lake.from_settings(settings.lake), settings)
    before = router.read_bars(names, "1994-06-01", "1994-07-01", "1min")
    older, newer = year_window(1994)
    # three day-chunks of two timeframes each: the server dies after the first chunk and one
    # object of the second, so the outage hits the second chunk halfway through its export
    flaky = LakeThatLosesItsServer(settings, process, stop_after_puts=3)

    with pytest.raises(TieringError) as stopped:
        tier_chunks(
            conn, flaky, settings, dataset="bars_intraday", older_than=older.replace(year=1995), newer_than=older
        )

    assert len(stopped.value.report.chunks) == 1 and "still hot" in str(stopped.value)
    assert hot_count(conn, names) == len(bars) - stopped.value.report.rows
    process.start()
    lake = Lake.from_settings(settings.lake)
    wait_for_lake(lake)
    assert (
        sum(f.row_count for f in manifest_files(conn, dataset="bars_intraday", start=older, end=newer, symbols=names))
        == stopped.value.report.rows
    )

    again = tier_chunks(
        conn, lake, settings, dataset="bars_intraday", older_than=older.replace(year=1995), newer_than=older
    )

    assert again.rows + stopped.value.report.rows == len(bars)
    assert hot_count(conn, names) == 0
    cold = cold_rows(lake, conn, names, 1994)
    assert cold.num_rows == len(bars)
    assert_frame_equal(router.read_bars(names, "1994-06-01", "1994-07-01", "1min"), before)


def tier_argv(year: int) -> list[str]:
    return [
        str(Path(sys.executable).parent / "marketpipe"),
        "lake",
        "tier",
        "--dataset",
        "bars_intraday",
        "--older-than",
        f"{year + 1}-01-01",
        "--newer-than",
        f"{year}-01-01",
    ]


@pytest.mark.parametrize(("point", "year"), [("after-verify", 1995), ("after-manifest", 1996), ("after-drop", 1997)])
def test_kill_9_between_verify_and_commit_then_rerun_is_exact(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str], point: str, year: int
) -> None:
    names = sorted(symbols() for _ in range(3))
    bars = make_bars(names, f"{year}-06-05", 2, "1min", 25)
    upsert_bars(conn, bars)
    router = StorageRouter(conn, lake, stack)
    before = router.read_bars(names, f"{year}-06-01", f"{year}-07-01", "1min")

    crashed = subprocess.run(
        tier_argv(year), env={**os.environ, CRASH_ENV: f"tiering:{point}"}, capture_output=True, text=True, timeout=300
    )

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert hot_count(conn, names) == len(bars)  # the chunk's transaction died with the process
    assert cold_rows(lake, conn, names, year).num_rows == 0
    if point == "after-verify":
        assert any(f"{year}-06-05" in key for key in orphans(conn, lake))  # written, verified, never listed

    rerun = subprocess.run(tier_argv(year), capture_output=True, text=True, timeout=300)

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert hot_count(conn, names) == 0
    cold = cold_rows(lake, conn, names, year).to_pandas()
    assert len(cold) == len(bars) and not cold.duplicated(["symbol", "ts"]).any()
    assert_frame_equal(router.read_bars(names, f"{year}-06-01", f"{year}-07-01", "1min"), before)


def test_kill_9_in_compaction_before_commit_keeps_the_old_files_and_a_rerun_merges(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str], marketpipe_cli
) -> None:
    names = sorted(symbols() for _ in range(2))
    upsert_bars(conn, make_bars(names, "2006-02-01", 60, "1day", seed=21))  # 30-day chunks: months in 2 files
    start, end = year_window(2006)
    tier_chunks(conn, lake, stack, dataset="bars_daily", older_than=start.replace(year=2007), newer_than=start)
    router = StorageRouter(conn, lake, stack)
    before = router.read_bars(names, "2006-01-01", "2006-06-01", "1day")
    listed = {f.key for f in manifest_files(conn, dataset="bars_daily")}
    stray = set(orphans(conn, lake))

    crashed = marketpipe_cli(
        "lake",
        "compact",
        "--dataset",
        "bars_daily",
        "--min-files",
        "2",
        env={CRASH_ENV: "tiering:compaction-before-commit"},
    )

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert {f.key for f in manifest_files(conn, dataset="bars_daily")} == listed
    assert all(lake.exists(key) for key in listed)
    new = set(orphans(conn, lake)) - stray
    assert len(new) == 1 and "/compact-" in new.pop()
    assert_frame_equal(router.read_bars(names, "2006-01-01", "2006-06-01", "1day"), before)

    rerun = marketpipe_cli("lake", "compact", "--dataset", "bars_daily", "--min-files", "2", "--json")

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    mine = manifest_files(conn, dataset="bars_daily", start=start, end=end, symbols=names)
    assert len({f.partition for f in mine}) == len(mine) and any("/compact-" in f.key for f in mine)
    assert orphans(conn, lake) == []
    assert_frame_equal(router.read_bars(names, "2006-01-01", "2006-06-01", "1day"), before)
