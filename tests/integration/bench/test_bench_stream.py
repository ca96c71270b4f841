"""`marketpipe bench stream --json` end to end at a tiny size through the real CLI: every key the
report promises, nothing lost on the product path, positive rates. No timing assertions: the
figures come from a full run on an idle machine."""

from __future__ import annotations

import json

from bench.stream import DATABASE, render_table, required_keys
from core.settings import Settings
from stack.scratch import database_exists

MESSAGES = 3000
LATENCY_MESSAGES = 2000
NAIVE_MESSAGES = 300


def test_tiny_stream_benchmark_reports_every_figure_and_loses_nothing(stack: Settings, marketpipe_cli) -> None:
    result = marketpipe_cli(
        "bench",
        "stream",
        "--messages",
        str(MESSAGES),
        "--latency-messages",
        str(LATENCY_MESSAGES),
        "--naive-messages",
        str(NAIVE_MESSAGES),
        "--seconds",
        "30",
        "--json",
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert set(required_keys()) <= set(report)
    sustained, latency, naive = report["sustained"], report["latency"], report["naive"]
    assert sustained["sent"] >= MESSAGES and sustained["committed_rows"] == sustained["received"] == sustained["sent"]
    assert latency["sent"] >= LATENCY_MESSAGES and latency["committed_rows"] == latency["sent"]
    assert latency["trades_timed"] == latency["committed_rows"]
    assert naive["messages"] == naive["committed_rows"] == NAIVE_MESSAGES
    assert report["msgs_per_s"] > 0 and report["naive_msgs_per_s"] > 0 and report["consumer_cpu_s"] > 0
    assert report["ratio_vs_naive"] > 0 and 0 < report["p50_ms"] <= report["p99_ms"]
    assert report["dropped"] == 0
    assert set(report["targets"]) == {"msgs_per_cpu_s", "p99_ms", "ratio_vs_naive"}
    assert all(isinstance(t["met"], bool) for t in report["targets"].values())
    assert report["machine"]["cpus"] >= 1 and set(report["load_average"]) >= {"start", "end"}
    assert "naive" in render_table(report)
    assert not database_exists(stack, DATABASE)  # dropped without --keep
