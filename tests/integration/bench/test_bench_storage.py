"""The storage benchmark end to end at a small size (marked slow: `make test` skips it; the full-size
figures come from ``marketpipe bench storage``)."""

from __future__ import annotations

import pytest

from bench.storage import render_table, run
from core.settings import Settings
from db.connect import database_connection

pytestmark = pytest.mark.slow

REQUIRED = (
    "latest_bar_p50_ms",
    "latest_bar_p95_ms",
    "top_movers_p50_ms",
    "top_movers_p95_ms",
    "tiering_mb_per_s",
    "lake_to_hot_bytes_ratio",
)


def test_small_benchmark_reports_sane_figures_and_cleans_up(stack: Settings) -> None:
    report = run(stack, symbols=200, sessions=5)

    assert all(isinstance(report[key], float) and report[key] > 0 for key in REQUIRED)
    assert report["latest_bar_p50_ms"] <= report["latest_bar_p95_ms"]
    assert report["top_movers_p50_ms"] <= report["top_movers_p95_ms"]
    assert 0.05 < report["lake_to_hot_bytes_ratio"] < 1.0  # Parquet is smaller than rows + indexes
    assert report["rows"] == report["tiering"]["rows"] == 200 * (4 * 390 + 210)  # the last session is a half day
    assert report["tiering"]["chunks"] == 5 and report["tiering"]["via"] == "storage.tiering.tier_chunk"
    assert report["scanner_rows"]["latest_bar"] == report["scanner_rows"]["latest_bar_lateral_ref"] == 200
    assert report["scanner_rows"]["latest_bar_distinct_on_ref"] == 200
    assert report["symbol_month_read"]["rows"] == 4 * 390 + 210
    assert report["load"]["bulk_method"] in ("generate_series", "copy")
    assert 0 <= report["load"]["trigger_overhead_fraction"] < 1
    assert "top_movers" in render_table(report)
    if report["timescaledb"]["edition"] == "timescale":  # the full edition's parts
        assert report["compression_ratio"] > 1 and report["compressed"]["results_identical"]
        assert all(report["compressed"]["results_identical"].values())
        assert 0 < report["compressed_latest_bar_p50_ms"] <= report["compressed_latest_bar_p95_ms"]
        assert 0 < report["compressed_top_movers_p50_ms"] <= report["compressed_top_movers_p95_ms"]
        assert report["ingest_with_policy_rows_per_s"] > 0 and report["ingest_without_policy_rows_per_s"] > 0
        assert report["tiering"]["read_compressed_chunks"] is True
    else:
        assert report["compressed"]["reason"] == "not available on the apache edition"
    with database_connection(stack, autocommit=True) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_storage_%')"
            " + (SELECT count(*) FROM ops.lake_files WHERE dataset = 'bench_storage_bars')"
        ).fetchone()[0]
    assert left == 0
