"""The ingest benchmark runs end to end at a small size and reports every figure (marked slow:
`make test` skips it; the full-size figures come from ``python -m bench.ingest``)."""

from __future__ import annotations

import pytest

from bench.ingest import render_table, run
from core.settings import Settings
from db.connect import database_connection

pytestmark = pytest.mark.slow

RATES = ("end_to_end_bars_per_s", "writer_rows_per_s", "psql_copy_rows_per_s", "naive_bars_per_s", "plain_bars_per_s")


def test_small_benchmark_reports_positive_figures_and_cleans_up(stack: Settings) -> None:
    report = run(stack, symbols=3, sessions=2, naive_symbols=2)

    assert report["bars"] == 3 * 2 * 390
    assert all(report[key] > 0 for key in RATES)
    assert 0.0 <= report["prefect_overhead_fraction"] < 1.0
    assert report["end_to_end_vs_naive"] > 0 and report["writer_vs_psql"] > 0 and report["cpus"] >= 1
    assert set(report["targets"]) == {"writer_vs_psql", "end_to_end_vs_naive", "prefect_overhead_fraction"}
    assert all(isinstance(t["met"], bool) for t in report["targets"].values())
    assert "end-to-end" in render_table(report)
    patterns = [f"{prefix}{report['run_tag']}%" for prefix in "BPN"]  # the run's symbols
    with database_connection(stack) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM ops.raw_pages WHERE symbol LIKE ANY(%(p)s))"
            " + (SELECT count(*) FROM ops.watermarks WHERE symbol LIKE ANY(%(p)s))"
            " + (SELECT count(*) FROM market.bars_intraday WHERE symbol LIKE ANY(%(p)s))",
            {"p": patterns},
        ).fetchone()[0]
    assert left == 0  # the benchmark deleted what it stored
