"""The ingestion stage as a Prefect flow: vendor pages into the raw zone, a task per symbol.

Symbols run in waves of ``collection.batch_size``, at most ``collection.max_parallel_symbols`` at
once; each wave updates the run's progress artifact. The request is checked before anything is
fetched; a failing symbol is recorded (dead letter + summary row) and the others complete.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from db.connect import async_database_connection
from marketpipe.settings import Settings, load_settings
from tasks.pipeline.collect import SymbolCollection, collect_symbol
from tasks.pipeline.request import IngestRequest, parse_ingest_request
from tasks.sources.base import BaseSource, build_source
from tasks.storage.lake import Lake


def run_name() -> str:
    """ingest-polygon-1min-2026-11-20: source, timeframe and the range's last day."""
    params = flow_run.get_parameters()
    end = str(params.get("end_date") or "")[:10] or "latest"
    return f"ingest-{params.get('source', 'polygon')}-{params.get('timeframe', '1day')}-{end}"


@task(name="collect-symbol", cache_policy=NONE, task_run_name="collect-{symbol}")
async def collect_symbol_task(
    settings: Settings, source: BaseSource, request: IngestRequest, symbol: str, start: datetime, run_id: str
) -> SymbolCollection:
    lake = Lake.from_settings(settings.lake)
    async with await async_database_connection(settings, autocommit=True) as conn:
        return await collect_symbol(source, request, symbol, start, lake, conn, run_id)


async def collect_all(
    settings: Settings, request: IngestRequest, run_id: str, starts: dict[str, datetime] | None = None
) -> list[SymbolCollection]:
    """Every symbol of the request, in waves, bounded parallelism; one progress artifact."""
    collection = settings.collection
    gate = asyncio.Semaphore(collection.max_parallel_symbols)
    source = build_source(request.source, settings)
    progress = await acreate_progress_artifact(0.0, description=f"symbols collected from {request.source}")
    results: list[SymbolCollection] = []

    async def one(symbol: str) -> SymbolCollection:
        async with gate:
            start = (starts or {}).get(symbol, request.start)
            return await collect_symbol_task(settings, source, request, symbol, start, run_id)

    try:
        symbols = list(request.symbols)
        for offset in range(0, len(symbols), collection.batch_size):
            wave = symbols[offset : offset + collection.batch_size]
            results += await asyncio.gather(*(one(symbol) for symbol in wave))
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
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect ``symbols`` from ``source`` into the raw zone (the processing stage stores them)."""
    settings = load_settings(overrides=overrides)
    request = parse_ingest_request(data_type=data_type, symbols=symbols, start_date=start_date, end_date=end_date,
                                   timeframe=timeframe, source=source)  # fmt: skip
    run_id = str(flow_run.get_id() or uuid.uuid4())
    results = await collect_all(settings, request, run_id)
    await publish_collection_summary(request, results)
    failed = [r.symbol for r in results if r.error]
    logger = get_run_logger()
    logger.info("collected %d pages, %d records for %d symbols", sum(r.pages for r in results),
                sum(r.records for r in results), len(results))  # fmt: skip
    if failed:
        logger.warning("%d symbol(s) failed and were dead-lettered: %s", len(failed), ", ".join(failed[:20]))
    return {"run_id": run_id, "symbols": [asdict(r) for r in results]}
