"""Alpaca's news stream (`n` messages over a real WebSocket from the sandbox) through the stream
service into the news store: the items it stores are REST's for the same days, a later REST ingest
of those days finds every article stored (one row, one story each), and malformed frames are
dead-lettered with their raw text while the stream goes on."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest

from core.settings import Settings
from db.connect import database_connection
from storage.watermarks import read_watermarks
from streaming.service import StreamPlan, StreamReport, StreamService
from tests.support.news import ingest, sandbox_now

NEW_YORK = ZoneInfo("America/New_York")
UNIVERSE = ["AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "JPM", "V", "JNJ"]
UNIVERSE += ["WMT", "PG", "XOM", "UNH", "HD", "BAC", "KO", "PFE", "DIS", "NFLX"]  # the sandbox's "*"
SESSIONS = 5


def replay_week(stack: Settings, weeks_back: int) -> tuple[str, datetime, datetime]:
    """A Monday long before anything else the suite ingests (its news tests reach 150 days back),
    and the UTC bounds of the five news days from it (New York midnights)."""
    now = sandbox_now(stack).astimezone(NEW_YORK).date()
    monday = now - timedelta(days=now.weekday()) - timedelta(weeks=weeks_back)
    start = datetime.combine(monday, datetime.min.time(), NEW_YORK).astimezone(UTC)
    return monday.isoformat(), start, start + timedelta(days=SESSIONS) - timedelta(seconds=1)


def news_url(stack: Settings, session: str, **faults: Any) -> str:
    query = {"session": session, "sessions": SESSIONS, "from": "00:00", "speed": 0, **faults}
    return stack.sandbox.base_url.replace("http://", "ws://") + "/v1beta1/news?" + urlencode(query)


def rest_news(stack: Settings, start: datetime, end: datetime) -> list[dict[str, Any]]:
    headers = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
    query: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat(), "limit": 50, "sort": "asc"}
    out: list[dict[str, Any]] = []
    while True:
        body = httpx.get(f"{stack.sandbox.base_url}/v1beta1/news", params=query, headers=headers, timeout=30).json()
        out += body["news"]
        if not body["next_page_token"]:
            return out
        query["page_token"] = body["next_page_token"]


def run_stream(stack: Settings, plan: StreamPlan, done: Any) -> StreamReport:
    """Run the stream until ``done(report)``, or until nothing more arrived for 5 s once something did
    (a replay at speed 0 is delivered within a second or two), then stop it (it drains)."""

    async def scenario() -> StreamReport:
        service = StreamService(stack, plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        seen, quiet = -1, 0
        for _ in range(600):  # bounded
            report = service.report
            if done(report) or runner.done():
                break
            progress = report.messages + report.dead
            quiet = quiet + 1 if progress == seen and progress > 0 else 0
            if quiet >= 25:
                break
            seen = progress
            await asyncio.sleep(0.2)
        stop.set()
        return await asyncio.wait_for(runner, 60)

    return asyncio.run(asyncio.wait_for(scenario(), 180))


def stored(stack: Settings, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT id, story_id, headline, symbols, published_at, updated_at, sentiment, url FROM news.items"
            " WHERE source = 'alpaca' AND kind = 'news' AND published_at BETWEEN %s AND %s",
            (start, end),
        ).fetchall()
    names = ("story_id", "headline", "symbols", "published_at", "updated_at", "sentiment", "url")
    return {r[0]: dict(zip(names, r[1:], strict=True)) for r in rows}


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_streamed_news_is_what_rest_serves_and_rest_later_finds_it_stored(stack: Settings) -> None:
    session, start, end = replay_week(stack, 40)
    assert not stored(stack, start, end)  # nothing of these days yet: the stream stores them first
    rest = rest_news(stack, start, end)
    updates = sum(1 for r in rest if r["updated_at"] != r["created_at"])
    assert rest and updates  # the week has articles, some of them updated later
    plan = StreamPlan.of("alpaca", ["*"], ("news",), url=news_url(stack, session))

    report = run_stream(stack, plan, lambda r: r.messages >= len(rest) + updates)

    assert report.dead == 0 and report.news_refused == 0 and report.connects == 1
    items = stored(stack, start, end)
    assert sorted(items) == sorted(str(r["id"]) for r in rest)
    for record in rest:  # the last version streamed: REST's
        item = items[str(record["id"])]
        assert item["published_at"] == instant(record["created_at"])
        assert item["updated_at"] == instant(record["updated_at"])
        assert item["symbols"] == record["symbols"] and item["url"] == record["url"]
        assert item["headline"] == record["headline"] and item["sentiment"] is not None
    with database_connection(stack) as conn:
        marks = read_watermarks(conn, source="alpaca", dataset="news", symbols=UNIVERSE)
        vectors = conn.execute(
            "SELECT count(DISTINCT story_id) FROM news.story_embeddings WHERE story_id = ANY(%s)",
            ([i["story_id"] for i in items.values()],),
        ).fetchone()
    for record in rest:
        for symbol in record["symbols"]:
            assert marks[("alpaca", "news", symbol, "")].high_water_ts >= instant(record["created_at"])
    if stack.embeddings.enabled:
        assert vectors is not None and vectors[0] == len({i["story_id"] for i in items.values()})

    summary = ingest("alpaca", "news", UNIVERSE, start, end, incremental=False)

    assert not summary["failed"]
    assert sum(p["inserted"] + p["updated"] for p in summary["processed"]) == 0  # REST found all stored
    assert stored(stack, start, end) == items  # one row and one story per article, unchanged


@pytest.fixture
def feed_tag(stack: Settings):
    tag = f"news-{uuid.uuid4().hex[:8]}"  # names this test's dead letters
    yield tag
    with database_connection(stack, autocommit=True) as conn:
        conn.execute("DELETE FROM ops.dead_letters WHERE dataset = 'stream' AND request->>'feed' = %s", (tag,))


def test_malformed_news_frames_are_dead_lettered_with_their_raw_text(stack: Settings, feed_tag: str) -> None:
    session, start, end = replay_week(stack, 45)
    rest = rest_news(stack, start, end)
    url = news_url(stack, session, malformed=0.4, seed=3)
    plan = StreamPlan.of("alpaca", ["*"], ("news",), url=url, feed=feed_tag)

    report = run_stream(stack, plan, lambda r: False)

    with database_connection(stack) as conn:
        letters = conn.execute(
            "SELECT error, payload #>> '{}' FROM ops.dead_letters WHERE source = 'alpaca' AND dataset = 'stream'"
            " AND request->>'feed' = %s",
            (feed_tag,),
        ).fetchall()
    assert report.dead >= 1 and len(letters) == report.dead and report.connects == 1
    assert all(error.startswith("not JSON") and payload.startswith('[{"T":"n"') for error, payload in letters)
    items = stored(stack, start, end)
    assert items and set(items) <= {str(r["id"]) for r in rest}  # the good frames went on into the store
