"""Batches of collected symbols' bars processed together.

A batch is the symbols whose collection finished while the previous batch was processed (see
:class:`tasks.pending.PendingProcessor`): their pending bar pages are looked up at once and
processed in ONE transaction (:func:`tasks.processing.process_series_bars`). A batch that fails
is processed again a symbol at a time, so an error reaches the symbol that caused it alone.

This module imports no Prefect and no other data type's code: what processes bars, wherever it
runs, needs only this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import psycopg
from loguru import logger

from db.connect import connection_lost
from quality.validate import ValidationResult
from tasks.collection import ParsedPage
from tasks.processing import BAR_DATASETS, PendingPage, SymbolProcessing, pending_pages, process_series_bars
from tasks.resources import RunResources

Processed = tuple[SymbolProcessing, ValidationResult | None]  # one series: its outcome, its validation
Batch = list[tuple[str, Mapping[str, ParsedPage] | None]]  # (symbol, the frames its collection parsed)
Outcomes = list[list[Processed] | BaseException]  # per symbol of a batch: its series, or its error
# processes symbols' pending pages with the frames their collection parsed: each symbol's series
SymbolsProcessing = Callable[[Sequence[str], Mapping[str, ParsedPage]], dict[str, list[Processed]]]


def store_bar_series(
    conn: psycopg.Connection,
    resources: RunResources,
    groups: Sequence[Sequence[PendingPage]],
    parsed: Mapping[str, ParsedPage] | None,
) -> list[tuple[str, Processed]]:
    """Pending bar series (a group of pages each) processed in one transaction: (symbol, its outcome)."""
    if not groups:
        return []
    quality, storage = resources.settings.quality, resources.settings.storage
    stored = process_series_bars(
        conn,
        resources.lake,
        groups,
        mode=quality.validation_mode,
        parsed=parsed,
        precedence=storage.source_precedence,
        registry=resources.sources,
    )
    return [(pages[0].symbol, processed) for processed, pages in zip(stored, groups, strict=True)]


def process_bars_pending(
    resources: RunResources,
    source: str,
    symbols: Sequence[str],
    timeframe: str | None,
    parsed: Mapping[str, ParsedPage] | None = None,
) -> dict[str, list[Processed]]:
    """These symbols' pending bar pages, looked up at once and processed in one transaction on one
    connection; each symbol's processed series (none: nothing pending)."""
    done: dict[str, list[Processed]] = {symbol: [] for symbol in symbols}
    with resources.connect() as conn:
        groups = pending_pages(conn, source=source, symbols=list(symbols), datasets=BAR_DATASETS, timeframe=timeframe)
        conn.commit()  # end the lookup's transaction: the batch commits on its own
        for symbol, processed in store_bar_series(conn, resources, groups, parsed):
            done[symbol].append(processed)
    return done


def in_batch(batch: Batch, process: SymbolsProcessing) -> Outcomes:
    """``process(symbols, parsed)`` over the whole batch, which must commit once or not at all; if
    it fails, over each symbol alone (a lost database connection fails them all: their callers
    retry). The batch's error is logged: one that only a batch meets would otherwise turn every
    batch into a transaction per symbol unseen."""
    symbols = [symbol for symbol, _ in batch]
    try:
        done = process(symbols, {key: page for _, kept in batch for key, page in (kept or {}).items()})
        return [done[symbol] for symbol in symbols]
    except Exception as exc:
        if len(batch) == 1 or connection_lost(exc):
            return [exc] * len(batch)
        logger.warning(
            "a processing batch of {} symbols ({}..{}) failed ({}: {}); processing each alone",
            len(symbols),
            symbols[0],
            symbols[-1],
            type(exc).__name__,
            " ".join(str(exc).split())[:300],
        )
    return each_alone(batch, process)


def each_alone(batch: Batch, process: SymbolsProcessing) -> Outcomes:
    """``process([symbol], parsed)`` for each symbol of the batch: its series, or its error."""
    out: Outcomes = []
    for symbol, kept in batch:
        try:
            out.append(process([symbol], kept or {})[symbol])
        except Exception as exc:
            out.append(exc)
    return out
