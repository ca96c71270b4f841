"""Helpers of the option-chain tests: ingest a chain through the facade, read what was stored."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import psycopg

from core.settings import Settings
from marketpipe.api import DataPipelineOrchestrator

OPTION_TABLES = ("market.option_quotes", "market.option_contracts")


def ingest_options(settings: Settings, symbol: str, *, with_dividends: bool = True) -> dict[str, Any]:
    """The underlying's dividends (the IV's yield), then its chain, through run_ingestion."""
    orchestrator = DataPipelineOrchestrator(settings)

    async def run() -> dict[str, Any]:
        if with_dividends:
            await orchestrator.run_ingestion(
                data_type="corporate_actions", symbols=[symbol], start_date="2020-01-01", end_date=_today()
            )
        return await orchestrator.run_ingestion(data_type="options", symbols=[symbol])

    return asyncio.run(run())


def _today() -> str:
    return pd.Timestamp.now(tz="UTC").date().isoformat()


def stored_quotes(conn: psycopg.Connection, symbol: str) -> pd.DataFrame:
    cur = conn.execute("SELECT * FROM market.option_quotes WHERE underlying = %s ORDER BY contract, ts", (symbol,))
    names = [d.name for d in cur.description or []]
    return pd.DataFrame(cur.fetchall(), columns=names)


def forget_options(conn: psycopg.Connection, symbol: str) -> None:
    """Delete what the tests stored for ``symbol`` (the chain, its watermark and raw-page rows)."""
    for table in OPTION_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE underlying = %s", (symbol,))  # type: ignore[arg-type]
    conn.execute("DELETE FROM ops.watermarks WHERE symbol = %s", (symbol,))
    conn.execute("DELETE FROM ops.raw_pages WHERE symbol = %s", (symbol,))
    conn.execute("DELETE FROM market.corporate_actions WHERE symbol = %s", (symbol,))
    conn.execute("DELETE FROM features.bar_feature_values WHERE symbol = %s", (symbol,))
