"""The ingest benchmark runs end to end at a tiny size in `make test` and reports every figure: a
broken benchmark is found here, not when someone measures (the full-size figures come from
``marketpipe bench ingest``; no timing is asserted)."""

from __future__ import annotations

import math
import os
from typing import Any

from bench.ingest import _unused_tag, bench_symbols, delete_symbols, render_table, run, session_range, under_latency
from core.settings import Settings
from db.connect import database_connection

RATES = ("end_to_end_bars_per_s", "writer_rows_per_s", "psql_copy_rows_per_s", "naive_bars_per_s", "plain_bars_per_s")


def figures(report: Any, path: str = "") -> dict[str, float]:
    """Every number of the report by its dotted path (booleans are verdicts, not figures)."""
    if isinstance(report, dict):
        return {k: v for key, value in report.items() for k, v in figures(value, f"{path}.{key}").items()}
    if isinstance(report, int | float) and not isinstance(report, bool):
        return {path: float(report)}
    return {}


def test_tiny_benchmark_reports_positive_figures_and_cleans_up(stack: Settings) -> None:
    report = run(
        stack, symbols=2, sessions=1, naive_symbols=1, latency_symbols=3, latency_sessions=1, latency_naive_symbols=1
    )

    assert report["bars"] == 2 * 1 * 390
    numbers = figures(report)
    assert len(numbers) > 20 and all(math.isfinite(v) and v >= 0 for v in numbers.values()), numbers
    assert all(report[key] > 0 for key in RATES)
    assert 0.0 <= report["prefect_overhead_fraction"] < 1.0
    assert report["end_to_end_vs_naive"] > 0 and report["writer_vs_psql"] > 0 and report["cpus"] >= 1
    assert set(report["targets"]) == {
        "writer_vs_psql",
        "prefect_overhead_fraction",
        "prefect_cpu_fraction",
        "rate_limit_utilization",
        "end_to_end_vs_naive_latency",
        "cpu_vs_writer",
    }
    assert all(isinstance(t["met"], bool) for t in report["targets"].values())
    # under the sandbox's latency: one page per symbol, every one served (the plan's limit held)
    latency = report["latency"]
    assert latency["bars"] == 3 * 390 and latency["requests"] == 3 and latency["refused_429"] == 0
    assert 0 < report["rate_limit_utilization"] <= 1.0 and report["end_to_end_vs_naive_latency"] > 0
    # bars/s over the flow's wall time, not over the span of the requests the sandbox served
    assert latency["bars_per_s"] == round(latency["bars"] / latency["flow_seconds"])
    assert 0 < report["prefect_cpu_fraction"] < 1 and report["cpu_vs_writer"] > 0
    assert report["hot_store_writer"]["rows"] == report["bars"] and report["cpu_vs_bare_writer"] > 0
    # a process's one-time costs are paid by a start-up run first and reported apart
    assert report["start_up"]["bars"] == 2 * 1 * 390 and sum(report["start_up"]["cpu_seconds"].values()) > 0
    assert report["cpu_vs_writer_cold"] > 0
    assert len(report["load_average"]["before"]) == 3 and isinstance(report["load_average"]["idle"], bool)
    assert "under latency" in render_table(report)
    patterns = [f"{prefix}{report['run_tag']}%" for prefix in "SBPNLMW"]  # the run's symbols
    with database_connection(stack) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM ops.raw_pages WHERE symbol LIKE ANY(%(p)s))"
            " + (SELECT count(*) FROM ops.watermarks WHERE symbol LIKE ANY(%(p)s))"
            " + (SELECT count(*) FROM market.bars_intraday WHERE symbol LIKE ANY(%(p)s))",
            {"p": patterns},
        ).fetchone()[0]
    assert left == 0  # the benchmark deleted what it stored


def test_the_latency_part_in_two_worker_processes_shares_the_rate_limit(stack: Settings) -> None:
    """Two flows in processes of their own, a shard of the symbols each (what two workers of the
    ingest-shard deployment do): every symbol stored once, one page each, nothing refused by the
    plan's limit (the limit is shared through the Prefect server)."""
    os.environ.update(stack.prefect.client_environment())
    tag = _unused_tag(stack, ("L", "M"))
    names, naive_names = bench_symbols("L", tag, 4), bench_symbols("M", tag, 1)
    first, last = session_range(1)
    try:
        latency = under_latency(stack, names, naive_names, first, last, None, workers=2)
        assert latency["workers"] == 2 and latency["symbols"] == 4
        assert latency["bars"] == 4 * 390 and latency["requests"] == 4 and latency["refused_429"] == 0
        assert 0 < latency["utilization"] <= 1.0 and latency["naive_bars"] == 390
        assert latency["flow_seconds"] > 0  # the two processes' wall time, start-up included
    finally:
        delete_symbols(stack, names)
    with database_connection(stack) as conn:
        assert conn.execute("SELECT count(*) FROM ops.raw_pages WHERE symbol = ANY(%s)", (names,)).fetchone()[0] == 0
