"""The main job through the command line (in process, tests.support.cli): a run, a second run that
finds nothing new, then the metrics and health commands."""

from __future__ import annotations

import json

from core.settings import Settings
from db.connect import database_connection
from tests.support.cli import run_cli

BARS = "[{timeframe: 1day, lookback_days: 30}, {timeframe: 1min, lookback_days: 4}]"
SMALL = ["--set", "pipeline.symbols=[MJA, MJB]", "--set", f"pipeline.bars={BARS}"]


def test_run_twice_then_metrics_and_health(stack: Settings) -> None:
    first = run_cli(*SMALL, "run")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "pipeline (ingestion+processing+historical+features): 2 symbols from polygon" in first.stdout
    assert "features: " in first.stdout and "rows new or changed" in first.stdout
    assert "records fetched" in first.stdout and "quality score: 1.000" in first.stdout
    assert f"http://127.0.0.1:{stack.prefect.port}/runs" in first.stdout
    with database_connection(stack) as conn:
        stored = conn.execute("SELECT count(*) FROM market.bars WHERE symbol IN ('MJA', 'MJB')").fetchone()[0]
    assert stored > 0

    second = run_cli(*SMALL, "run")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing new to fetch" in second.stdout
    with database_connection(stack) as conn:
        assert conn.execute("SELECT count(*) FROM market.bars WHERE symbol IN ('MJA', 'MJB')").fetchone()[0] == stored

    exported = run_cli("features", "export", "--symbols", "MJA", "--start", "2000-01-01", "--end", "2100-01-01")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert f"s3://{stack.lake.bucket}/features/1day/" in exported.stdout
    assert exported.stdout.strip().endswith(".parquet")

    metrics = run_cli("metrics")
    assert metrics.returncode == 0, metrics.stderr
    assert "pipeline" in metrics.stdout and "last 24 h:" in metrics.stdout

    health = run_cli("health", "--json")
    report = json.loads(health.stdout)
    assert health.returncode == (0 if report["healthy"] else 1)
    assert {"postgres", "lake", "prefect"} <= set(report["components"])


def test_streaming_modes_are_refused_clearly() -> None:
    result = run_cli("run", "--mode", "real_time")
    assert result.returncode == 2
    assert "not available yet" in result.stderr and "Traceback" not in result.stderr
