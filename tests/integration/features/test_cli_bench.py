"""`marketpipe bench features --json` through the real console script, at a tiny scale.

A process of its own, not tests.support.cli: ``compile_s`` times the JIT, which kernels already
compiled in the test process would skip."""

from __future__ import annotations

import json

import pytest


def test_bench_features_reports_both_sides_in_json(marketpipe_cli) -> None:
    args = ("bench", "features", "--json", "--symbols", "3", "--bars", "200", "--repeat", "1")
    done = marketpipe_cli(*args, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    assert report["bars"] == 600
    assert report["features"] == 20
    for key in ("engine_bars_per_s", "talib_bars_per_s", "compile_s"):
        assert report[key] > 0, key
    # The ratio is rounded to two decimals and the rates to whole bars/s: compare relatively.
    assert report["ratio"] == pytest.approx(report["engine_bars_per_s"] / report["talib_bars_per_s"], rel=0.01)
    assert 0 <= report["peak_extra_bytes"] <= 2 * report["input_bytes"]
