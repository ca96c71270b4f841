"""The processing stage as a Prefect flow: pending raw pages into the hot store, a task per symbol.

Publishes a summary table and a markdown quality report; a batch scoring below
``quality.min_quality_score`` logs a warning that says why.

The per-symbol task is an ``async`` task that hands the CPU-bound work to a thread: it then runs
in the flow's event loop with the flow's API client. A sync task called from the async flow runs
in a thread without a client context and builds a new Prefect client (an httpx client and its
SSL context) for every task run: that was most of Prefect's overhead per symbol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pandas as pd
import psycopg
from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from db.connect import database_connection
from tasks.retries import DATABASE_RETRY_OPTIONS
from core.settings import Settings, load_settings
from tasks.collection import ParsedPage
from pipeline.metrics import record_summary
from tasks.processing import (
    ACTION_DATASETS,
    BAR_DATASETS,
    PendingPage,
    SymbolProcessing,
    pending_pages,
    process_symbol_actions,
    process_symbol_bars,
)
from quality.score import QualityReport, quality_report
from quality.validate import ValidationResult
from storage.lake import Lake


def process_symbol(
    settings: Settings, pages: list[PendingPage], parsed: Mapping[str, ParsedPage] | None = None
) -> tuple[SymbolProcessing, ValidationResult | None]:
    """One symbol's pending pages (of one dataset family) into the hot store, on a connection of its own."""
    with database_connection(settings) as conn:
        return _process_on(conn, Lake.from_settings(settings.lake), settings, pages, parsed)


def process_symbol_pending(
    settings: Settings, source: str, symbol: str, timeframe: str | None, data_type: str,
    parsed: Mapping[str, ParsedPage] | None = None,
) -> list[tuple[SymbolProcessing, ValidationResult | None]]:  # fmt: skip
    """Whatever is pending for one symbol, looked up and processed on one connection (a
    connection costs ~20 ms of CPU between client and server: one per symbol, not one per step)."""
    datasets = BAR_DATASETS if data_type == "market_data" else ACTION_DATASETS
    lake = Lake.from_settings(settings.lake)
    with database_connection(settings) as conn:
        groups = pending_pages(conn, source=source, symbols=[symbol], datasets=datasets, timeframe=timeframe)
        conn.commit()  # end the lookup's transaction: each series then commits on its own
        return [_process_on(conn, lake, settings, pages, parsed) for pages in groups]


def _process_on(
    conn: psycopg.Connection, lake: Lake, settings: Settings, pages: list[PendingPage],
    parsed: Mapping[str, ParsedPage] | None,
) -> tuple[SymbolProcessing, ValidationResult | None]:  # fmt: skip
    if pages[0].dataset in ACTION_DATASETS:
        return process_symbol_actions(conn, lake, pages, parsed), None
    outcome, result, _ = process_symbol_bars(
        conn, lake, pages, mode=settings.quality.validation_mode,
        min_quality_score=settings.quality.min_quality_score, parsed=parsed,
    )  # fmt: skip
    return outcome, result


@task(name="process-symbol", cache_policy=NONE, **DATABASE_RETRY_OPTIONS, task_run_name="process-{symbol}")
async def process_symbol_task(
    settings: Settings, symbol: str, pages: list[PendingPage]
) -> tuple[SymbolProcessing, ValidationResult | None]:
    return await asyncio.to_thread(process_symbol, settings, pages)


def pending_groups(
    settings: Settings, source: str, symbols: list[str] | None, timeframe: str | None, data_type: str
) -> list[list[PendingPage]]:
    """The pending pages of these symbols, one group per series (see :func:`pending_pages`)."""
    datasets = BAR_DATASETS if data_type == "market_data" else ACTION_DATASETS
    with database_connection(settings) as conn:
        return pending_pages(conn, source=source, symbols=symbols, datasets=datasets, timeframe=timeframe)


def batch_quality(results: list[ValidationResult], min_score: float) -> QualityReport | None:
    """One report over every symbol's validation (coverage rows concatenate)."""
    if not results:
        return None
    merged = ValidationResult(
        accepted=pd.concat([r.accepted for r in results], ignore_index=True),
        rejected=pd.concat([r.rejected for r in results], ignore_index=True),
        coverage=pd.concat([r.coverage for r in results], ignore_index=True),
        rule_counts={k: sum(r.rule_counts.get(k, 0) for r in results) for k in results[0].rule_counts},
        mode=results[0].mode,
        records=sum(r.records for r in results),
    )
    return quality_report(merged, min_quality_score=min_score)


async def process_series(
    settings: Settings, pending: list[list[PendingPage]]
) -> list[tuple[SymbolProcessing, ValidationResult | None]]:
    """A ``process-<symbol>`` task per group of pending pages, at most
    ``collection.max_parallel_symbols`` at once."""
    gate = asyncio.Semaphore(settings.collection.max_parallel_symbols)

    async def one(pages: list[PendingPage]) -> tuple[SymbolProcessing, ValidationResult | None]:
        async with gate:
            return await process_symbol_task(quote(settings), pages[0].symbol, quote(pages))

    return list(await asyncio.gather(*(one(pages) for pages in pending)))


async def process_pending(
    settings: Settings, source: str, symbols: list[str] | None = None, timeframe: str | None = None,
    data_type: str = "market_data",
) -> tuple[list[SymbolProcessing], QualityReport | None]:  # fmt: skip
    """Every symbol with pending pages, at most ``collection.max_parallel_symbols`` at once."""
    done = await process_series(settings, pending_groups(settings, source, symbols, timeframe, data_type))
    outcomes = [outcome for outcome, _ in done]
    report = batch_quality([r for _, r in done if r is not None], settings.quality.min_quality_score)
    return outcomes, report


async def publish_processing(outcomes: list[SymbolProcessing], report: QualityReport | None) -> None:
    if outcomes:
        await acreate_table_artifact([asdict(o) for o in outcomes], key="processing-summary",
                                     description="per-symbol records, accepted, rejected, writes")  # fmt: skip
    if report is not None:
        await acreate_markdown_artifact(report.to_markdown(), key="quality-report",
                                        description=f"quality score {report.score:.3f}")  # fmt: skip
        logger = get_run_logger()
        if report.below_threshold:
            logger.warning("quality score %.3f is below %.2f: %s", report.score, report.min_score,
                           "; ".join(report.reasons) or "no reason recorded")  # fmt: skip
        else:
            logger.info("quality score %.3f", report.score)


@flow(name="process", flow_run_name="process-{source}", log_prints=True)
async def process_flow(
    source: str = "polygon",
    symbols: list[str] | None = None,
    timeframe: str | None = None,
    data_type: str = "market_data",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store every pending raw page of ``source`` (optionally only ``symbols``/``timeframe``)."""
    began = time.monotonic()
    settings = load_settings(overrides=overrides)
    outcomes, report = await process_pending(settings, source, symbols, timeframe, data_type)
    await publish_processing(outcomes, report)
    out = {
        "symbols": [asdict(o) for o in outcomes],
        "quality_score": report.score if report else None,
        "quality_reasons": report.reasons if report else [],
    }
    record_summary(settings, {"run_id": str(flow_run.get_id()), **out, "seconds": time.monotonic() - began},
                   "process", parent_run_id=flow_run.parent_flow_run_id)  # fmt: skip
    return out
