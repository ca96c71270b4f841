"""The features stage as a Prefect flow: stored bars into the feature store, a task per symbol batch.

Features come from split- and dividend-adjusted bars (``adjustment="all"``: returns are not broken
by a split or an ex-dividend drop) and from each symbol's first stored bar, so a rerun over the same
bars rewrites nothing (see :mod:`features.store`). Stored bars include those tiered to the lake
(read through the StorageRouter) unless ``storage.routing.cold_fallback_enabled`` is false; then
features start from the first hot bar, and the flow says so in its log. The feature set is the standard set with
the windows of the ``features`` settings, plus the plugins those settings name and every plugin
registered through the ``marketpipe.features`` entry points.
Publishes a summary table artifact.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from db.connect import database_connection
from core.settings import Settings, load_settings
from features import FeatureSet, feature_set_from_settings
from features.store import FeatureRefresh, refresh_features, symbols_with_bars
from pipeline.metrics import record_summary
from pipeline.request import parse_when
from storage.router import StorageRouter

SYMBOLS_PER_BATCH = 50  # one engine call per batch: large enough to amortise it, small enough to retry


def feature_range(start_date: Any, end_date: Any) -> tuple[datetime, datetime]:
    """``[start, end)`` from the flow's dates; a date-only ``end_date`` includes that whole day."""
    start, end = parse_when(start_date, "start_date"), parse_when(end_date, "end_date")
    date_only = (isinstance(end_date, date) and not isinstance(end_date, datetime)) or (
        isinstance(end_date, str) and len(end_date.strip()) == 10
    )
    return start, end + timedelta(days=1) if date_only else end


def batches(symbols: list[str], size: int = SYMBOLS_PER_BATCH) -> list[list[str]]:
    return [symbols[i : i + size] for i in range(0, len(symbols), size)]


@task(name="features-batch", cache_policy=NONE, task_run_name="features-{timeframe}-{symbols[0]}")
def features_batch_task(
    settings: Settings, feature_set: FeatureSet, symbols: list[str], timeframe: str, start: datetime, end: datetime
) -> FeatureRefresh:
    with database_connection(settings) as conn:
        if not settings.storage.routing.cold_fallback_enabled:
            return refresh_features(conn, feature_set, symbols, timeframe, start, end)
        with StorageRouter.connect(settings) as history:
            return refresh_features(conn, feature_set, symbols, timeframe, start, end, history=history)


@flow(name="features", flow_run_name="features-{timeframe}", log_prints=True)
async def features_flow(
    symbols: list[str] | None = None,
    timeframe: str = "1day",
    start_date: Any = "2000-01-01",
    end_date: Any = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute and store the features of ``symbols`` (default: every symbol with bars of
    ``timeframe`` in the range) for bars with ``start_date <= ts <= end_date``."""
    began = time.monotonic()
    settings = load_settings(overrides=overrides)
    start, end = feature_range(start_date, end_date if end_date is not None else date.today())
    feature_set = feature_set_from_settings(settings.features)
    if not settings.storage.routing.cold_fallback_enabled:
        get_run_logger().info("storage.routing.cold_fallback_enabled is false: features warm up from each "
                              "symbol's first bar in the hot store, not from bars tiered to the lake")  # fmt: skip
    if symbols is None:
        with database_connection(settings) as conn:
            symbols = symbols_with_bars(conn, timeframe, start, end)
    gate = asyncio.Semaphore(settings.collection.max_parallel_symbols)

    async def one(batch: list[str]) -> FeatureRefresh:
        async with gate:
            return await asyncio.to_thread(features_batch_task, settings, feature_set, batch, timeframe, start, end)

    done = await asyncio.gather(*(one(b) for b in batches(sorted(set(symbols)))))
    rows = [asdict(r) for r in done]
    if rows:
        description = f"feature set {feature_set.version}: rows per symbol batch"
        await acreate_table_artifact(rows, key="features-summary", description=description)
    out = {
        "feature_set": feature_set.version,
        "timeframe": timeframe,
        "batches": rows,
        "bars": sum(r.bars for r in done),
        "inserted": sum(r.inserted for r in done),
        "updated": sum(r.updated for r in done),
        "unchanged": sum(r.unchanged for r in done),
    }
    out["records_stored"] = out["inserted"] + out["updated"]
    get_run_logger().info("features %s: %d bars, %d rows inserted, %d updated", feature_set.version,
                          out["bars"], out["inserted"], out["updated"])  # fmt: skip
    record_summary(settings, {"run_id": str(flow_run.get_id()), **out, "seconds": time.monotonic() - began},
                   "features", parent_run_id=flow_run.parent_flow_run_id)  # fmt: skip
    return out
