"""The cluster bench's arithmetic: per-worker rate, scaling, efficiency, the universe's projection."""

from __future__ import annotations

import pytest

from bench.features_cluster import bench_overrides, summarize, universe_bars


def test_scaling_and_projection_come_from_the_measured_rates() -> None:
    runs = [{"workers": 1, "bars_per_s": 100_000}, {"workers": 2, "bars_per_s": 150_000}]

    report = summarize(runs)

    assert report["per_worker_bars_per_s"] == 100_000
    assert report["scaling"] == 1.5 and report["efficiency"] == 0.75
    assert universe_bars() == 10_000 * 10 * 252 * 390
    hours = report["projection"]["hours_on_workers"]
    assert hours["1"] == pytest.approx(universe_bars() / 100_000 / 3600, abs=0.05)
    assert hours["8"] == pytest.approx(universe_bars() / (100_000 * 8 * 0.75) / 3600, abs=0.05)


def test_one_measurement_projects_linear_scaling_and_says_no_scaling_was_measured() -> None:
    report = summarize([{"workers": 3, "bars_per_s": 90_000}])
    assert report["per_worker_bars_per_s"] == 30_000
    assert report["scaling"] is None and report["efficiency"] == 1.0


def test_the_bench_never_points_at_the_real_database_or_bucket() -> None:
    overrides = bench_overrides({"database": {"port": 6000}, "features": {"sma": 5}})
    assert overrides["database"] == {"port": 6000, "name": "bench_features_cluster"}
    assert overrides["lake"] == {"bucket": "marketpipe-bench-features"}
    assert overrides["features"] == {"sma": 5}
