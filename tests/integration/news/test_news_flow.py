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
from sources.http import Request
from storage.lake import Lake
from storage.raw import decode_envelope
from tasks.collection import parse_stored_page


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


def collected_ids(stack: Settings, keys: list[str]) -> list[str]:
    """The ids of the items in the raw pages ``keys`` (a run's own pages), parsed as its processing does."""
    lake = Lake.from_settings(stack.lake)
    ids: list[str] = []
    for key in keys:
        raw = decode_envelope(key, lake.get_bytes(key))
        page = parse_stored_page(raw.source, Request.from_redacted(raw.source, raw.dataset, raw.request), raw.payload)
        ids += page["id"].astype(str).tolist()
    return ids


def test_the_facade_runs_a_news_ingestion(stack: Settings) -> None:
    """What this run collected is stored: its items, read back from its own raw pages, each linked
    to WMT in the window asked, whatever other tests stored before it: an article they ingested for
    another symbol may also name WMT (test_news_ingest stores one of October), and a WMT news
    watermark another test leaves (the news stream's moves it) could let an incremental run skip
    part of the window, so this run fetches the whole window."""
    manager = DataPipelineManager(DataPipelineOrchestrator(stack))
    summary = asyncio.run(
        manager.run_ingestion(
            data_type="news",
            symbols=["WMT"],
            start_date="2026-11-01",
            end_date="2026-12-04",
            source="alpaca",
            incremental=False,
        )
    )
    assert summary["data_type"] == "news" and summary["source"] == "alpaca" and summary["failed"] == []
    [collected] = summary["collected"]
    ids = collected_ids(stack, collected["raw_keys"])
    assert len(set(ids)) == len(ids) == collected["records"] > 0
    with database_connection(stack) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM news.item_symbols WHERE symbol = 'WMT' AND source = 'alpaca' AND id = ANY(%s)"
            " AND published_at >= '2026-11-01' AND published_at < '2026-12-05'",
            (ids,),
        ).fetchone()[0]
    assert stored == len(ids)
    with pytest.raises(RequestError, match="serves no social"):
        asyncio.run(
            manager.run_ingestion(data_type="social", symbols=["WMT"], start_date="2026-12-01", end_date="2026-12-04")
        )
