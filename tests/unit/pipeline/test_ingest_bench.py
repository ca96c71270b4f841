"""The ingest benchmark's arithmetic: overhead and the bounds its CPU accounting gives."""

from __future__ import annotations

import pytest

from bench.ingest import cpu_bounds, overhead_fraction


def test_cpu_bound_is_the_work_spread_over_every_core():
    bounds = cpu_bounds(1000, {"client": 3.0, "postgres": 0.5, "sandbox": 0.5}, cores=2, naive_bars_per_s=100.0)
    assert bounds["end_to_end_cpu_seconds_total"] == 4.0
    assert bounds["cpu_bound_bars_per_s"] == 500  # 1000 bars in at least 4 CPU-s / 2 cores
    assert bounds["upper_bound_ratio"] == 5.0
    assert bounds["vendor_and_store_bound_ratio"] == 20.0  # sandbox + postgres only: 1 CPU-s


def test_without_cpu_figures_there_is_no_bound():
    bounds = cpu_bounds(1000, {}, cores=2, naive_bars_per_s=100.0)
    assert bounds["upper_bound_ratio"] is None and bounds["cpu_bound_bars_per_s"] is None


def test_overhead_is_the_flows_extra_time_per_bar_and_never_negative():
    assert overhead_fraction(10.0, 1000, 8.0, 1000) == pytest.approx(0.2)
    assert overhead_fraction(10.0, 1000, 12.0, 1000) == 0.0
