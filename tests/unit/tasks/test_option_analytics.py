"""The option analytics recompute's shards: what a Dask shard carries, how shards run in threads,
and the run's summary."""

from __future__ import annotations

import asyncio
import pickle
import threading
from datetime import UTC, datetime

import pytest
from prefect import task

from core.errors import ConfigurationError
from core.settings import ComputeSettings, Settings
from tasks.compute import run_sharded
from tasks.option_analytics import OptionAnalyticsSummary, analytics_shard_parameters
from tasks.options import OptionAnalytics

START, END = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)


def test_shard_parameters_carry_underlyings_dates_and_public_overrides_only() -> None:
    settings = Settings(
        database={"password": "db-pw-5531"},  # type: ignore[arg-type]
        lake={"secret_key": "lake-sk-2208"},  # type: ignore[arg-type]
    )
    overrides = {"options": {"risk_free_rate": 0.03}, "database": {"host": "10.1.2.3"}}

    parameters = analytics_shard_parameters(["SPY", "QQQ"], START, END, overrides)

    assert parameters == {"underlyings": ["SPY", "QQQ"], "start": START, "end": END, "overrides": overrides}
    wire = pickle.dumps(parameters)
    for secret in settings.secret_values():
        assert secret.encode() not in wire


def test_a_secret_override_is_refused_before_any_shard_is_built() -> None:
    with pytest.raises(ConfigurationError, match=r"database\.password"):
        analytics_shard_parameters(["SPY"], START, END, {"database": {"password": "pw-8812"}})


@task(name="never-on-threads")
def _remote(shard: list[str]) -> list[str]:
    raise AssertionError("the threads runner submitted a Dask task")


def test_threads_run_every_shard_in_order_at_most_max_parallel_at_once() -> None:
    shards = [["A"], ["B", "C"], ["D"], ["E"], ["F"]]
    running, peak, lock = 0, 0, threading.Lock()
    release = threading.Barrier(2, timeout=10)  # two shards must be in flight together

    def in_thread(shard: list[str]) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if shard[0] in ("A", "B"):
            release.wait()
        with lock:
            running -= 1
        return "".join(shard).lower()

    def parameters(shard: list[str]) -> dict[str, object]:
        raise AssertionError("the threads runner built Dask parameters")

    done = asyncio.run(
        run_sharded(
            ComputeSettings(task_runner="threads"),
            shards,
            in_thread=in_thread,
            remote=_remote,
            parameters=parameters,
            max_parallel=2,
        )
    )

    assert done == ["a", "bc", "d", "e", "f"]
    assert peak == 2


def test_the_summary_adds_up_its_shards() -> None:
    shards = [
        OptionAnalytics(["SPY"], snapshots=2, quotes=10, quotes_updated=3, quotes_unchanged=7, features_updated=4),
        OptionAnalytics(["QQQ"], snapshots=1, quotes=5, quotes_unchanged=5, features_inserted=6, features_unchanged=1),
    ]
    summary = OptionAnalyticsSummary("run", START.isoformat(), END.isoformat(), shards).to_dict()
    assert (summary["snapshots"], summary["quotes"], summary["quotes_updated"]) == (3, 15, 3)
    assert (summary["features_inserted"], summary["features_updated"], summary["features_unchanged"]) == (6, 4, 1)
    assert [s["underlyings"] for s in summary["shards"]] == [["SPY"], ["QQQ"]]
    assert OptionAnalyticsSummary("run", "a", "b", shards).figures().records_stored == 3 + 6 + 4
