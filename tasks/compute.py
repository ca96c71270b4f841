"""Where a flow's shards run (features, option analytics): the task runner the ``compute`` settings name.

``threads`` keeps the shards in the flow run's process (:func:`run_sharded`);
``dask`` submits them through prefect-dask's :class:`~prefect_dask.DaskTaskRunner`, to the
scheduler at ``compute.dask_address`` or to a ``distributed.LocalCluster`` of ``n_workers``
processes the run starts and stops.

A Dask worker is another machine's process: like a Prefect worker it builds its settings (and
secrets) from its own environment. What travels in a task's parameters is pickled, kept by the
scheduler and shown by Prefect's UI, so it carries symbols, dates and the run's overrides only
when those hold no secret (:func:`public_overrides`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from prefect import Task
from prefect_dask import DaskTaskRunner

from core.errors import ConfigurationError
from core.settings import ENV_NESTED_DELIMITER, ENV_PREFIX, ComputeSettings

SECRET_WORDS = ("password", "secret", "api_key", "token", "auth_string")

S = TypeVar("S")
T = TypeVar("T")


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


async def run_sharded(
    compute: ComputeSettings,
    shards: Sequence[S],
    *,
    in_thread: Callable[[S], T],
    remote: Task[..., T],
    parameters: Callable[[S], dict[str, Any]],
    max_parallel: int,
) -> list[T]:
    """One result per shard, in order: ``in_thread(shard)`` in threads of this process, at most
    ``max_parallel`` at once (``compute.task_runner=threads``), or the Prefect task ``remote`` with
    ``parameters(shard)`` on the Dask cluster of :func:`dask_task_runner` (``dask``)."""
    if compute.task_runner == "dask":
        return await asyncio.to_thread(run_on_dask, compute, remote, [parameters(s) for s in shards])
    gate = asyncio.Semaphore(max_parallel)

    async def one(shard: S) -> T:
        async with gate:
            return await asyncio.to_thread(in_thread, shard)

    return list(await asyncio.gather(*(one(s) for s in shards)))


def run_on_dask(compute: ComputeSettings, remote: Task[..., T], parameters: Sequence[dict[str, Any]]) -> list[T]:
    """``remote`` once per parameter set through prefect-dask, results in order; the cluster reruns
    the task of a worker that dies (tasks that upsert make that rerun write nothing twice)."""
    with dask_task_runner(compute) as runner:
        futures = [runner.submit(remote, p) for p in parameters]
        return [future.result() for future in futures]


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
