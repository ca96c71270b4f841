"""Helpers of the news integration tests: the sandbox's clock, an ingest run, the sandbox's truth."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx

from core.settings import Settings
from flows.ingestion import ingest_flow


def sandbox_now(stack: Settings) -> datetime:
    return datetime.fromisoformat(httpx.get(f"{stack.sandbox.base_url}/_sandbox/health").json()["now"])


def ingest(source: str, data_type: str, symbols: list[str], start: datetime, end: datetime, **kwargs):
    return asyncio.run(
        ingest_flow(
            symbols=symbols,
            start_date=start.isoformat(),
            end_date=end.isoformat(),
            data_type=data_type,
            source=source,
            **kwargs,
        )
    )


def truth(stack: Settings, symbols: list[str], start: datetime, end: datetime, subreddits: str = "") -> dict:
    """Which items are one story and each story's polarity (GET /_sandbox/news/truth)."""
    params = {"symbols": ",".join(symbols), "start": start.isoformat(), "end": end.isoformat()}
    if subreddits:
        params["subreddits"] = subreddits
    return httpx.get(f"{stack.sandbox.base_url}/_sandbox/news/truth", params=params).json()
