"""Where the features flow's shards run: the task runner the ``compute`` settings name.

``threads`` keeps the shards in the flow run's process (:func:`tasks.features.refresh_batches`);
``dask`` submits them through prefect-dask's :class:`~prefect_dask.DaskTaskRunner`, to the
scheduler at ``compute.dask_address`` or to a ``distributed.LocalCluster`` of ``n_workers``
processes the run starts and stops.

A Dask worker is another machine's process: like a Prefect worker it builds its settings (and
secrets) from its own environment. What travels in a task's parameters is pickled, kept by the
scheduler and shown by Prefect's UI, so it carries symbols, dates and the run's overrides only
when those hold no secret (:func:`public_overrides`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect_dask import DaskTaskRunner

from core.errors import ConfigurationError
from core.settings import ENV_NESTED_DELIMITER, ENV_PREFIX, ComputeSettings

SECRET_WORDS = ("password", "secret", "api_key", "token", "auth_string")


def dask_task_runner(compute: ComputeSettings) -> DaskTaskRunner:
    """The DaskTaskRunner of ``compute``: the existing cluster at ``dask_address``, else a
    LocalCluster of ``n_workers`` processes of ``threads_per_worker`` threads each, whose numba
    kernels use as many threads as their worker has (not every core of the host each)."""
    if compute.dask_address:
        return DaskTaskRunner(address=compute.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": compute.n_workers,
            "threads_per_worker": compute.threads_per_worker,
            "processes": True,
            "dashboard_address": None,
            "env": {"NUMBA_NUM_THREADS": str(compute.threads_per_worker)},
        },
    )


def public_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``overrides`` as a Dask task may carry them; refuses any that sets a secret, saying where
    the worker reads it from instead."""
    found = [key for key in _keys(overrides or {}) if any(word in key.lower() for word in SECRET_WORDS)]
    if found:
        names = ", ".join(
            f"{key} ({ENV_PREFIX}{ENV_NESTED_DELIMITER.join(key.upper().split('.'))})" for key in sorted(found)
        )
        raise ConfigurationError(
            f"overrides set the secret(s) {names}, which with compute.task_runner=dask would travel to the "
            "Dask workers as task parameters: set them in each worker's environment (or its .env) instead"
        )
    return dict(overrides or {})


def _keys(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        keys.extend(_keys(value, path + ".") if isinstance(value, Mapping) else [path])
    return keys
