"""`marketpipe bench replica`, tiny: every figure the full run prints, on the test's primary and
replica (the full run is in the README, measured on an idle machine)."""

from __future__ import annotations

import json

from bench.replica import render_table, run
from tests.support.replica import ReplicaStack, cli


def test_the_replica_benchmark_measures_both_sides_idle_and_under_the_stream(replica_stack: ReplicaStack) -> None:
    report = run(replica_stack.settings, symbols=20, sessions=3, repeats=2)

    assert set(report["scanners"]) >= {"latest_bar", "top_movers", "volume_spikes", "opening_gaps"}
    for name, phases in report["scanners"].items():
        for phase in ("idle", "loaded"):
            primary, replica = phases[phase]["primary"], phases[phase]["replica"]
            assert 0 < primary["p50_ms"] <= primary["p95_ms"] and 0 < replica["p50_ms"] <= replica["p95_ms"], name
        # the replica had replayed the loaded market: both sides return the same rows
        assert phases["idle"]["primary"]["rows"] == phases["idle"]["replica"]["rows"], name
    assert report["scanners"]["latest_bar"]["idle"]["replica"]["rows"] == 20
    assert report["stream"]["report"]["trades"] > 0 and report["stream"]["rate"] == 20_000
    assert report["stream"]["trades_committed"] >= 0 and report["stream"]["seconds"] > 0
    assert report["replica_lag"]["samples"] >= 1
    assert set(report["load_average"]) == {"start", "idle", "loaded", "end"}
    assert "load average" in render_table(report)


def test_the_cli_refuses_to_run_without_a_replica(replica_stack: ReplicaStack) -> None:
    env = {**replica_stack.env, "MARKETPIPE_DATABASE__READ_REPLICA__PORT": "1"}
    result = cli(env, "bench", "replica", "--symbols", "5", "--sessions", "3", "--json")

    assert result.returncode != 0
    assert "needs the read replica at 127.0.0.1:1" in result.stderr and "marketpipe up --replica" in result.stderr
    assert "Traceback" not in result.stderr
    assert not result.stdout.strip() or json.loads(result.stdout) is None
