"""The historical stage: make the hot store complete over each bar series' window.

It compares what is stored per symbol-session with what the NYSE calendar expects, and refetches
the missing sessions in resumable chunks (a vendor page's worth each, symbols with identical gaps
in one request). Each chunk is an ``ingest`` sub-flow that commits on its own, so an interrupted
backfill resumes where it stopped; the progress artifact shows how far it got.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact

from core.progress import terminal_progress
from core.settings import load_settings
from flows.ingestion import ingest_flow
from pipeline.plan import GapRange
from pipeline.request import check_source, parse_symbols, parse_timeframe_choice, parse_when
from sources.factory import market_data_sources
from tasks.historical import HistoricalSummary, RefetchedChunk, find_gaps, symbol_sessions
from tasks.ingestion import IngestSummary


@flow(name="historical", flow_run_name="historical-{source}-{timeframe}")
async def historical_flow(
    symbols: list[str],
    start_date: str,
    end_date: str,
    timeframe: str = "1day",
    source: str = "polygon",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Refetch every session missing between ``start_date`` and ``end_date`` (gap repair/backfill)."""
    settings = load_settings(overrides=overrides)
    check_source(source, market_data_sources(settings))  # a plugin too; refused before any gap is read
    names = list(parse_symbols(symbols))
    timeframe = parse_timeframe_choice(timeframe)
    start, end = parse_when(start_date, "start_date").date(), parse_when(end_date, "end_date").date()
    gaps = find_gaps(settings, names, timeframe, start, end)
    logger = get_run_logger()
    summary = HistoricalSummary(timeframe, len(gaps), symbol_sessions(gaps))
    if not gaps:
        logger.info("no gaps: every session of %d symbols (%s) is stored", len(names), timeframe)
        return summary.to_dict()
    logger.info("%d symbol-sessions missing in %d chunks; refetching", summary.symbol_sessions, len(gaps))
    progress = await acreate_progress_artifact(0.0, description=f"historical {timeframe}: chunks refetched")
    with terminal_progress(len(gaps), f"gap repair {timeframe}") as advance:
        for done, gap in enumerate(gaps, start=1):
            summary.chunks.append(await _refetch(gap, timeframe, source, overrides))
            advance(1)
            await aupdate_progress_artifact(progress, 100.0 * done / len(gaps))
    await acreate_table_artifact(
        [asdict(c) for c in summary.chunks], key="historical-chunks", description=f"gap repair {timeframe}"
    )
    summary.remaining_symbol_sessions = symbol_sessions(find_gaps(settings, names, timeframe, start, end))
    return summary.to_dict()


async def _refetch(gap: GapRange, timeframe: str, source: str, overrides: dict[str, Any] | None) -> RefetchedChunk:
    """One chunk: an ``ingest`` sub-flow over the gap, refetching and reprocessing it whole."""
    refetched = IngestSummary.from_dict(
        await ingest_flow(
            symbols=list(gap.symbols),
            start_date=gap.start.isoformat(),
            end_date=datetime.combine(gap.end, datetime.max.time()).isoformat(),
            timeframe=timeframe,
            source=source,
            process=True,
            incremental=False,
            overrides=overrides,
        )
    )
    return RefetchedChunk.of(gap, refetched.records_stored, refetched.failed)
