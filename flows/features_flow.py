"""The features stage as a Prefect flow: stored bars into the feature store, a task per symbol batch.

Features come from split- and dividend-adjusted bars (``adjustment="all"``: returns are not broken
by a split or an ex-dividend drop), with each bar's level features (SMA, ATR, OBV, ...) stored in
that bar's own as-traded units so a later action changes none of them, and from each symbol's first
stored bar, so a rerun over the same bars rewrites nothing (see :mod:`features.refresh`). Stored
bars include those tiered to the lake (read through the StorageRouter) unless
``storage.routing.cold_fallback_enabled`` is false; then features start from the first hot bar, and
the flow says so in its log. The feature set is the standard set with the windows of the
``features`` settings, plus the plugins those settings name and every plugin registered through the
``marketpipe.features`` entry points.
The symbol batches run in threads of this process or, with ``compute.task_runner=dask``, on a Dask
cluster (see :mod:`tasks.features` and :mod:`tasks.compute`).
Publishes a summary table artifact.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger

from features import feature_set_from_settings
from tasks.features import FeaturesSummary, feature_range, publish_features, refresh_batches, symbols_in_range
from tasks.runs import recorded_run


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
    with recorded_run("features", overrides) as run:
        start, end = feature_range(start_date, end_date if end_date is not None else date.today())
        feature_set = feature_set_from_settings(run.settings.features)
        if not run.settings.storage.routing.cold_fallback_enabled:
            get_run_logger().info(
                "storage.routing.cold_fallback_enabled is false: features warm up from each "
                "symbol's first bar in the hot store, not from bars tiered to the lake"
            )
        if symbols is None:
            symbols = symbols_in_range(run.resources, timeframe, start, end)
        done = await refresh_batches(run.resources, feature_set, sorted(set(symbols)), timeframe, start, end, overrides)
        summary = run.summary = FeaturesSummary(run.run_id, feature_set.version, timeframe, done)
        await publish_features(summary)
    return summary.to_dict()
