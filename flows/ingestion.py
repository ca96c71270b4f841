"""The ``ingest`` flow: vendor pages into the raw zone (the ingestion stage), then, unless told
otherwise, into the hot store (the processing stage) for the same symbols.

The request is checked before anything is fetched. Incremental runs resume each symbol after its
committed watermark, so a second run fetches only what is new. Symbols run in waves of
``collection.batch_size``, at most ``collection.max_parallel_symbols`` at once; each wave updates the
run's progress artifact. A failing symbol is recorded (dead letter + summary row) and the others
complete.

Task parameters that are large objects (settings, the source, the request) are passed
``quote``d: Prefect then does not walk them looking for futures, which cost several ms per task
run for the nested settings model alone. No parameter of these tasks is a future.

With ``process``, each symbol is one ``ingest-<symbol>`` task: collected, then processed at once
with the frames the collection parsed, so one symbol's validation and writes overlap the next
one's download and the pages just stored are not read back and parsed again. Without it each
symbol is a ``collect-<symbol>`` task (the pipeline's ingestion stage; its processing stage runs
``process-<symbol>`` tasks). Symbols of the request that fetched nothing but still have pending
pages (an earlier run stopped between the stages) are processed afterwards from the raw zone.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from db.connect import async_database_connection, database_connection
from flows.processing import batch_quality, pending_groups, process_series, process_symbol_pending, publish_processing
from tasks.retries import DATABASE_RETRY_OPTIONS
from core.progress import terminal_progress
from core.settings import Settings, load_settings
from tasks.collection import SymbolCollection, collect_symbol
from pipeline.metrics import record_summary
from pipeline.plan import resume_starts, watermark_dataset
from tasks.processing import SymbolProcessing
from pipeline.request import IngestRequest, parse_ingest_request
from quality.validate import ValidationResult
from sources.base import BaseSource
from sources.factory import build_source
from storage.lake import Lake
from storage.watermarks import read_watermarks


def run_name() -> str:
    """ingest-polygon-1min-2026-11-20 (bars: source, timeframe, the range's last day) or
    ingest-polygon-corporate-actions-2026-11-20 (other data types)."""
    params = flow_run.get_parameters()
    return ingest_run_name(params.get("source", "polygon"), params.get("data_type", "market_data"),
                           params.get("timeframe", "1day"), params.get("end_date"))  # fmt: skip


def ingest_run_name(source: str, data_type: str, timeframe: str, end_date: object) -> str:
    end = str(end_date or "")[:10] or "latest"
    what = timeframe if data_type == "market_data" else data_type.replace("_", "-")
    return f"ingest-{source}-{what}-{end}"


async def collect_one(
    settings: Settings, source: BaseSource, request: IngestRequest, symbol: str, start: datetime, run_id: str,
    reprocess: bool, keep_parsed: bool = False,
) -> SymbolCollection:  # fmt: skip
    lake = Lake.from_settings(settings.lake)
    async with await async_database_connection(settings, autocommit=True) as conn:
        return await collect_symbol(source, request, symbol, start, lake, conn, run_id, reprocess, keep_parsed)


@dataclass
class SymbolRun:
    """One symbol's pass through the flow: its collection and what processing it did."""

    collected: SymbolCollection
    processed: list[tuple[SymbolProcessing, ValidationResult | None]] = field(default_factory=list)


@task(name="collect-symbol", cache_policy=NONE, **DATABASE_RETRY_OPTIONS, task_run_name="collect-{symbol}")
async def collect_symbol_task(
    settings: Settings, source: BaseSource, request: IngestRequest, symbol: str, start: datetime, run_id: str,
    reprocess: bool,
) -> SymbolRun:  # fmt: skip
    """The ingestion stage alone (the pipeline's ingestion runs: processing follows as its own stage)."""
    return SymbolRun(await collect_one(settings, source, request, symbol, start, run_id, reprocess))


@task(name="ingest-symbol", cache_policy=NONE, **DATABASE_RETRY_OPTIONS, task_run_name="ingest-{symbol}")
async def ingest_symbol_task(
    settings: Settings, source: BaseSource, request: IngestRequest, symbol: str, start: datetime, run_id: str,
    reprocess: bool,
) -> SymbolRun:  # fmt: skip
    """Collect one symbol, then process its pending pages with the frames the collection parsed
    (the processing work in a thread: it is CPU-bound). One task run per symbol, not two: each
    task run costs the Prefect server tens of ms of CPU (its state events are recorded), and on a
    small machine that server shares the cores with the run. A lost database connection retries
    the whole symbol: collection is idempotent and processing commits once."""
    collected = await collect_one(settings, source, request, symbol, start, run_id, reprocess, keep_parsed=True)
    timeframe = request.timeframe if request.data_type == "market_data" else None
    processed = await asyncio.to_thread(process_symbol_pending, settings, request.source, symbol, timeframe,
                                        request.data_type, collected.parsed)  # fmt: skip
    collected.parsed.clear()  # processed: the frames are not needed any longer
    return SymbolRun(collected, processed)


def incremental_starts(settings: Settings, request: IngestRequest) -> dict[str, datetime | None]:
    """Where each symbol resumes after its committed watermark (None: nothing new)."""
    dataset, timeframe = watermark_dataset(request.data_type)
    with database_connection(settings) as conn:
        marks = read_watermarks(conn, source=request.source, dataset=dataset, symbols=list(request.symbols),
                                timeframe=request.timeframe if timeframe is None else timeframe)  # fmt: skip
    return resume_starts(request, {symbol: mark.high_water_ts for (_, _, symbol, _), mark in marks.items()})


async def collect_all(
    settings: Settings, request: IngestRequest, run_id: str, starts: dict[str, datetime | None] | None = None,
    process: bool = False,
) -> list[SymbolRun]:  # fmt: skip
    """Every symbol of the request that has something new, in waves, bounded parallelism; one
    progress artifact. With ``process`` each symbol's pending pages are processed right after its
    collection."""
    collection = settings.collection
    gate = asyncio.Semaphore(collection.max_parallel_symbols)
    symbols = [s for s in request.symbols if starts is None or starts.get(s, request.start) is not None]
    if not symbols:
        return []
    source = build_source(request.source, settings)
    progress = await acreate_progress_artifact(0.0, description=f"symbols collected from {request.source}")
    symbol_task = ingest_symbol_task if process else collect_symbol_task
    results: list[SymbolRun] = []

    async def one(symbol: str) -> SymbolRun:
        async with gate:
            start = (starts or {}).get(symbol) or request.start
            return await symbol_task(quote(settings), quote(source), quote(request), symbol, start, run_id,
                                     reprocess=starts is None)  # fmt: skip

    try:
        with terminal_progress(len(symbols), f"{request.source} {request.timeframe}") as advance:
            for offset in range(0, len(symbols), collection.batch_size):
                wave = symbols[offset : offset + collection.batch_size]
                results += await asyncio.gather(*(one(symbol) for symbol in wave))
                advance(len(wave))
                await aupdate_progress_artifact(progress, 100.0 * len(results) / len(symbols))
    finally:
        await source.aclose()
    return results


async def publish_collection_summary(request: IngestRequest, results: list[SymbolCollection]) -> None:
    rows = [{"symbol": r.symbol, "pages": r.pages, "records": r.records, "dead_letters": len(r.dead_letter_ids),
             "error": (r.error or "")[:200]} for r in results]  # fmt: skip
    await acreate_table_artifact(
        rows, key="ingestion-summary", description=f"{request.source} {request.data_type} {request.timeframe}"
    )


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
    began = time.monotonic()
    settings = load_settings(overrides=overrides)
    request = parse_ingest_request(data_type=data_type, symbols=symbols, start_date=start_date, end_date=end_date,
                                   timeframe=timeframe, source=source)  # fmt: skip
    run_id = str(flow_run.get_id() or uuid.uuid4())
    starts = incremental_starts(settings, request) if incremental else None
    up_to_date = [s for s, start in (starts or {}).items() if start is None]
    runs = await collect_all(settings, request, run_id, starts, process=process)
    results = [r.collected for r in runs]
    await publish_collection_summary(request, results)
    logger = get_run_logger()
    logger.info("collected %d pages, %d records for %d symbols (%d already up to date)",
                sum(r.pages for r in results), sum(r.records for r in results), len(results),
                len(up_to_date))  # fmt: skip
    failed = [r.symbol for r in results if r.error]
    if failed:
        logger.warning("%d symbol(s) failed and were dead-lettered: %s", len(failed), ", ".join(failed[:20]))
    summary: dict[str, Any] = {
        "run_id": run_id, "source": request.source, "data_type": request.data_type, "timeframe": request.timeframe,
        "collected": [r.record() for r in results], "up_to_date": up_to_date, "failed": failed,
        "processed": [], "quality_score": None, "quality_reasons": [],
    }  # fmt: skip
    if process:
        done = [pair for r in runs for pair in r.processed]
        leftover = [s for s in request.symbols if s not in {r.collected.symbol for r in runs}]
        if leftover:
            timeframe_filter = request.timeframe if request.data_type == "market_data" else None
            done += await process_series(
                settings, pending_groups(settings, request.source, leftover, timeframe_filter, request.data_type)
            )
        done.sort(key=lambda pair: pair[0].symbol)
        processed = [outcome for outcome, _ in done]
        report = batch_quality([r for _, r in done if r is not None], settings.quality.min_quality_score)
        await publish_processing(processed, report)
        summary["processed"] = [asdict(p) for p in processed]
        summary["quality_score"] = report.score if report else None
        summary["quality_reasons"] = report.reasons if report else []
    summary["seconds"] = time.monotonic() - began
    record_summary(settings, summary, "ingest", parent_run_id=flow_run.parent_flow_run_id)
    return summary
