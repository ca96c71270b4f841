"""The historical stage: make the hot store complete over each bar series' window.

It compares what is stored per symbol-session with what the NYSE calendar expects, and refetches
the missing sessions in resumable chunks (a vendor page's worth each, symbols with identical gaps
in one request). Each chunk is an ``ingest`` sub-flow that commits on its own, so an interrupted
backfill resumes where it stopped; the progress artifact shows how far it got.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact

from flows.ingestion import ingest_flow
from core.progress import terminal_progress
from core.settings import Settings, load_settings
from pipeline.plan import GapRange, gap_ranges, missing_sessions, sessions_per_request
from pipeline.request import parse_symbols, parse_timeframe_choice, parse_when
from core.calendar import nyse_sessions
from storage.router import StorageRouter


def stored_sessions(settings: Settings, symbols: list[str], timeframe: str, start: date, end: date) -> pd.DataFrame:
    """Bars stored per symbol and New York session date, in the hot store or tiered to the lake."""
    with StorageRouter.connect(settings) as router:
        return router.bars_per_session(symbols, start, end + timedelta(days=1), timeframe)


def last_closed_session(end: date, now: datetime) -> date:
    """``end``, or the last session before it whose close has passed (a session still trading is
    not a gap)."""
    recent = nyse_sessions(end - timedelta(days=10), end)
    closed = recent.dates[recent.close_ns <= pd.Timestamp(now).value]
    return pd.Timestamp(closed[-1]).date() if len(closed) else end - timedelta(days=10)


def find_gaps(settings: Settings, symbols: list[str], timeframe: str, start: date, end: date) -> list[GapRange]:
    end = min(end, last_closed_session(end, datetime.now(UTC)))
    schedule = nyse_sessions(start, end)
    stored = stored_sessions(settings, symbols, timeframe, start, end)
    missing = missing_sessions(stored, schedule, timeframe, symbols)
    return gap_ranges(missing, schedule, sessions_per_request(timeframe))


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
    names = list(parse_symbols(symbols))
    timeframe = parse_timeframe_choice(timeframe)
    start, end = parse_when(start_date, "start_date").date(), parse_when(end_date, "end_date").date()
    gaps = find_gaps(settings, names, timeframe, start, end)
    logger = get_run_logger()
    total = sum(g.sessions * len(g.symbols) for g in gaps)
    if not gaps:
        logger.info("no gaps: every session of %d symbols (%s) is stored", len(names), timeframe)
        return {"timeframe": timeframe, "gaps": 0, "symbol_sessions": 0, "chunks": []}
    logger.info("%d symbol-sessions missing in %d chunks; refetching", total, len(gaps))
    progress = await acreate_progress_artifact(0.0, description=f"historical {timeframe}: chunks refetched")
    chunks = []
    with terminal_progress(len(gaps), f"gap repair {timeframe}") as advance:
        for done, gap in enumerate(gaps, start=1):
            chunks.append(await _refetch(gap, timeframe, source, overrides))
            advance(1)
            await aupdate_progress_artifact(progress, 100.0 * done / len(gaps))
    await acreate_table_artifact(chunks, key="historical-chunks", description=f"gap repair {timeframe}")
    remaining = find_gaps(settings, names, timeframe, start, end)
    return {"timeframe": timeframe, "gaps": len(gaps), "symbol_sessions": total, "chunks": chunks,
            "remaining_symbol_sessions": sum(g.sessions * len(g.symbols) for g in remaining)}  # fmt: skip


async def _refetch(gap: GapRange, timeframe: str, source: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """One chunk: an ``ingest`` sub-flow over the gap, refetching and reprocessing it whole."""
    summary = await ingest_flow(
        symbols=list(gap.symbols), start_date=gap.start.isoformat(),
        end_date=datetime.combine(gap.end, datetime.max.time()).isoformat(), timeframe=timeframe,
        source=source, process=True, incremental=False, overrides=overrides,
    )  # fmt: skip
    stored = sum(p["inserted"] + p["updated"] for p in summary["processed"])
    return {"symbols": ",".join(gap.symbols), "start": gap.start.isoformat(), "end": gap.end.isoformat(),
            "sessions": gap.sessions, "bars_stored": stored, "failed": ",".join(summary["failed"])}  # fmt: skip
