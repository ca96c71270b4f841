"""Intraday ingest: the pipeline's ingestion and processing of the intraday series, on trading
days only.

The schedule's cron knows weekdays; the NYSE calendar knows holidays. On a closed day the run ends
at once as a Completed state named "Skipped" whose message says why, so the UI shows a skipped run
rather than a run that fetched nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from core.calendar import closed_reason, new_york_date
from flows.pipeline_flow import pipeline_flow

SKIPPED = "Skipped"


@flow(name="intraday", flow_run_name="intraday-{mode}")
async def intraday_flow(
    stages: list[str] | None = None,
    mode: str = "batch",
    symbols: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    day: str | None = None,
) -> dict[str, Any] | State:
    """Run the pipeline (``stages``, default ingestion + processing) unless NYSE is closed on
    ``day`` (ISO date; default: today in New York)."""
    today = date.fromisoformat(day) if day else new_york_date(datetime.now(UTC))
    reason = closed_reason(today)
    if reason is not None:
        message = f"market closed: {reason}; nothing to ingest"
        get_run_logger().info("skipping the intraday run: %s", message)
        return Completed(name=SKIPPED, message=message, data={"skipped": True, "reason": reason})
    # The pipeline's body runs inside this run (``.fn``): its stage sub-flows hang under this run and
    # its metrics row is a top-level run, as a scheduled pipeline run's would be.
    return await pipeline_flow.fn(
        stages=stages or ["ingestion", "processing"], mode=mode, symbols=symbols, overrides=overrides
    )
