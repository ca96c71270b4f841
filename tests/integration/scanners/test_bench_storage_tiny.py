"""bench/storage.py at a tiny size in the normal suite: every part runs and cleans up after itself."""

from __future__ import annotations

import pytest

from bench.storage import run
from core.errors import RequestError
from core.settings import Settings
from db.connect import database_connection
from stack.scratch import database_exists
from storage.lake import Lake


def test_tiny_benchmark_runs_every_part_and_leaves_nothing_behind(stack: Settings) -> None:
    report = run(stack, symbols=3, sessions=4, repeats=1)

    assert report["rows"] == report["tiering"]["rows"] == 3 * (3 * 390 + 210)
    assert report["scanner_rows"]["latest_bar"] == 3
    assert report["lake_to_hot_bytes_ratio"] > 0 and report["tiering_mb_per_s"] > 0
    assert report["symbol_month_read"]["rows"] == 3 * 390 + 210
    assert report["timescaledb"]["edition"] in ("timescale", "apache")
    assert report["load_average_1min"] >= 0 and set(report["load_averages"]) >= {"start", "scanners", "end"}
    with database_connection(stack, autocommit=True) as conn:
        schemas = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_storage_%'").fetchone()[0]
        manifest = conn.execute("SELECT count(*) FROM ops.lake_files WHERE dataset = 'bench_storage_bars'").fetchone()[
            0
        ]
    assert (schemas, manifest) == (0, 0)
    assert not database_exists(stack, "bench_storage")  # the throwaway database the bench migrated
    assert not [o.key for o in Lake.from_settings(stack.lake).list("cold/bench-storage-")]


def test_kept_bars_are_measured_again_by_reuse_which_then_cleans_up(stack: Settings) -> None:
    kept = run(stack, symbols=3, sessions=4, repeats=1, skip_tiering=True, keep=True)
    with pytest.raises(RequestError, match="has 3 symbols, not 4"):
        run(stack, symbols=4, sessions=4, repeats=1, reuse=True, keep=True)
    again = run(stack, symbols=3, sessions=4, repeats=1, reuse=True)

    assert kept["tiering"] is None and kept["symbol_month_read"]["cold_ms"] is None and kept["load"]
    assert again["rows"] == kept["rows"] == 3 * (3 * 390 + 210) and again["load"] == {}
    for name in ("top_movers", "volume_spikes", "opening_gaps"):  # the rewritten scanners and 0011's agree
        assert again["scanner_rows"][name] == again["scanner_rows"][f"{name}_0011_ref"]
    with database_connection(stack, autocommit=True) as conn:
        schemas = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_storage_%'").fetchone()[0]
    assert schemas == 0
    assert not database_exists(stack, "bench_storage")
    with pytest.raises(RequestError, match="run once with --keep first"):
        run(stack, symbols=3, sessions=4, repeats=1, reuse=True)


def test_tiny_benchmark_compresses_and_scans_compressed_chunks_with_the_same_results(stack: Settings) -> None:
    report = run(stack, symbols=3, sessions=4, repeats=1, skip_tiering=True)

    compressed = report["compressed"]
    if report["timescaledb"]["edition"] != "timescale":
        assert compressed == {"available": False, "reason": "not available on the apache edition"}
        assert report["compression_ratio"] is None and report["targets"]["compression_ratio"]["met"] is None
        return
    bars = compressed["tables"]["market.bars_intraday_store"]
    assert bars["hypertable_bytes_after"] < bars["hypertable_bytes_before"] and report["compression_ratio"] > 1
    assert bars["compressed_chunks"] == bars["chunks"] == 4 and bars["rows"] == report["rows"]
    assert set(compressed["scanner_latency_ms"]) == {n for n in report["scanner_latency_ms"] if not n.endswith("_ref")}
    assert compressed["results_identical"] and all(compressed["results_identical"].values())
    assert compressed["scanner_rows"]["latest_bar"] == 3
    assert report["compressed_top_movers_p95_ms"] > 0 and report["symbol_month_read"]["compressed_ms"] > 0
    ingest = compressed["ingest"]
    assert [r["policy"] for r in ingest["runs"]] == [False, True, True, False]
    assert all(r["rows"] == 3 * 390 for r in ingest["runs"])
    assert report["ingest_policy_ratio"] > 0
    jobs = [r["policy_job"] for r in ingest["runs"] if r["policy"]]  # the policy's job ran during each
    assert [(j["finished"], j["compressed_oldest_chunk"]) for j in jobs] == [(True, True)] * 2


def test_skip_compression_leaves_the_compression_parts_out(stack: Settings) -> None:
    report = run(stack, symbols=3, sessions=4, repeats=1, skip_tiering=True, skip_compression=True)

    assert report["compressed"]["available"] is False and report["compression_ratio"] is None
    assert report["ingest_policy_ratio"] is None and report["targets"]["ingest_policy_ratio"]["met"] is None
