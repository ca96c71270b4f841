"""``run_pipeline``: the seed's stages as sub-flows, any subset, in the seed's order.

- ingestion: every configured series (``pipeline.*`` settings), incrementally, into the raw zone;
- processing: every pending raw page into the hot store (corporate actions first);
- historical: gap repair over each series' window, refetching missing sessions in chunks;
- features: the numba feature set over each series' window, into the feature store.

Modes: ``batch`` runs the stages once. ``real_time`` and ``hybrid`` need the streaming work,
which has not landed: they are refused with a clear error before anything runs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run

from flows.features import features_flow
from flows.historical import historical_flow
from flows.ingestion import ingest_flow
from flows.processing import process_flow
from core.errors import RequestError
from core.settings import load_settings
from pipeline.metrics import record_summary
from pipeline.plan import pipeline_jobs
from pipeline.request import parse_symbols

STAGES = ("ingestion", "processing", "historical", "features")
MODES = ("batch", "real_time", "hybrid")


def parse_stages(stages: list[str] | None, mode: str) -> list[str]:
    """Requested stages in pipeline order; refuses unknown stages and the streaming modes."""
    if mode not in MODES:
        raise RequestError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if mode != "batch":
        raise RequestError(
            f"mode {mode!r} needs real-time streaming, which is not available yet (it arrives with the "
            "streaming work); use mode 'batch'"
        )
    if stages is not None and not stages:
        raise RequestError(f"the stage list is empty: name at least one of {', '.join(STAGES)}")
    unknown = [s for s in (stages or []) if s not in STAGES]
    if unknown:
        raise RequestError(f"unknown stage(s) {', '.join(map(repr, unknown))}: use any of {', '.join(STAGES)}")
    return [s for s in STAGES if stages is None or s in stages]


def run_tags(source: str, dataset: str, timeframe: str | None = None) -> list[str]:
    """Tags of a stage's sub-flow run (and its task runs): filterable in the UI and by automations."""
    return [f"source:{source}", f"dataset:{dataset}"] + ([f"timeframe:{timeframe}"] if timeframe else [])


@flow(name="pipeline", flow_run_name="pipeline-{mode}")
async def pipeline_flow(
    stages: list[str] | None = None,
    mode: str = "batch",
    symbols: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    began = time.monotonic()
    chosen = parse_stages(stages, mode)
    settings = load_settings(overrides=overrides)
    universe = list(parse_symbols(symbols)) if symbols else None
    today = datetime.now(UTC).date()
    jobs = pipeline_jobs(settings.pipeline, today, universe)
    source = settings.pipeline.source
    logger = get_run_logger()
    result: dict[str, Any] = {"run_id": str(flow_run.get_id()), "stages": chosen, "mode": mode, "ingestion": [],
                              "processing": [], "historical": [], "features": []}  # fmt: skip

    if "ingestion" in chosen:
        for job in jobs:
            with tags(*run_tags(source, job.data_type, job.timeframe)):
                summary = await ingest_flow(
                    symbols=list(job.symbols), start_date=job.start.isoformat(), end_date=job.end.isoformat(),
                    data_type=job.data_type, timeframe=job.timeframe, source=source, process=False,
                    overrides=overrides,
                )  # fmt: skip
            result["ingestion"].append(summary)
    if "processing" in chosen:
        for data_type in ("corporate_actions", "market_data"):
            with tags(*run_tags(source, data_type)):
                result["processing"].append(
                    await process_flow(source=source, symbols=universe, data_type=data_type, overrides=overrides)
                )
    if "historical" in chosen:
        for job in (j for j in jobs if j.data_type == "market_data"):
            with tags(*run_tags(source, job.data_type, job.timeframe)):
                repaired = await historical_flow(
                    symbols=list(job.symbols), start_date=job.start.isoformat(), end_date=job.end.isoformat(),
                    timeframe=job.timeframe, source=source, overrides=overrides,
                )  # fmt: skip
            result["historical"].append(repaired)
    if "features" in chosen:
        for job in (j for j in jobs if j.data_type == "market_data"):
            with tags(*run_tags(source, "features", job.timeframe)):
                computed = await features_flow(
                    symbols=list(job.symbols), timeframe=job.timeframe, start_date=job.start.isoformat(),
                    end_date=job.end.isoformat(), overrides=overrides,
                )  # fmt: skip
            result["features"].append(computed)

    result["records_ingested"] = sum(c["records"] for s in result["ingestion"] for c in s["collected"])
    result["records_stored"] = sum(p.get("inserted", 0) + p.get("updated", 0) for run in result["processing"]
                                   for p in run["symbols"]) + sum(
        c["bars_stored"] for run in result["historical"] for c in run.get("chunks", []))  # fmt: skip
    result["feature_rows_stored"] = sum(run["records_stored"] for run in result["features"])
    result["rejected"] = sum(p["rejected"] for run in result["processing"] for p in run["symbols"])
    scores = [run["quality_score"] for run in result["processing"] if run.get("quality_score") is not None]
    result["quality_score"] = min(scores) if scores else None
    result["seconds"] = time.monotonic() - began
    logger.info("pipeline %s: %d records ingested, %d stored, %d rejected in %.1f s", "+".join(chosen),
                result["records_ingested"], result["records_stored"], result["rejected"],
                result["seconds"])  # fmt: skip
    record_summary(settings, result, "pipeline", parent_run_id=flow_run.parent_flow_run_id)
    return result
