"""A smoke run of each benchmark at a tiny size, in the default suite (not marked slow), so a broken
bench is caught here and not by the next person who measures. No timing is asserted: each run's
report has its keys, and every top-level figure in it is a positive finite number.

The benchmarks: ``marketpipe bench ingest`` (bench/ingest.py), ``marketpipe bench features``
(bench/features.py), ``marketpipe bench storage`` (bench/storage.py), ``python -m bench.hot_writer``
(bench/hot_writer.py) here; ``marketpipe bench stream`` (bench/stream.py) is smoke-run at a tiny size
by tests/integration/bench/test_bench_stream.py (its own sandbox process; not run twice).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from core.settings import Settings
from tests.support.stack import REPO

RUNS = {
    "ingest": (
        "bench",
        "ingest",
        "--symbols",
        "2",
        "--sessions",
        "1",
        "--naive-symbols",
        "1",
        "--latency-symbols",
        "3",
        "--latency-sessions",
        "1",
        "--json",
    ),
    "features": ("bench", "features", "--symbols", "2", "--bars", "100", "--repeat", "1", "--json"),
    "storage": ("bench", "storage", "--symbols", "2", "--sessions", "2", "--json"),
}
KEYS = {
    "ingest": (
        "end_to_end_bars_per_s",
        "writer_rows_per_s",
        "psql_copy_rows_per_s",
        "naive_bars_per_s",
        "plain_bars_per_s",
        "prefect_overhead_fraction",
        "writer_vs_psql",
        "end_to_end_vs_naive",
        "rate_limit_utilization",
        "end_to_end_vs_naive_latency",
        "cpu_vs_writer",
        "prefect_cpu_fraction",
        "load_average",
        "targets",
    ),
    "features": ("engine_bars_per_s", "talib_bars_per_s", "ratio", "compile_s", "peak_extra_bytes", "input_bytes"),
    "storage": (
        "latest_bar_p50_ms",
        "latest_bar_p95_ms",
        "top_movers_p50_ms",
        "top_movers_p95_ms",
        "tiering_mb_per_s",
        "lake_to_hot_bytes_ratio",
        "compression_ratio",
        "ingest_policy_ratio",
        "targets",
    ),
    "hot_writer": ("writer_rows_per_s", "psql_copy_rows_per_s", "ratio", "merge_rows_per_s", "rerun_rows_per_s"),
}
# Figures that may be 0 in a tiny run: rounded to 2 decimals (a ratio of a slow flow to a fast
# reference), clamped at 0 (an overhead), or a machine's state.
MAY_BE_ZERO = {
    "ingest": {"prefect_overhead_fraction", "end_to_end_vs_naive", "upper_bound_ratio", "vacuum_seconds"},
    "features": {"ratio_fresh_output", "peak_extra_bytes", "peak_extra_vs_input"},
    "storage": {"load_average_1min"},
    "hot_writer": set(),
}
# The compression figures of bench storage are None on TimescaleDB's Apache edition; bench ingest's
# CPU bounds are None when the stack's processes' CPU times cannot be read.
COMPRESSION = {"compression_ratio", "ingest_policy_ratio", "ingest_with_policy_rows_per_s"}
CPU_BOUNDS = {
    "cpu_bound_bars_per_s",
    "upper_bound_ratio",
    "vendor_and_store_bound_ratio",
    "cpu_vs_writer",
    "prefect_cpu_fraction",
    "writer_cpu_seconds",
    "writer_cpu_us_per_bar",
    "bare_writer_cpu_us_per_bar",
    "cpu_vs_bare_writer",
    "end_to_end_cpu_us_per_bar",
}


def figures(report: dict) -> dict[str, object]:
    """The report's top-level figures: every number and every None (a figure not measured)."""
    return {
        key: value
        for key, value in report.items()
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    }


def assert_positive_figures(name: str, report: dict) -> None:
    assert set(KEYS[name]) <= set(report), sorted(set(KEYS[name]) - set(report))
    apache = report.get("timescaledb", {}).get("edition") == "apache"
    for key, value in figures(report).items():
        if value is None:
            compression = apache and (key in COMPRESSION or key.startswith("compressed_"))
            assert compression or (name == "ingest" and key in CPU_BOUNDS), f"{name}: {key} is None"
            continue
        assert isinstance(value, int | float) and math.isfinite(value), f"{name}: {key} = {value!r}"
        low_ok = key in MAY_BE_ZERO[name] or key == "cpus"
        assert value > 0 or (low_ok and value >= 0), f"{name}: {key} = {value!r} is not a positive number"


@pytest.mark.parametrize("name", list(RUNS))
def test_each_cli_benchmark_reports_its_keys_and_positive_figures(stack: Settings, marketpipe_cli, name: str) -> None:
    done = marketpipe_cli(*RUNS[name], timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert_positive_figures(name, report)
    assert len(figures(report)) >= len([k for k in KEYS[name] if k != "targets"])


def test_the_hot_writer_benchmark_reports_its_keys_and_positive_figures(stack: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.hot_writer", "--rows", "2000", "--symbols", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert_positive_figures("hot_writer", report)
    assert report["rows"] == 2000 and report["rerun_unchanged"] == 2000
