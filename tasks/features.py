"""The features stage as Prefect tasks: the flow's date range, symbol batches, a
``features-<timeframe>-<first symbol>`` task per batch (a refresh of :mod:`features.refresh`),
and the stage's summary.

Batches run in threads of the flow run's process, or, with ``compute.task_runner=dask``, as
``features-shard`` tasks on a Dask cluster (:mod:`tasks.compute`): each shard builds its settings
from its worker's environment, reads its symbols' history through the StorageRouter (the lake's
Parquet and the hot store's recent rows), computes with the numba kernels on the worker and
writes with the feature store's merge upsert, so a shard run twice (its worker died) writes
each row once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NONE

from core.errors import ConfigurationError
from core.settings import load_settings
from features import FeatureSet, feature_set_from_settings
from features.refresh import FeatureRefresh, refresh_features
from pipeline.metrics import RunFigures
from pipeline.request import parse_when
from storage.hot import symbols_with_bars
from tasks.compute import public_overrides, run_sharded
from tasks.resources import RunResources


def feature_range(start_date: Any, end_date: Any) -> tuple[datetime, datetime]:
    """``[start, end)`` from the flow's dates; a date-only ``end_date`` includes that whole day."""
    start, end = parse_when(start_date, "start_date"), parse_when(end_date, "end_date")
    date_only = (isinstance(end_date, date) and not isinstance(end_date, datetime)) or (
        isinstance(end_date, str) and len(end_date.strip()) == 10
    )
    return start, end + timedelta(days=1) if date_only else end


def batches(symbols: list[str], size: int) -> list[list[str]]:
    return [symbols[i : i + size] for i in range(0, len(symbols), size)]


def symbols_in_range(resources: RunResources, timeframe: str, start: datetime, end: datetime) -> list[str]:
    """Every symbol with bars of ``timeframe`` in ``[start, end)``."""
    with resources.connect() as conn:
        return symbols_with_bars(conn, timeframe, start, end)


def refresh_batch(
    resources: RunResources,
    feature_set: FeatureSet,
    symbols: list[str],
    timeframe: str,
    start: datetime,
    end: datetime,
) -> FeatureRefresh:
    """One batch's features; its history read through the StorageRouter (hot and lake) unless
    ``storage.routing.cold_fallback_enabled`` is false."""
    with resources.connect() as conn:
        if not resources.settings.storage.routing.cold_fallback_enabled:
            return refresh_features(conn, feature_set, symbols, timeframe, start, end)
        with resources.router() as history:
            return refresh_features(conn, feature_set, symbols, timeframe, start, end, history=history)


@task(name="features-batch", cache_policy=NONE, task_run_name="features-{timeframe}-{symbols[0]}")
def features_batch_task(
    resources: RunResources,
    feature_set: FeatureSet,
    symbols: list[str],
    timeframe: str,
    start: datetime,
    end: datetime,
) -> FeatureRefresh:
    return refresh_batch(resources, feature_set, symbols, timeframe, start, end)


async def refresh_batches(
    resources: RunResources,
    feature_set: FeatureSet,
    symbols: list[str],
    timeframe: str,
    start: datetime,
    end: datetime,
    overrides: Mapping[str, Any] | None = None,
) -> list[FeatureRefresh]:
    """A task per batch of ``compute.symbols_per_shard`` symbols: ``features-batch`` in threads, at
    most ``collection.max_parallel_symbols`` at once, or ``features-shard`` on a Dask cluster
    (``compute.task_runner=dask``; ``overrides`` are the run's, which the shards apply on top of
    their worker's environment)."""
    settings = resources.settings

    def in_thread(batch: list[str]) -> FeatureRefresh:
        return features_batch_task(resources, feature_set, batch, timeframe, start, end)

    def parameters(batch: list[str]) -> dict[str, Any]:
        return shard_parameters(feature_set.version, batch, timeframe, start, end, overrides)

    return await run_sharded(
        settings.compute,
        batches(symbols, settings.compute.symbols_per_shard),
        in_thread=in_thread,
        remote=features_shard_task,
        parameters=parameters,
        max_parallel=settings.collection.max_parallel_symbols,
    )


def shard_parameters(
    feature_set: str,
    symbols: list[str],
    timeframe: str,
    start: datetime,
    end: datetime,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The parameters of one ``features-shard`` task: no settings object, no connection, no secret."""
    return {
        "feature_set": feature_set,
        "symbols": symbols,
        "timeframe": timeframe,
        "start": start,
        "end": end,
        "overrides": public_overrides(overrides),
    }


@task(name="features-shard", cache_policy=NONE, task_run_name="features-{timeframe}-{symbols[0]}")
def features_shard_task(
    feature_set: str, symbols: list[str], timeframe: str, start: datetime, end: datetime, overrides: dict[str, Any]
) -> FeatureRefresh:
    """One shard on a Dask worker: settings from the worker's environment plus the run's public
    ``overrides``, then the same refresh as a ``features-batch`` task; refused before it writes
    anything when the worker's settings give another feature set (windows, plugins) than the run's."""
    settings = load_settings(overrides=overrides)
    computed = feature_set_from_settings(settings.features)
    if computed.version != feature_set:
        raise ConfigurationError(
            f"this Dask worker's settings give feature set {computed.version}, the run computes {feature_set}: "
            "give the workers the same features settings (and plugins) as the flow run's"
        )
    with RunResources.from_settings(settings) as resources:
        return refresh_batch(resources, computed, symbols, timeframe, start, end)


async def publish_features(summary: FeaturesSummary) -> None:
    """The ``features-summary`` table (rows per symbol batch), and the run's log line."""
    if summary.batches:
        description = f"feature set {summary.feature_set}: rows per symbol batch"
        await acreate_table_artifact(
            [asdict(r) for r in summary.batches], key="features-summary", description=description
        )
    get_run_logger().info(
        "features %s: %d bars, %d rows inserted, %d updated",
        summary.feature_set,
        summary.bars,
        summary.inserted,
        summary.updated,
    )


@dataclass
class FeaturesSummary:
    """What a ``features`` run did; :meth:`to_dict` is what the flow returns."""

    run_id: str
    feature_set: str
    timeframe: str
    batches: list[FeatureRefresh] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, summary: Mapping[str, Any]) -> FeaturesSummary:
        """A ``features`` sub-flow's result, typed again."""
        return cls(
            str(summary.get("run_id", "")),
            summary["feature_set"],
            summary["timeframe"],
            [FeatureRefresh(**b) for b in summary["batches"]],
        )

    @property
    def bars(self) -> int:
        return sum(r.bars for r in self.batches)

    @property
    def inserted(self) -> int:
        return sum(r.inserted for r in self.batches)

    @property
    def updated(self) -> int:
        return sum(r.updated for r in self.batches)

    @property
    def unchanged(self) -> int:
        return sum(r.unchanged for r in self.batches)

    @property
    def records_stored(self) -> int:
        return self.inserted + self.updated

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_set": self.feature_set,
            "timeframe": self.timeframe,
            "batches": [asdict(r) for r in self.batches],
            "bars": self.bars,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "records_stored": self.records_stored,
        }

    def record(self) -> dict[str, Any]:
        return {"run_id": self.run_id, **self.to_dict(), "seconds": self.seconds}

    def figures(self) -> RunFigures:
        """Feature rows stored; no per-symbol bar figures (the feature rows are not bars)."""
        return RunFigures(records_stored=self.records_stored)
