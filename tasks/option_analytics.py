"""Option analytics recomputed over STORED chain snapshots, as Prefect tasks: a task per shard of
``compute.symbols_per_shard`` underlyings, in threads of the flow run's process or, with
``compute.task_runner=dask``, as ``option-analytics-shard`` tasks on a Dask cluster
(:mod:`tasks.compute`, as the features flow's shards).

A shard reads its underlyings' stored quotes in the run's range, prices each snapshot again with
the ingest path's :func:`tasks.options.price_accepted` (spot, rate curve, dividend yield) and
upserts the quotes' IV and greeks and the chain features (options1): a shard run twice writes
nothing the second time. A Dask shard builds its settings from its worker's environment plus the
run's public overrides: its parameters carry underlyings, dates and overrides, never a secret."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from core.settings import load_settings
from pipeline.metrics import RunFigures
from storage.options import option_underlyings
from tasks.compute import public_overrides, run_sharded
from tasks.features import batches
from tasks.options import OptionAnalytics, recompute_option_analytics
from tasks.resources import RunResources


def underlyings_in_range(resources: RunResources, start: datetime, end: datetime) -> list[str]:
    """Every underlying with stored quotes in ``[start, end)``."""
    with resources.connect() as conn:
        return option_underlyings(conn, pd.Timestamp(start), pd.Timestamp(end))


def recompute_shard(resources: RunResources, underlyings: list[str], start: datetime, end: datetime) -> OptionAnalytics:
    with resources.connect() as conn:
        return recompute_option_analytics(
            conn, underlyings, pd.Timestamp(start), pd.Timestamp(end), resources.settings.options
        )


@task(name="option-analytics-batch", cache_policy=NONE, task_run_name="option-analytics-{underlyings[0]}")
def option_analytics_batch_task(
    resources: RunResources, underlyings: list[str], start: datetime, end: datetime
) -> OptionAnalytics:
    return recompute_shard(resources, underlyings, start, end)


def analytics_shard_parameters(
    underlyings: list[str], start: datetime, end: datetime, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The parameters of one ``option-analytics-shard`` task: no settings object, no connection, no secret."""
    return {"underlyings": underlyings, "start": start, "end": end, "overrides": public_overrides(overrides)}


@task(name="option-analytics-shard", cache_policy=NONE, task_run_name="option-analytics-shard-{underlyings[0]}")
def option_analytics_shard_task(
    underlyings: list[str], start: datetime, end: datetime, overrides: dict[str, Any]
) -> OptionAnalytics:
    """One shard on a Dask worker: settings from the worker's environment plus the run's public
    ``overrides``, then the same recompute as an ``option-analytics-batch`` task."""
    settings = load_settings(overrides=overrides)
    with RunResources.from_settings(settings) as resources:
        return recompute_shard(resources, underlyings, start, end)


async def recompute_batches(
    resources: RunResources,
    underlyings: list[str],
    start: datetime,
    end: datetime,
    overrides: Mapping[str, Any] | None = None,
) -> list[OptionAnalytics]:
    """A task per shard of ``compute.symbols_per_shard`` underlyings on the runner of the
    ``compute`` settings (:func:`tasks.compute.run_sharded`)."""
    settings = resources.settings
    return await run_sharded(
        settings.compute,
        batches(underlyings, settings.compute.symbols_per_shard),
        in_thread=lambda shard: option_analytics_batch_task(resources, shard, start, end),
        remote=option_analytics_shard_task,
        parameters=lambda shard: analytics_shard_parameters(shard, start, end, overrides),
        max_parallel=settings.collection.max_parallel_symbols,
    )


@dataclass
class OptionAnalyticsSummary:
    """What an ``option-analytics`` run did; :meth:`to_dict` is what the flow returns."""

    run_id: str
    start: str
    end: str
    shards: list[OptionAnalytics] = field(default_factory=list)
    seconds: float = 0.0

    def total(self, name: str) -> int:
        return sum(int(getattr(s, name)) for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        names = [f.name for f in fields(OptionAnalytics) if f.name != "underlyings"]
        return {
            "start": self.start,
            "end": self.end,
            "shards": [asdict(s) for s in self.shards],
            **{name: self.total(name) for name in names},
        }

    def record(self) -> dict[str, Any]:
        return {"run_id": self.run_id, **self.to_dict(), "seconds": self.seconds}

    def figures(self) -> RunFigures:
        """Quote and feature rows rewritten."""
        changed = self.total("quotes_updated") + self.total("features_inserted") + self.total("features_updated")
        return RunFigures(records_stored=changed)
