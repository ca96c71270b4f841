"""`marketpipe bench features --cluster local --json` through the real console script, tiny: the
features flow on LocalClusters of 1 and 2 workers reading history tiered to the bench's bucket."""

from __future__ import annotations

import json

import pytest

from core.settings import Settings
from db.connect import database_connection
from storage.lake import Lake


def test_bench_features_cluster_reports_rates_scaling_projection_and_load(stack: Settings, marketpipe_cli) -> None:
    args = ("bench", "features", "--cluster", "local", "--cluster-symbols", "3", "--sessions", "2")
    done = marketpipe_cli(*args, "--workers", "1,2", "--symbols-per-shard", "1", "--json", timeout=480)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    bars = report["history"]["bars"]  # 3 symbols x 2 sessions (the last one a half day)
    assert 3 * 390 < bars <= 3 * 2 * 390 and report["history"]["hot_rows_left"] == 0  # all from the lake
    assert [r["workers"] for r in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert (run["bars"], run["shards"]) == (bars, 3)
        assert run["bars_per_s"] == pytest.approx(bars / run["seconds"], rel=0.02)
        assert run["per_worker_bars_per_s"] == pytest.approx(run["bars_per_s"] / run["workers"], abs=1)
        assert len(run["load_avg_1m"]) == 2
    one, two = report["runs"]
    assert report["scaling"] == pytest.approx(two["bars_per_s"] / one["bars_per_s"], abs=0.01)
    assert report["per_worker_bars_per_s"] == one["bars_per_s"]
    assert set(report["projection"]["hours_on_workers"]) == {"1", "2", "8", "32"}
    assert len(report["load_average"]["start"]) == 3
    with database_connection(stack) as conn:  # the throwaway database is gone
        gone = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_features_cluster'").fetchone()
    assert gone is None
    bucket = Lake.from_settings(stack.lake.model_copy(update={"bucket": "marketpipe-bench-features"}))
    assert list(bucket.list("")) == []


def test_a_bad_cluster_address_is_one_line_naming_it(stack: Settings, marketpipe_cli) -> None:
    done = marketpipe_cli("bench", "features", "--cluster", "http://nowhere:1", timeout=60)
    assert done.returncode != 0
    assert "http://nowhere:1" in done.stderr and "tcp://HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr
