"""The ingestion stage as Prefect tasks: one task run per wave of ``collection.batch_size``
symbols (``collect-AAPL..MSFT``: vendor pages into the raw zone; ``ingest-AAPL..MSFT``: also
processed at once), bounded parallelism inside, one progress artifact; where each symbol resumes;
the stage's summary.

Task parameters that are large objects (the run's resources, the source, the request) are passed
``quote``d: Prefect then does not walk them looking for futures, which cost several ms per task
run for the nested settings model alone. No parameter of these tasks is a future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.cache_policies import NONE
from prefect.runtime import task_run
from prefect.utilities.annotations import quote

from core.progress import terminal_progress
from db.connect import connection_lost
from pipeline.metrics import RunFigures
from pipeline.plan import (
    SHARED_WATERMARK_DATA_TYPES,
    resume_starts,
    sessions_to_check,
    uncovered_starts,
    unfinished_starts,
    watermark_dataset,
)
from pipeline.request import IngestRequest
from sources.base import BaseSource
from sources.dead_letters import symbols_with_failed_fetches
from sources.factory import build_source
from storage.watermarks import read_watermarks
from tasks.collection import SymbolCollection, collect_symbol
from tasks.pending import PendingProcessor, Processed, ProcessedBatch, pending_groups, process_series
from tasks.processing import ACTION_DATASETS, SymbolProcessing, processing_error
from tasks.resources import RunResources
from tasks.retries import retrying_on_lost_database


async def collect_one(
    resources: RunResources,
    source: BaseSource,
    request: IngestRequest,
    symbol: str,
    start: datetime,
    run_id: str,
    reprocess: bool,
    keep_parsed: bool = False,
) -> SymbolCollection:
    async with resources.aconnect(autocommit=True) as conn:
        return await collect_symbol(
            source, request, symbol, start, resources.lake, conn, run_id, reprocess, keep_parsed
        )


@dataclass
class SymbolRun:
    """One symbol's pass through the flow: its collection and what processing it did."""

    collected: SymbolCollection
    processed: list[Processed] = field(default_factory=list)


async def run_symbol(
    resources: RunResources,
    source: BaseSource,
    request: IngestRequest,
    symbol: str,
    start: datetime,
    run_id: str,
    reprocess: bool,
    processor: PendingProcessor | None,
    gate: asyncio.Semaphore,
) -> SymbolRun:
    """Collect one symbol, holding a slot of ``gate`` (the symbols in flight); with a
    ``processor``, process its pending pages at once with the frames the collection parsed (in a
    batch with the symbols collected meanwhile, see :class:`tasks.pending.PendingProcessor`).

    Each call tells the processor a symbol is coming (:meth:`~tasks.pending.PendingProcessor.
    expect`), then either submits it or, when anything before that fails or is cancelled, forgoes
    it: a batch waits for the symbols still coming, and a retried symbol comes again.

    Its processing failing other than on a lost connection is its outcome (``error``), its pages
    left pending: raised, it would fail the wave and every wave after it, and, the page that
    caused it still pending, every run after."""
    if processor is None:
        async with gate:
            return SymbolRun(await collect_one(resources, source, request, symbol, start, run_id, reprocess))
    processor.expect(1)
    submitted = False
    try:
        async with gate:
            collected = await collect_one(
                resources, source, request, symbol, start, run_id, reprocess, keep_parsed=True
            )
            queued = await processor.submit(symbol, collected.parsed)
            submitted = True
    except BaseException:
        if not submitted:
            processor.forgo()
        raise
    try:
        processed = await queued  # its slot is free for the next symbol's collection meanwhile
    except Exception as exc:
        if connection_lost(exc):
            raise  # the caller runs the symbol again on a new connection
        # its pages stay pending, marked with the error (tasks.pending.process_batch); the wave's
        # other symbols and the run's later waves go on
        processed = [(SymbolProcessing(symbol, error=processing_error(exc)), None)]
    collected.parsed.clear()  # processed: the frames are not needed any longer
    return SymbolRun(collected, processed)


def pending_processor(resources: RunResources, request: IngestRequest) -> PendingProcessor:
    """The processor of a run's collected symbols (batches of ``collection.processing_batch_symbols``)."""
    return PendingProcessor(
        resources,
        request.source,
        bar_timeframe(request),
        request.data_type,
        max_symbols=resources.settings.collection.processing_batch_symbols,
        wait_seconds=resources.settings.collection.processing_batch_wait_seconds,
    )


def wave_run_name() -> str:
    """``ingest-AAPL..MSFT`` (the wave's first and last symbol) or ``ingest-AAPL`` for a single one."""
    params = task_run.parameters
    symbols, verb = params.get("symbols") or ["?"], "ingest" if params.get("process") else "collect"
    return f"{verb}-{symbols[0]}" if len(symbols) == 1 else f"{verb}-{symbols[0]}..{symbols[-1]}"


@task(name="symbol-wave", cache_policy=NONE, task_run_name=wave_run_name)
async def symbol_wave_task(
    resources: RunResources,
    source: BaseSource,
    request: IngestRequest,
    symbols: list[str],
    starts: Mapping[str, datetime],
    run_id: str,
    reprocess: bool,
    process: bool,
    processor: PendingProcessor | None = None,
) -> list[SymbolRun]:
    """One wave of symbols, each collected (at most ``collection.max_parallel_symbols`` at once)
    and, with ``process``, processed (in batches of the symbols collected meanwhile, at most
    ``collection.processing_batch_symbols``, a transaction each). One task run per wave, not per
    symbol: each task run costs the Prefect server tens of ms of CPU (its state events are
    recorded), and on a small machine that server shares the cores with the run; each symbol's
    outcome is in the ``ingestion-summary`` table. A lost database connection repeats that
    symbol's work alone (collection is idempotent, and a batch's processing commits once or not
    at all); any other processing error is that symbol's outcome (see :func:`run_symbol`)."""
    gate = asyncio.Semaphore(resources.settings.collection.max_parallel_symbols)
    if not process:
        processor = None
    elif processor is None:  # the run's (collect_all's) spans its waves
        processor = pending_processor(resources, request)

    async def one(symbol: str) -> SymbolRun:
        return await retrying_on_lost_database(
            lambda: run_symbol(resources, source, request, symbol, starts[symbol], run_id, reprocess, processor, gate),
            f"symbol {symbol}",
        )

    return list(await asyncio.gather(*(one(symbol) for symbol in symbols)))


def bar_timeframe(request: IngestRequest) -> str | None:
    """The timeframe that selects a request's pending pages (corporate actions have none)."""
    return request.timeframe if request.data_type == "market_data" else None


def incremental_starts(resources: RunResources, request: IngestRequest) -> dict[str, datetime | None]:
    """Where each symbol starts (None: nothing new): after its committed watermark, or earlier
    where the source has no bar stored in a session of the range asked for (an older range than
    the one stored, a session missing in between; :func:`pipeline.plan.uncovered_starts`); for
    corporate actions, at the request's start while the symbol has an open dead letter for one of
    its requests that was not answered (:func:`pipeline.plan.unfinished_starts`; a letter of a
    stored page that does not parse is not fetched better again)."""
    dataset, timeframe = watermark_dataset(request.data_type)
    with resources.connect() as conn:
        marks = read_watermarks(
            conn,
            source=request.source,
            dataset=dataset,
            symbols=list(request.symbols),
            timeframe=request.timeframe if timeframe is None else timeframe,
        )
        unfinished = (
            symbols_with_failed_fetches(
                conn, source=request.source, datasets=ACTION_DATASETS, symbols=list(request.symbols)
            )
            if request.data_type in SHARED_WATERMARK_DATA_TYPES
            else set()
        )
    resumes = resume_starts(request, {symbol: mark.high_water_ts for (_, _, symbol, _), mark in marks.items()})
    resumes = unfinished_starts(request, resumes, unfinished)
    sessions = sessions_to_check(request, resumes)
    if not sessions:
        return resumes
    with resources.router() as router:
        stored = router.sessions_with_bars(request.symbols, sessions, request.timeframe, request.source)
    return uncovered_starts(request, resumes, sessions, stored)


async def collect_all(
    resources: RunResources,
    request: IngestRequest,
    run_id: str,
    starts: dict[str, datetime | None] | None = None,
    process: bool = False,
) -> list[SymbolRun]:
    """Every symbol of the request that has something new, in waves, bounded parallelism; one
    progress artifact. With ``process`` each symbol's pending pages are processed right after its
    collection."""
    collection = resources.settings.collection
    symbols = [s for s in request.symbols if starts is None or starts.get(s, request.start) is not None]
    if not symbols:
        return []
    begin = {symbol: (starts or {}).get(symbol) or request.start for symbol in symbols}
    source = build_source(request.source, resources.settings)
    progress = await acreate_progress_artifact(0.0, description=f"symbols collected from {request.source}")
    results: list[SymbolRun] = []
    processor = pending_processor(resources, request) if process else None
    try:
        async with resources.pooled_async_connections():
            with terminal_progress(len(symbols), f"{request.source} {request.timeframe}") as advance:
                for offset in range(0, len(symbols), collection.batch_size):
                    wave = symbols[offset : offset + collection.batch_size]
                    results += await symbol_wave_task(
                        quote(resources),
                        quote(source),
                        quote(request),
                        wave,
                        quote({symbol: begin[symbol] for symbol in wave}),
                        run_id,
                        reprocess=starts is None,
                        process=process,
                        processor=quote(processor),
                    )
                    advance(len(wave))
                    await aupdate_progress_artifact(progress, 100.0 * len(results) / len(symbols))
    finally:
        await source.aclose()
    return results


async def process_collected(resources: RunResources, request: IngestRequest, runs: list[SymbolRun]) -> ProcessedBatch:
    """The processing the ``ingest-<symbol>`` tasks did, plus, from the raw zone, the pending pages
    of the request's symbols that fetched nothing (an earlier run stopped between the stages)."""
    done = [pair for r in runs for pair in r.processed]
    leftover = [s for s in request.symbols if s not in {r.collected.symbol for r in runs}]
    if leftover:
        pending = pending_groups(resources, request.source, leftover, bar_timeframe(request), request.data_type)
        done += await process_series(resources, pending)
    return ProcessedBatch.of(done, resources.settings.quality.min_quality_score)


async def publish_collection_summary(request: IngestRequest, summary: IngestSummary) -> None:
    """The ``ingestion-summary`` table, and the collection's log lines."""
    results = summary.collected
    processing_errors = {p.symbol: p.error for p in summary.processed if p.error}
    rows = [
        {
            "symbol": r.symbol,
            "pages": r.pages,
            "records": r.records,
            "dead_letters": len(r.dead_letter_ids),
            "error": (r.error or "")[:200],
            "processing_error": (processing_errors.get(r.symbol) or "")[:200],
        }
        for r in results
    ]
    await acreate_table_artifact(
        rows, key="ingestion-summary", description=f"{request.source} {request.data_type} {request.timeframe}"
    )
    logger = get_run_logger()
    logger.info(
        "collected %d pages, %d records for %d symbols (%d already up to date)",
        sum(r.pages for r in results),
        summary.records_ingested,
        len(results),
        len(summary.up_to_date),
    )
    failed = [r.symbol for r in results if r.error]
    if failed:
        logger.warning("%d symbol(s) failed and were dead-lettered: %s", len(failed), ", ".join(failed[:20]))


@dataclass
class IngestSummary:
    """What an ``ingest`` run did; :meth:`to_dict` is what the flow returns (and what is recorded)."""

    run_id: str
    source: str
    data_type: str
    timeframe: str
    collected: list[SymbolCollection] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    processed: list[SymbolProcessing] = field(default_factory=list)
    quality_score: float | None = None
    quality_reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def of(
        cls, run_id: str, request: IngestRequest, runs: list[SymbolRun], starts: dict[str, datetime | None] | None
    ) -> IngestSummary:
        """The collection's part and the processing its waves did; :meth:`with_processing` adds
        the rest of the processing's."""
        return cls(
            run_id,
            request.source,
            request.data_type,
            request.timeframe,
            collected=[r.collected for r in runs],
            up_to_date=[s for s, start in (starts or {}).items() if start is None],
            processed=[outcome for r in runs for outcome, _ in r.processed],
        )

    def with_processing(self, batch: ProcessedBatch) -> None:
        self.processed = batch.outcomes
        self.quality_score, self.quality_reasons = batch.quality_score, batch.quality_reasons

    @classmethod
    def from_dict(cls, summary: Mapping[str, Any]) -> IngestSummary:
        """An ``ingest`` sub-flow's result, typed again."""
        return cls(
            summary["run_id"],
            summary["source"],
            summary["data_type"],
            summary["timeframe"],
            [SymbolCollection(**c) for c in summary["collected"]],
            list(summary["up_to_date"]),
            [SymbolProcessing(**p) for p in summary["processed"]],
            summary["quality_score"],
            list(summary["quality_reasons"]),
            summary["seconds"],
        )

    @property
    def failed(self) -> list[str]:
        """The symbols whose collection or processing failed."""
        failed = [r.symbol for r in self.collected if r.error] + [p.symbol for p in self.processed if p.error]
        return list(dict.fromkeys(failed))

    @property
    def records_ingested(self) -> int:
        return sum(r.records for r in self.collected)

    @property
    def records_stored(self) -> int:
        return sum(p.inserted + p.updated for p in self.processed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "data_type": self.data_type,
            "timeframe": self.timeframe,
            "collected": [r.record() for r in self.collected],
            "up_to_date": self.up_to_date,
            "failed": self.failed,
            "processed": [asdict(p) for p in self.processed],
            "quality_score": self.quality_score,
            "quality_reasons": self.quality_reasons,
            "seconds": self.seconds,
        }

    def record(self) -> dict[str, Any]:
        return self.to_dict()

    def figures(self) -> RunFigures:
        return RunFigures.of_symbols(
            self.collected, self.processed, quality_score=self.quality_score, quality_reasons=self.quality_reasons
        )
