"""The scheduled news flow (deployment news/news-ingest) on the real stack: a holiday is skipped
with its reason; a trading day ingests both news vendors and Reddit for the universe."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import RequestError
from core.settings import Settings
from db.connect import database_connection
from flows.news import SKIPPED, news_flow
from marketpipe.api import DataPipelineManager, DataPipelineOrchestrator


def test_a_holiday_run_is_skipped_with_its_reason(stack: Settings) -> None:
    state = asyncio.run(news_flow(symbols=["AMZN"], day="2026-12-25", return_state=True))
    assert state.is_completed() and state.name == SKIPPED
    assert state.message == "market closed: NYSE holiday (Friday 2026-12-25); no news run"


def test_a_trading_day_run_ingests_both_vendors_and_reddit(stack: Settings) -> None:
    runs = asyncio.run(news_flow(symbols=["AMZN", "META"], day="2026-12-04", lookback_hours=24 * 20))
    assert set(runs) == {"polygon", "alpaca", "reddit"}
    assert all(r["failed"] == [] for r in runs.values())
    assert [runs[s]["data_type"] for s in ("polygon", "alpaca", "reddit")] == ["news", "news", "social"]
    with database_connection(stack) as conn:
        by_source = dict(
            conn.execute(
                "SELECT source, count(*) FROM news.item_symbols WHERE symbol = ANY(%s) GROUP BY source",
                (["AMZN", "META"],),
            ).fetchall()
        )
    assert by_source.get("polygon", 0) > 0 and by_source.get("alpaca", 0) > 0
    stored = sum(p["inserted"] + p["updated"] + p["unchanged"] for r in runs.values() for p in r["processed"])
    assert stored > 0


def test_the_facade_runs_a_news_ingestion(stack: Settings) -> None:
    manager = DataPipelineManager(DataPipelineOrchestrator(stack))
    summary = asyncio.run(
        manager.run_ingestion(
            data_type="news", symbols=["WMT"], start_date="2026-11-01", end_date="2026-12-04", source="alpaca"
        )
    )
    assert summary["data_type"] == "news" and summary["source"] == "alpaca" and summary["failed"] == []
    with database_connection(stack) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM news.item_symbols WHERE symbol = 'WMT' AND source = 'alpaca'"
            " AND published_at < '2026-12-05'"
        ).fetchone()[0]
    assert stored == summary["collected"][0]["records"] > 0
    with pytest.raises(RequestError, match="serves no social"):
        asyncio.run(
            manager.run_ingestion(data_type="social", symbols=["WMT"], start_date="2026-12-01", end_date="2026-12-04")
        )
