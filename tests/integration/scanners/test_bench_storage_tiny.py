"""bench/storage.py at a tiny size in the normal suite: every part runs and cleans up after itself."""

from __future__ import annotations

import pytest

from bench.storage import run
from db.connect import database_connection
from marketpipe.settings import Settings
from tasks.storage.lake import Lake

pytestmark = pytest.mark.integration


def test_tiny_benchmark_runs_every_part_and_leaves_nothing_behind(stack: Settings) -> None:
    report = run(stack, symbols=3, sessions=4, repeats=1)

    assert report["rows"] == report["tiering"]["rows"] == 3 * (3 * 390 + 210)
    assert report["scanner_rows"]["latest_bar"] == 3
    assert report["lake_to_hot_bytes_ratio"] > 0 and report["tiering_mb_per_s"] > 0
    assert report["symbol_month_read"]["rows"] == 3 * 390 + 210
    with database_connection(stack, autocommit=True) as conn:
        schemas = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_storage_%'").fetchone()[0]
        manifest = conn.execute(
            "SELECT count(*) FROM ops.lake_files WHERE dataset = 'bench_storage_bars'"
        ).fetchone()[0]
    assert (schemas, manifest) == (0, 0)
    assert not [o.key for o in Lake.from_settings(stack.lake).list("cold/bench-storage-")]
