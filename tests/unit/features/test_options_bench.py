"""`marketpipe bench options --json` at a tiny size through the real console script: every figure
the bench reports is there and positive, the targets are judged (no timing is asserted)."""

from __future__ import annotations

import json

from bench.options import render_table, run


def test_bench_options_reports_every_figure_in_json(marketpipe_cli) -> None:
    args = ("bench", "options", "--json", "--quotes", "3000", "--vollib-quotes", "300", "--repeat", "1")
    done = marketpipe_cli(*args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    assert report["quotes"] == 3000 and report["vollib_quotes"] == 300
    for key in (
        "solved",
        "threads",
        "kernel_s",
        "kernel_iv_per_s",
        "kernel_iv_per_s_one_thread",
        "vollib_s",
        "vollib_iv_per_s",
        "ratio_vs_vollib",
        "compared",
        "compared_determined",
        "max_rel_error",
        "compile_s",
    ):
        assert report[key] > 0, key
    assert len(report["load_avg_1m"]) == 2
    assert report["compile_source"] in {"jit", "cache"}
    assert set(report["targets"]) == {"ratio_vs_vollib", "kernel_iv_per_s_two_cores", "max_rel_error"}
    assert report["targets"]["max_rel_error"]["met"] is True  # accuracy does not depend on the load
    assert report["targets_met"] == all(t["met"] for t in report["targets"].values() if t["met"] is not None)


def test_one_thread_leaves_the_two_core_target_unjudged_and_the_table_says_so() -> None:
    report = run(quotes=500, vollib_quotes=50, repeat=1, threads=1)

    assert report["threads"] == 1
    assert report["targets"]["kernel_iv_per_s_two_cores"]["met"] is None
    assert "n/a (fewer than 2 threads)" in render_table(report)


def test_more_threads_than_numba_has_is_refused_in_one_line(marketpipe_cli) -> None:
    done = marketpipe_cli("bench", "options", "--quotes", "10", "--vollib-quotes", "5", "--threads", "999")
    assert done.returncode == 2
    assert "threads=999 is not allowed" in done.stderr and "Traceback" not in done.stderr
