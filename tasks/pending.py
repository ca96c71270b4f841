"""The processing stage over what is pending: raw pages not yet in the hot store, a
``process-<symbol>`` task per series, one quality report over the batch, the stage's summary.

The per-series work is :mod:`tasks.processing` (one transaction per symbol); here it is looked
up, fanned out and added up. The task is ``async`` and hands the CPU-bound work to a thread: it
then runs in the flow's event loop with the flow's API client. A sync task called from the async
flow runs in a thread without a client context and builds a new Prefect client (an httpx client
and its SSL context) for every task run: that was most of Prefect's overhead per symbol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import psycopg
from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from db.connect import connection_lost
from pipeline.metrics import RunFigures
from quality.score import QualityReport, combined_quality_report
from quality.validate import ValidationResult
from storage.lake import Lake
from tasks.batches import (
    Batch,
    Outcomes,
    Processed,
    SymbolsProcessing,
    each_alone,
    in_batch,
    process_bars_pending,
    store_bar_series,
)
from tasks.collection import ParsedPage
from tasks.fundamentals import EARNINGS_DATASETS, FUNDAMENTAL_DATASETS, process_symbol_fundamentals
from tasks.news import NEWS_DATASETS, SOCIAL_DATASETS, TEXT_DATASETS, process_symbol_news
from tasks.options import OPTION_DATASETS, process_symbol_options
from tasks.processing import (
    ACTION_DATASETS,
    BAR_DATASETS,
    PendingPage,
    SymbolProcessing,
    pending_pages,
    process_symbol_actions,
    process_symbol_bars,
    processing_error,
    record_process_error,
)
from tasks.resources import RunResources
from tasks.retries import DATABASE_RETRY_OPTIONS


def datasets_of(data_type: str) -> tuple[str, ...]:
    """The raw datasets one data type's pages are stored under."""
    if data_type in ("news", "social"):
        return NEWS_DATASETS if data_type == "news" else SOCIAL_DATASETS
    if data_type == "fundamentals":
        return FUNDAMENTAL_DATASETS
    if data_type == "earnings":
        return EARNINGS_DATASETS
    if data_type == "options":
        return OPTION_DATASETS
    return BAR_DATASETS if data_type == "market_data" else ACTION_DATASETS


def process_symbol(
    resources: RunResources, pages: list[PendingPage], parsed: Mapping[str, ParsedPage] | None = None
) -> Processed:
    """One symbol's pending pages (of one dataset family) into the hot store, on a connection of its own."""
    with resources.connect() as conn:
        return _process_on(conn, resources.lake, resources, pages, parsed)


def process_symbol_pending(
    resources: RunResources,
    source: str,
    symbol: str,
    timeframe: str | None,
    data_type: str,
    parsed: Mapping[str, ParsedPage] | None = None,
) -> list[Processed]:
    """Whatever is pending for one symbol, looked up and processed on one connection (a
    connection costs ~20 ms of CPU between client and server: one per symbol, not one per step)."""
    return process_symbols_pending(resources, source, [symbol], timeframe, data_type, parsed)[symbol]


def process_symbols_pending(
    resources: RunResources,
    source: str,
    symbols: Sequence[str],
    timeframe: str | None,
    data_type: str,
    parsed: Mapping[str, ParsedPage] | None = None,
) -> dict[str, list[Processed]]:
    """Whatever is pending for these symbols, looked up at once and processed on one connection;
    their bar series in one transaction (:func:`tasks.processing.process_series_bars`), any other
    series a transaction each. Returns each symbol's processed series (none: nothing pending)."""
    if data_type == "market_data":
        return process_bars_pending(resources, source, symbols, timeframe, parsed)
    done: dict[str, list[Processed]] = {symbol: [] for symbol in symbols}
    with resources.connect() as conn:
        groups = pending_pages(
            conn, source=source, symbols=list(symbols), datasets=datasets_of(data_type), timeframe=timeframe
        )
        conn.commit()  # end the lookup's transaction: the series then commit on their own
        bars = [pages for pages in groups if pages[0].dataset in BAR_DATASETS]
        for symbol, processed in store_bar_series(conn, resources, bars, parsed):
            done[symbol].append(processed)
        for pages in groups:
            if pages[0].dataset not in BAR_DATASETS:
                done[pages[0].symbol].append(_process_on(conn, resources.lake, resources, pages, parsed))
    return done


def _process_on(
    conn: psycopg.Connection,
    lake: Lake,
    resources: RunResources,
    pages: list[PendingPage],
    parsed: Mapping[str, ParsedPage] | None,
) -> Processed:
    if pages[0].dataset in TEXT_DATASETS:
        news = process_symbol_news(
            conn, lake, pages, resources.sentiment, resources.dedup, parsed, resources.sources, resources.embedder
        )
        return news, None
    if pages[0].dataset in ACTION_DATASETS:
        return process_symbol_actions(conn, lake, pages, parsed, resources.sources), None
    if pages[0].dataset in FUNDAMENTAL_DATASETS + EARNINGS_DATASETS:
        return process_symbol_fundamentals(conn, lake, pages, parsed, resources.sources), None
    if pages[0].dataset in OPTION_DATASETS:
        return process_symbol_options(conn, lake, pages, resources.settings.options, parsed, resources.sources), None
    quality = resources.settings.quality
    outcome, result = process_symbol_bars(
        conn,
        lake,
        pages,
        mode=quality.validation_mode,
        parsed=parsed,
        precedence=resources.settings.storage.source_precedence,
        registry=resources.sources,
    )
    return outcome, result


class PendingProcessor:
    """Processes collected symbols' pending pages in batches, in threads (the work is CPU-bound).

    ``await processor.process(symbol, parsed)`` returns that symbol's processed series. Symbols
    that finish collecting while a batch is processed wait and go together into the next one (at
    most ``max_symbols``: :func:`process_symbols_pending`, one transaction for their bars), so a
    busy processor spends its statements and transactions per batch, not per symbol. While more
    symbols are expected (:meth:`expect`), a batch also waits up to ``wait_seconds`` from its
    first symbol's arrival to fill up: under a vendor's latency symbols arrive one by one, and
    batches of 3 cost a quarter more CPU a symbol than batches of 10 (measured). ``lanes``
    batches run at once (one computes while another waits on the database). A batch that fails
    is retried a symbol at a time, so an error reaches the symbol that caused it alone; a lost
    connection fails the whole batch (each symbol's caller retries)."""

    def __init__(
        self,
        resources: RunResources,
        source: str,
        timeframe: str | None,
        data_type: str,
        *,
        max_symbols: int = 16,
        lanes: int = 2,
        wait_seconds: float = 0.0,
        process: Callable[[Batch], Outcomes] | None = None,
    ) -> None:
        """``process`` (a seam for tests) processes a batch in a worker thread; by default
        :func:`process_batch` with these resources."""
        if max_symbols < 1 or lanes < 1 or wait_seconds < 0:
            raise ValueError(
                f"PendingProcessor: max_symbols {max_symbols} and lanes {lanes} must be >= 1, "
                f"wait_seconds {wait_seconds} >= 0"
            )
        self.resources, self.source, self.timeframe, self.data_type = resources, source, timeframe, data_type
        self.max_symbols, self.lanes, self.wait_seconds = max_symbols, lanes, wait_seconds
        self._process_batch = process or partial(process_batch, resources, source, timeframe, data_type)
        # each waiting symbol: its frames, its future, when it arrived (event loop time)
        self._waiting: list[tuple[str, Mapping[str, ParsedPage] | None, asyncio.Future[list[Processed]], float]] = []
        self._expected = 0  # symbols still to be submitted, as far as the caller said
        self._arrival = asyncio.Event()
        self._lanes: set[asyncio.Task[None]] = set()
        self._room = asyncio.Semaphore(max_symbols * (lanes + 1))
        self.batches: list[int] = []  # the size of each batch processed, for tests and benchmarks

    def expect(self, symbols: int) -> None:
        """``symbols`` more will be submitted: a batch may wait for them (up to ``wait_seconds``)."""
        self._expected += symbols

    def forgo(self) -> None:
        """One expected symbol will not be submitted (its collection raised): no batch waits for it."""
        self._expected = max(0, self._expected - 1)
        self._arrival.set()  # a batch waiting for it looks again

    async def process(self, symbol: str, parsed: Mapping[str, ParsedPage] | None = None) -> list[Processed]:
        """The symbol's processed series, once its batch is processed."""
        return await (await self.submit(symbol, parsed))

    async def submit(
        self, symbol: str, parsed: Mapping[str, ParsedPage] | None = None
    ) -> asyncio.Future[list[Processed]]:
        """Queue the symbol (waiting while ``max_symbols`` x (``lanes`` + 1) symbols are queued or
        processed: the collection slows down to what processing keeps up with); its future."""
        await self._room.acquire()
        future: asyncio.Future[list[Processed]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: self._room.release())
        self._waiting.append((symbol, parsed, future, asyncio.get_running_loop().time()))
        self._expected = max(0, self._expected - 1)
        self._arrival.set()
        if len(self._lanes) < self.lanes:
            self._lanes.add(asyncio.create_task(self._drain()))
        return future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._filled()
                if not self._waiting:  # the other lane took them while this one waited
                    break
                batch, self._waiting = self._waiting[: self.max_symbols], self._waiting[self.max_symbols :]
                self.batches.append(len(batch))
                await self._process(batch)
        finally:
            # Leaves the lanes at once, in the step that found nothing waiting: a done-callback
            # would run a step later, and a symbol submitted in between would see every lane
            # still there, start none, and wait for ever.
            current = asyncio.current_task()
            if current is not None:
                self._lanes.discard(current)

    async def _process(
        self, batch: list[tuple[str, Mapping[str, ParsedPage] | None, asyncio.Future[list[Processed]], float]]
    ) -> None:
        work: Batch = [(symbol, parsed) for symbol, parsed, _, _ in batch]
        try:
            outcomes = await asyncio.to_thread(self._process_batch, work)
        except BaseException as exc:  # cancelled (the thread's exceptions are in its outcomes): so are its callers
            for _, _, future, _ in batch:
                if not future.done():
                    future.cancel() if isinstance(exc, asyncio.CancelledError) else future.set_exception(exc)
            raise
        for (_, _, future, _), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _filled(self) -> None:
        """Return when a batch is full, nothing more is expected, or the oldest waiting symbol has
        waited ``wait_seconds``."""
        loop = asyncio.get_running_loop()
        while 0 < len(self._waiting) < self.max_symbols and self._expected > 0:
            remaining = self._waiting[0][3] + self.wait_seconds - loop.time()
            if remaining <= 0:
                return
            self._arrival.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrival.wait()
            except TimeoutError:
                return


def process_batch(
    resources: RunResources, source: str, timeframe: str | None, data_type: str, batch: Batch
) -> Outcomes:
    """A batch of symbols' pending pages (each with the frames its collection parsed): each
    symbol's processed series, or the exception that symbol's processing raised. Bars go in one
    transaction for the batch (:func:`tasks.batches.in_batch`); other data types commit a series
    at a time, so their symbols are processed one by one: a batch failing halfway would leave the
    symbols it committed with nothing pending and their outcomes lost."""

    def process(symbols: Sequence[str], parsed: Mapping[str, ParsedPage]) -> dict[str, list[Processed]]:
        return process_symbols_pending(resources, source, symbols, timeframe, data_type, parsed)

    outcomes = batch_outcomes(data_type, batch, process)
    failed = [
        (symbol, outcome)
        for (symbol, _), outcome in zip(batch, outcomes, strict=True)
        if isinstance(outcome, BaseException) and not connection_lost(outcome)
    ]
    if failed:
        with resources.connect() as conn:
            for symbol, exc in failed:
                record_process_error(
                    conn,
                    source=source,
                    symbol=symbol,
                    timeframe=timeframe,
                    datasets=datasets_of(data_type),
                    error=processing_error(exc),
                )
    return outcomes


def batch_outcomes(data_type: str, batch: Batch, process: SymbolsProcessing) -> Outcomes:
    """``process`` over a batch as the data type commits: bars all at once (retried a symbol at a
    time if that fails), anything else a symbol at a time."""
    return in_batch(batch, process) if data_type == "market_data" else each_alone(batch, process)


@task(name="process-symbol", cache_policy=NONE, **DATABASE_RETRY_OPTIONS, task_run_name="process-{symbol}")
async def process_symbol_task(resources: RunResources, symbol: str, pages: list[PendingPage]) -> Processed:
    return await asyncio.to_thread(process_symbol, resources, pages)


def pending_groups(
    resources: RunResources, source: str, symbols: list[str] | None, timeframe: str | None, data_type: str
) -> list[list[PendingPage]]:
    """The pending pages of these symbols, one group per series (see :func:`pending_pages`)."""
    with resources.connect() as conn:
        return pending_pages(conn, source=source, symbols=symbols, datasets=datasets_of(data_type), timeframe=timeframe)


def batch_quality(results: list[ValidationResult], min_score: float) -> QualityReport | None:
    """One report over every symbol's validation (coverage rows concatenate)."""
    if not results:
        return None
    return combined_quality_report(results, min_quality_score=min_score)


async def process_series(resources: RunResources, pending: list[list[PendingPage]]) -> list[Processed]:
    """A ``process-<symbol>`` task per group of pending pages, at most
    ``collection.max_parallel_symbols`` at once. A series whose processing fails (other than on a
    lost connection, which fails the stage once the task's retries are spent) is that series'
    outcome, its pages left pending with the error: the other series go on."""
    gate = asyncio.Semaphore(resources.settings.collection.max_parallel_symbols)

    async def one(pages: list[PendingPage]) -> Processed:
        async with gate:
            try:
                return await process_symbol_task(quote(resources), pages[0].symbol, quote(pages))
            except Exception as exc:
                if connection_lost(exc):
                    raise
                return await asyncio.to_thread(failed_series, resources, pages, exc)

    return list(await asyncio.gather(*(one(pages) for pages in pending)))


def failed_series(resources: RunResources, pages: list[PendingPage], exc: Exception) -> Processed:
    """A series whose processing raised ``exc``: its outcome, the error recorded on its pending pages."""
    first, error = pages[0], processing_error(exc)
    with resources.connect() as conn:
        record_process_error(
            conn,
            source=first.source,
            symbol=first.symbol,
            timeframe=first.timeframe,
            datasets=sorted({page.dataset for page in pages}),
            error=error,
        )
    return SymbolProcessing(first.symbol, pages=len(pages), error=error), None


@dataclass
class ProcessedBatch:
    """What the processing of a batch of series did: per-symbol outcomes (in symbol order) and one
    quality report over their validations."""

    outcomes: list[SymbolProcessing] = field(default_factory=list)
    report: QualityReport | None = None

    @classmethod
    def of(cls, done: list[Processed], min_quality_score: float) -> ProcessedBatch:
        done = sorted(done, key=lambda pair: pair[0].symbol)
        report = batch_quality([r for _, r in done if r is not None], min_quality_score)
        return cls([outcome for outcome, _ in done], report)

    @property
    def quality_score(self) -> float | None:
        return self.report.score if self.report else None

    @property
    def quality_reasons(self) -> list[str]:
        return self.report.reasons if self.report else []


async def process_pending(
    resources: RunResources,
    source: str,
    symbols: list[str] | None = None,
    timeframe: str | None = None,
    data_type: str = "market_data",
) -> ProcessedBatch:
    """Every symbol with pending pages, at most ``collection.max_parallel_symbols`` at once."""
    done = await process_series(resources, pending_groups(resources, source, symbols, timeframe, data_type))
    report = batch_quality([r for _, r in done if r is not None], resources.settings.quality.min_quality_score)
    return ProcessedBatch([outcome for outcome, _ in done], report)


async def publish_processing(batch: ProcessedBatch) -> None:
    """The ``processing-summary`` table and the ``quality-report`` markdown; a warning that says
    why when the batch scores below the threshold."""
    outcomes, report = batch.outcomes, batch.report
    if outcomes:
        await acreate_table_artifact(
            [asdict(o) for o in outcomes],
            key="processing-summary",
            description="per-symbol records, accepted, rejected, writes",
        )
    failed = [o for o in outcomes if o.error]
    if failed:
        get_run_logger().warning(
            "%d symbol(s) failed processing, their pages left pending: %s",
            len(failed),
            "; ".join(f"{o.symbol}: {o.error}" for o in failed[:20]),
        )
    if report is not None:
        await acreate_markdown_artifact(
            report.to_markdown(), key="quality-report", description=f"quality score {report.score:.3f}"
        )
        logger = get_run_logger()
        if report.below_threshold:
            logger.warning(
                "quality score %.3f is below %.2f: %s",
                report.score,
                report.min_score,
                "; ".join(report.reasons) or "no reason recorded",
            )
        else:
            logger.info("quality score %.3f", report.score)


@dataclass
class ProcessSummary:
    """What a ``process`` run did; :meth:`to_dict` is what the flow returns."""

    run_id: str
    symbols: list[SymbolProcessing] = field(default_factory=list)
    quality_score: float | None = None
    quality_reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def of(cls, run_id: str, batch: ProcessedBatch) -> ProcessSummary:
        return cls(run_id, batch.outcomes, batch.quality_score, batch.quality_reasons)

    @classmethod
    def from_dict(cls, summary: Mapping[str, Any]) -> ProcessSummary:
        """A ``process`` sub-flow's result, typed again."""
        return cls(
            str(summary.get("run_id", "")),
            [SymbolProcessing(**p) for p in summary["symbols"]],
            summary["quality_score"],
            list(summary["quality_reasons"]),
        )

    @property
    def records_stored(self) -> int:
        return sum(p.inserted + p.updated for p in self.symbols)

    @property
    def rejected(self) -> int:
        return sum(p.rejected for p in self.symbols)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbols": [asdict(o) for o in self.symbols],
            "quality_score": self.quality_score,
            "quality_reasons": self.quality_reasons,
        }

    def record(self) -> dict[str, Any]:
        return {"run_id": self.run_id, **self.to_dict(), "seconds": self.seconds}

    def figures(self) -> RunFigures:
        return RunFigures.of_symbols(
            [], self.symbols, quality_score=self.quality_score, quality_reasons=self.quality_reasons
        )
