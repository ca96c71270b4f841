"""The features flow's task runner from the compute settings, and what a Dask shard may carry."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.settings import ComputeSettings, Settings
from tasks.compute import dask_task_runner, public_overrides
from tasks.features import batches, features_shard_task, shard_parameters


def test_an_address_connects_to_that_cluster() -> None:
    runner = dask_task_runner(ComputeSettings(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert runner.address == "tcp://10.0.0.5:8786"
    assert runner.cluster_kwargs == {}


def test_no_address_starts_a_local_cluster_of_the_configured_size() -> None:
    runner = dask_task_runner(ComputeSettings(task_runner="dask", n_workers=3, threads_per_worker=2))
    assert runner.address is None
    assert runner.cluster_class == "distributed.LocalCluster"
    kwargs = runner.cluster_kwargs
    assert (kwargs["n_workers"], kwargs["threads_per_worker"], kwargs["processes"]) == (3, 2, True)
    assert kwargs["env"]["NUMBA_NUM_THREADS"] == "2"  # a worker's kernels use its threads only


@pytest.mark.parametrize(
    ("overrides", "key", "variable"),
    [
        ({"database": {"password": "hunter2"}}, "database.password", "MARKETPIPE_DATABASE__PASSWORD"),
        ({"lake": {"secret_key": "s3"}}, "lake.secret_key", "MARKETPIPE_LAKE__SECRET_KEY"),
        ({"vendors": {"polygon": {"api_key": "k"}}}, "vendors.polygon.api_key", "MARKETPIPE_VENDORS__POLYGON__API_KEY"),
        ({"prefect": {"auth_string": "a:b"}}, "prefect.auth_string", "MARKETPIPE_PREFECT__AUTH_STRING"),
    ],
)
def test_a_secret_in_the_overrides_is_refused_naming_where_it_belongs(overrides: dict, key: str, variable: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        public_overrides(overrides)
    message = str(err.value)
    assert key in message and variable in message and "environment" in message
    assert "hunter2" not in message


def test_shard_parameters_carry_symbols_dates_and_public_overrides_only() -> None:
    settings = Settings(
        database={"password": "db-pw-7781"},  # type: ignore[arg-type]
        lake={"secret_key": "lake-sk-9912"},  # type: ignore[arg-type]
    )
    overrides = {"features": {"sma": 10}, "database": {"host": "10.1.2.3"}}
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)

    parameters = shard_parameters("std1-abc", ["AAPL", "MSFT"], "1min", start, end, overrides)

    assert set(parameters) == {"feature_set", "symbols", "timeframe", "start", "end", "overrides"}
    assert parameters["overrides"] == overrides
    wire = pickle.dumps(parameters)
    for secret in settings.secret_values():
        assert secret.encode() not in wire


def test_batches_split_symbols_by_the_shard_size() -> None:
    assert batches(["A", "B", "C", "D", "E"], 2) == [["A", "B"], ["C", "D"], ["E"]]


def test_a_worker_whose_settings_give_another_feature_set_refuses_before_writing(isolated: Path) -> None:
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    # No database runs here: the shard must stop before it connects.
    with pytest.raises(ConfigurationError, match="std1-of-the-run") as err:
        features_shard_task.fn("std1-of-the-run", ["AAPL"], "1min", start, end, {"features": {"sma": 7}})
    assert "same features settings" in str(err.value)
