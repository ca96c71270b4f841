"""``run_pipeline``: the seed's stages as sub-flows, any subset, in the seed's order.

- ingestion: every configured series (``pipeline.*`` settings), incrementally, into the raw zone;
- processing: every pending raw page into the hot store (corporate actions first);
- historical: gap repair over each series' window, refetching missing sessions in chunks;
- features: the numba feature set over each series' window, into the feature store.

Modes: ``batch`` runs the stages once. ``real_time`` and ``hybrid`` need the streaming work,
which has not landed: they are refused with a clear error before anything runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, tags

from flows.features_flow import features_flow
from flows.historical import historical_flow
from flows.ingestion import ingest_flow
from flows.processing import process_flow
from pipeline.plan import pipeline_jobs
from pipeline.request import check_source, parse_symbols
from sources.factory import market_data_sources
from tasks.features import FeaturesSummary
from tasks.historical import HistoricalSummary
from tasks.ingestion import IngestSummary
from tasks.pending import ProcessSummary
from tasks.pipeline import PipelineSummary, parse_stages, run_tags
from tasks.runs import recorded_run


@flow(name="pipeline", flow_run_name="pipeline-{mode}")
async def pipeline_flow(
    stages: list[str] | None = None,
    mode: str = "batch",
    symbols: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    chosen = parse_stages(stages, mode)
    with recorded_run("pipeline", overrides) as run:
        universe = list(parse_symbols(symbols)) if symbols else None
        jobs = pipeline_jobs(run.settings.pipeline, datetime.now(UTC).date(), universe)
        bar_jobs = [j for j in jobs if j.data_type == "market_data"]
        source = check_source(run.settings.pipeline.source, market_data_sources(run.settings))  # plugins too
        summary = run.summary = PipelineSummary(run.run_id, chosen, mode)

        if "ingestion" in chosen:
            for job in jobs:
                with tags(*run_tags(source, job.data_type, job.timeframe)):
                    summary.ingestion.append(
                        IngestSummary.from_dict(
                            await ingest_flow(
                                symbols=list(job.symbols),
                                start_date=job.start.isoformat(),
                                end_date=job.end.isoformat(),
                                data_type=job.data_type,
                                timeframe=job.timeframe,
                                source=source,
                                process=False,
                                overrides=overrides,
                            )
                        )
                    )
        if "processing" in chosen:
            for data_type in ("corporate_actions", "market_data"):
                with tags(*run_tags(source, data_type)):
                    summary.processing.append(
                        ProcessSummary.from_dict(
                            await process_flow(
                                source=source,
                                symbols=universe,
                                data_type=data_type,
                                overrides=overrides,
                            )
                        )
                    )
        if "historical" in chosen:
            for job in bar_jobs:
                with tags(*run_tags(source, job.data_type, job.timeframe)):
                    summary.historical.append(
                        HistoricalSummary.from_dict(
                            await historical_flow(
                                symbols=list(job.symbols),
                                start_date=job.start.isoformat(),
                                end_date=job.end.isoformat(),
                                timeframe=job.timeframe,
                                source=source,
                                overrides=overrides,
                            )
                        )
                    )
        if "features" in chosen:
            for job in bar_jobs:
                with tags(*run_tags(source, "features", job.timeframe)):
                    summary.features.append(
                        FeaturesSummary.from_dict(
                            await features_flow(
                                symbols=list(job.symbols),
                                timeframe=job.timeframe,
                                start_date=job.start.isoformat(),
                                end_date=job.end.isoformat(),
                                overrides=overrides,
                            )
                        )
                    )
    get_run_logger().info(
        "pipeline %s: %d records ingested, %d stored, %d rejected in %.1f s",
        "+".join(chosen),
        summary.records_ingested,
        summary.records_stored,
        summary.rejected,
        summary.seconds,
    )
    return summary.to_dict()
