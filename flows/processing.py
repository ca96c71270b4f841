"""The processing stage as a Prefect flow: pending raw pages into the hot store, a task per symbol.

Publishes a summary table and a markdown quality report; a batch scoring below
``quality.min_quality_score`` logs a warning that says why. The work is :mod:`tasks.pending`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.utilities.annotations import quote

from tasks.aggregates import refresh_aggregates_task
from tasks.news import story_vectors_task
from tasks.pending import ProcessSummary, process_pending, publish_processing
from tasks.runs import recorded_run


@flow(name="process", flow_run_name="process-{source}", log_prints=True)
async def process_flow(
    source: str = "polygon",
    symbols: list[str] | None = None,
    timeframe: str | None = None,
    data_type: str = "market_data",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store every pending raw page of ``source`` (optionally only ``symbols``/``timeframe``)."""
    with recorded_run("process", overrides) as run:
        batch = await process_pending(run.resources, source, symbols, timeframe, data_type)
        await publish_processing(batch)
        if data_type == "market_data":  # the minutes this run (or a killed one) changed
            await refresh_aggregates_task(quote(run.resources))
        if data_type == "news":  # story vectors a killed run (or a failed embedding) left owed
            await story_vectors_task(quote(run.resources))
        run.summary = ProcessSummary.of(run.run_id, batch)
    return run.summary.to_dict()
