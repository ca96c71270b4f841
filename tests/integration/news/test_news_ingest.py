"""News and posts through the real stack: two vendors and Reddit over HTTP from the sandbox into
the news store, stories measured against the sandbox's truth, updates, a kill -9 mid-ingest."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

import httpx
import pandas as pd
import pytest

from core.settings import Settings
from db.connect import database_connection
from features.news_sentiment import NEWS_FEATURE_SET, bar_close_ns
from flows.ingestion import ingest_flow
from quality.dedup import pairwise_scores
from storage.news import read_news_features

SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA", "JPM"]


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
    params = {"symbols": ",".join(symbols), "start": start.isoformat(), "end": end.isoformat()}
    if subreddits:
        params["subreddits"] = subreddits
    return httpx.get(f"{stack.sandbox.base_url}/_sandbox/news/truth", params=params).json()


@pytest.fixture(scope="module")
def news_window(stack: Settings) -> tuple[datetime, datetime]:
    end = sandbox_now(stack)
    return end - timedelta(days=120), end


@pytest.fixture(scope="module")
def ingested(stack: Settings, news_window) -> dict:
    start, end = news_window
    summaries = [ingest(source, "news", SYMBOLS, start, end) for source in ("polygon", "alpaca")]
    return {"summaries": summaries, "truth": truth(stack, SYMBOLS, start, end)}


def stored(stack: Settings) -> dict[tuple[str, str], dict]:
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT source, id, story_id, headline, sentiment, vendor_sentiment, symbols, updated_at, published_at"
            " FROM news.items WHERE kind = 'news'"
        ).fetchall()
    names = ("story_id", "headline", "sentiment", "vendor_sentiment", "symbols", "updated_at", "published_at")
    return {(r[0], r[1]): dict(zip(names, r[2:], strict=True)) for r in rows}


def test_both_vendors_are_stored_once_and_dedup_meets_the_truth(stack: Settings, ingested: dict) -> None:
    items = stored(stack)
    expected = {(t["source"], t["id"]) for t in ingested["truth"]["news"]}
    assert expected and expected <= set(items)
    assert all(not s["failed"] for s in ingested["summaries"])
    precision, recall = pairwise_scores(
        [(f"{t['source']}:{t['id']}", t["story"]) for t in ingested["truth"]["news"]],
        [(f"{s}:{i}", str(items[(s, i)]["story_id"])) for s, i in expected],
    )
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    with database_connection(stack) as conn:
        stories = dict(conn.execute("SELECT story_id, items FROM news.stories").fetchall())
    per_story = Counter(items[k]["story_id"] for k in items)
    assert {s: per_story[s] for s in per_story} == {s: stories[s] for s in per_story}  # aggregates agree


def test_every_item_has_our_sentiment_beside_the_vendors(stack: Settings, ingested: dict) -> None:
    items = stored(stack)
    assert all(v["sentiment"] is not None and -1 <= v["sentiment"] <= 1 for v in items.values())
    polygon = [v for (s, _), v in items.items() if s == "polygon"]
    assert polygon and all(v["vendor_sentiment"] is not None for v in polygon)  # Polygon's insights kept
    with database_connection(stack) as conn:
        links = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE vendor_label IS NOT NULL) FROM news.item_symbols"
            " WHERE source = 'polygon'"
        ).fetchone()
    assert links[0] > 0 and links[1] == links[0]


def test_a_rerun_changes_nothing(stack: Settings, ingested: dict, news_window) -> None:
    before = stored(stack)
    start, end = news_window
    summary = ingest("polygon", "news", SYMBOLS, start, end, incremental=False)
    assert sum(p["inserted"] + p["updated"] for p in summary["processed"]) == 0
    assert stored(stack) == before


def test_sentiment_features_of_daily_bars_are_point_in_time(stack: Settings, ingested: dict, news_window) -> None:
    start, end = news_window
    ingest("polygon", "market_data", ["NVDA"], start, end, timeframe="1day")
    ingest("polygon", "news", ["NVDA"], start, end, incremental=False)  # computes the features after storing
    with database_connection(stack) as conn:
        features = read_news_features(conn, ["NVDA"], "1day", start, end, NEWS_FEATURE_SET)
        links = conn.execute(
            "SELECT published_at, sentiment FROM news.item_symbols WHERE symbol = 'NVDA' AND kind = 'news'"
        ).fetchall()
    assert len(features) > 50 and features["news_count_72h"].sum() > 0
    published = pd.Series([p for p, _ in links])
    closes = pd.to_datetime(bar_close_ns(features["ts"], "1day"), utc=True)
    after_close_same_day = 0
    for close, count in zip(closes, features["news_count_24h"], strict=True):
        assert count == ((published > close - pd.Timedelta(hours=24)) & (published <= close)).sum()
        after_close_same_day += int(((published > close) & (published < close + pd.Timedelta(hours=8))).sum())
    assert after_close_same_day > 0  # evening news exists, and the counts above left it to the next bar
