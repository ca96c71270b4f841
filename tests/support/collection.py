"""One symbol collected from the stack's market sandbox through the Polygon adapter, as the
ingestion stage collects it (raw zone, manifest; the parsed frames kept when asked for)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from core.settings import Settings
from db.connect import async_database_connection
from pipeline.request import parse_ingest_request
from sources.factory import build_source
from storage.lake import Lake
from tasks.collection import SymbolCollection, collect_symbol

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def collect(
    stack: Settings,
    symbol: str,
    start: str,
    end: str,
    timeframe: str = "1min",
    keep_parsed: bool = False,
    data_type: str = "market_data",
    now: datetime = NOW,
    **source_options: Any,
) -> SymbolCollection:
    request = parse_ingest_request(
        data_type=data_type,
        symbols=[symbol],
        start_date=start,
        end_date=end,
        timeframe=timeframe,
        source="polygon",
        now=now,
    )

    async def run() -> SymbolCollection:
        source = build_source("polygon", stack, options=source_options)
        async with source, await async_database_connection(stack, autocommit=True) as conn:
            return await collect_symbol(
                source,
                request,
                symbol,
                request.start,
                Lake.from_settings(stack.lake),
                conn,
                run_id=str(uuid.uuid4()),
                keep_parsed=keep_parsed,
            )

    return asyncio.run(run())
