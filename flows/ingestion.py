"""The ``ingest`` flow: vendor pages into the raw zone (the ingestion stage), then, unless told
otherwise, into the hot store (the processing stage) for the same symbols.

The request is checked before anything is fetched; ``source`` is any source the run's settings
know (built-ins, ``marketpipe.sources`` entry points, plugins in the ``sources:`` setting).
Incremental runs resume each symbol after its committed watermark, so a second run fetches only
what is new. Symbols run in waves of
``collection.batch_size``, at most ``collection.max_parallel_symbols`` at once; each wave updates the
run's progress artifact. A failing symbol is recorded (dead letter + summary row) and the others
complete.

Each wave is one task run (``ingest-AAPL..MSFT``; each symbol's outcome is in the
``ingestion-summary`` table). With ``process`` each symbol is collected, then processed at once
with the frames the collection parsed, so one symbol's validation and writes overlap the next
one's download and the pages just stored are not read back and parsed again. Without it the wave
only collects (``collect-AAPL..MSFT``: the pipeline's ingestion stage; its processing stage runs
``process-<symbol>`` tasks). Symbols of the request that fetched nothing but still have pending
pages (an earlier run stopped between the stages) are processed afterwards from the raw zone.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from pipeline.plan import TEXT_DATA_TYPES
from pipeline.request import parse_ingest_request
from sources.factory import market_data_sources
from tasks.aggregates import refresh_aggregates_task
from tasks.fundamentals import EARNINGS_DATASETS, earnings_features_task
from tasks.ingestion import (
    IngestSummary,
    collect_all,
    incremental_starts,
    process_collected,
    publish_collection_summary,
)
from tasks.news import news_features_task, story_vectors_task
from tasks.pending import publish_processing
from tasks.runs import recorded_run


def run_name() -> str:
    """ingest-polygon-1min-2026-11-20 (bars: source, timeframe, the range's last day) or
    ingest-polygon-corporate-actions-2026-11-20 (other data types)."""
    params = flow_run.get_parameters()
    return ingest_run_name(
        params.get("source", "polygon"),
        params.get("data_type", "market_data"),
        params.get("timeframe", "1day"),
        params.get("end_date"),
    )


def ingest_run_name(source: str, data_type: str, timeframe: str, end_date: object) -> str:
    end = str(end_date or "")[:10] or "latest"
    what = timeframe if data_type == "market_data" else data_type.replace("_", "-")
    return f"ingest-{source}-{what}-{end}"


@flow(name="ingest", flow_run_name=run_name, log_prints=True)
async def ingest_flow(
    symbols: list[str],
    start_date: str,
    end_date: str,
    data_type: str = "market_data",
    timeframe: str = "1day",
    source: str = "polygon",
    process: bool = True,
    incremental: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect ``symbols`` from ``source`` into the raw zone and (``process``) the hot store.

    ``incremental`` resumes every symbol after its watermark; ``False`` refetches the whole range
    (backfills, corrections: the upserts keep it exact).
    """
    with recorded_run("ingest", overrides) as run:
        request = parse_ingest_request(
            data_type=data_type,
            symbols=symbols,
            start_date=start_date,
            end_date=end_date,
            timeframe=timeframe,
            source=source,
            known_sources=market_data_sources(run.settings),
        )
        starts = incremental_starts(run.resources, request) if incremental else None
        runs = await collect_all(run.resources, request, run.run_id, starts, process=process)
        summary = IngestSummary.of(run.run_id, request, runs, starts)
        await publish_collection_summary(request, summary)
        if process:
            batch = await process_collected(run.resources, request, runs)
            await publish_processing(batch)
            if request.data_type == "market_data":  # the minutes this run (or a killed one) changed
                await refresh_aggregates_task(quote(run.resources))
            if request.data_type in TEXT_DATA_TYPES:  # sentiment features of the symbols' daily bars
                await news_features_task(quote(run.resources), quote(request))
            if request.data_type == "news":  # vectors a killed run (or a failed embedding) left owed
                await story_vectors_task(quote(run.resources))
            if request.data_type in EARNINGS_DATASETS:  # surprise and days to earnings of daily bars
                await earnings_features_task(quote(run.resources), quote(request))
            summary.with_processing(batch)
        run.summary = summary
    return summary.to_dict()
