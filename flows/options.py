"""Option chain snapshots of the universe, every 15 minutes in session hours (the
``options/options-snapshots`` deployment): the ``ingest`` flow with ``data_type="options"``.
And ``option-analytics``: our IV, greeks and chain features recomputed over stored snapshots,
sharded by underlying on threads or a Dask cluster (:mod:`tasks.option_analytics`).

A snapshot is the vendor's chain as it is now, so the run has no date range: it names today's New
York date. On a day NYSE is closed the run ends at once as a Completed state named "Skipped" that
says why (the schedule's cron knows weekdays, the calendar knows holidays).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from core.calendar import closed_reason, new_york_date
from core.settings import load_settings
from flows.ingestion import ingest_flow
from tasks.features import feature_range
from tasks.option_analytics import OptionAnalyticsSummary, recompute_batches, underlyings_in_range
from tasks.runs import recorded_run

SKIPPED = "Skipped"


@flow(name="options", flow_run_name="options-snapshots")
async def options_flow(
    symbols: list[str] | None = None,
    source: str = "polygon",
    day: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any] | State:
    """Snapshot the chains of ``symbols`` (default: the settings' ``pipeline.symbols``) from
    ``source`` unless NYSE is closed on ``day`` (ISO date; default: today in New York)."""
    today = date.fromisoformat(day) if day else new_york_date(datetime.now(UTC))
    reason = closed_reason(today)
    if reason is not None:
        message = f"market closed: {reason}; no option chains to snapshot"
        get_run_logger().info("skipping the options run: %s", message)
        return Completed(name=SKIPPED, message=message, data={"skipped": True, "reason": reason})
    universe = symbols or list(load_settings(overrides=overrides).pipeline.symbols)
    return await ingest_flow(
        symbols=universe,
        start_date=today.isoformat(),
        end_date=today.isoformat(),
        data_type="options",
        source=source,
        overrides=overrides,
    )


@flow(name="option-analytics", flow_run_name="option-analytics")
async def options_analytics_flow(
    symbols: list[str] | None = None,
    start_date: Any = "2000-01-01",
    end_date: Any = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Recompute our IV, greeks and chain features of the stored snapshots of ``symbols`` (default:
    every underlying with quotes in the range) with ``start_date <= ts <= end_date`` (a date-only
    end includes its day; default: today), a task per ``compute.symbols_per_shard`` underlyings on
    the ``compute.task_runner``; a rerun changes nothing."""
    with recorded_run("option-analytics", overrides) as run:
        start, end = feature_range(start_date, end_date if end_date is not None else date.today())
        if symbols is None:
            symbols = underlyings_in_range(run.resources, start, end)
        shards = await recompute_batches(run.resources, sorted(set(symbols)), start, end, overrides)
        summary = run.summary = OptionAnalyticsSummary(run.run_id, start.isoformat(), end.isoformat(), shards)
        get_run_logger().info(
            "option analytics: %d snapshots, %d quotes (%d rewritten), %d feature values written",
            summary.total("snapshots"),
            summary.total("quotes"),
            summary.total("quotes_updated"),
            summary.total("features_inserted") + summary.total("features_updated"),
        )
    return summary.to_dict()
