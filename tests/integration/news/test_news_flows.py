"""News flows on the real stack: Reddit posts, an update replacing its article, a kill -9 in the
middle of an ingest and its rerun, refused and flagged input, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest

from core import model
from core.settings import Settings
from db.connect import database_connection
from features.sentiment import load_sentiment_model
from pipeline.news import store_items
from quality.dedup import DedupConfig
from tests.support.news import ingest, sandbox_now, truth


def test_reddit_posts_are_stored_flagged_and_linked_to_the_symbols_they_name(stack: Settings) -> None:
    end = sandbox_now(stack)
    start = end - timedelta(hours=30)
    summary = ingest("reddit", "social", ["TSLA"], start, end)
    assert not summary["failed"]
    told = {p["id"]: p for p in truth(stack, [], start, end, "wallstreetbets,stocks,investing")["posts"]}
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT id, flags, symbols, sentiment FROM news.items WHERE source = 'reddit' AND published_at >= %s",
            (start,),
        ).fetchall()
        linked = conn.execute(
            "SELECT DISTINCT symbol FROM news.item_symbols WHERE source = 'reddit' AND published_at >= %s", (start,)
        ).fetchall()
    posts = {r[0]: r for r in rows}
    assert set(told) <= set(posts)  # every post of the subreddits in the window, none lost
    spam = [i for i, p in told.items() if p["kind"] == "spam"]
    off_topic = [i for i, p in told.items() if p["kind"] == "off_topic"]
    assert spam and all("spam" in posts[i][1] for i in spam)
    assert off_topic and all("off_topic" in posts[i][1] and posts[i][2] == [] for i in off_topic)
    assert all(posts[i][2] == [told[i]["symbol"]] for i in told if told[i]["kind"] == "post")
    assert {s for (s,) in linked} <= set(model.SCHEMAS) | {p["symbol"] for p in told.values()}


def test_an_update_replaces_the_stored_article_and_its_symbols(stack: Settings) -> None:
    now = sandbox_now(stack)
    start = now - timedelta(days=60)
    symbols = ["AAPL", "MSFT", "TSLA", "NVDA", "JPM", "XOM", "V"]
    updated = [
        t
        for t in truth(stack, symbols, start, now)["news"]
        if t["source"] == "alpaca" and t["updated_ns"] > t["published_ns"] + 60 * 10**9
    ]
    assert updated, "the sandbox updates about a quarter of Benzinga's articles"
    target = updated[-1]
    symbol = target["symbols"][0] if target["symbols"][0] in symbols else symbols[0]
    before = datetime.fromtimestamp((target["updated_ns"] - 60 * 10**9) / 1e9, UTC)
    clock = f"{stack.sandbox.base_url}/_sandbox/clock"
    try:
        assert httpx.post(clock, json={"now": before.isoformat()}).status_code == 200
        ingest("alpaca", "news", [symbol], start, before, incremental=False)
    finally:
        httpx.delete(clock)
    key = ("alpaca", target["id"])
    with database_connection(stack) as conn:
        first = conn.execute(
            "SELECT headline, updated_at FROM news.items WHERE source = %s AND id = %s", key
        ).fetchall()
    assert len(first) == 1 and not first[0][0].startswith("UPDATE")
    ingest("alpaca", "news", [symbol], start, now, incremental=False)
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT headline, updated_at, symbols, story_id FROM news.items WHERE source = %s AND id = %s", key
        ).fetchall()
        links = conn.execute(
            "SELECT symbol FROM news.item_symbols WHERE source = %s AND id = %s ORDER BY symbol", key
        ).fetchall()
    assert len(rows) == 1
    headline, updated_at, stored_symbols, _ = rows[0]
    assert headline == target["headline"] and headline.startswith("UPDATE: ")
    # the wire's RFC 3339 times have whole seconds
    assert int(updated_at.timestamp()) == target["updated_ns"] // 10**9 and updated_at > first[0][1]
    assert sorted(stored_symbols) == sorted(target["symbols"]) == [s for (s,) in links]


def test_kill_9_in_the_middle_of_an_ingest_then_a_rerun_leaves_one_story_per_story(
    stack: Settings, marketpipe_cli
) -> None:
    end = sandbox_now(stack)
    start = end - timedelta(days=150)
    args = ["ingest", "--data-type", "news", "--source", "alpaca", "--symbols", "KO"]
    args += ["--start", start.date().isoformat(), "--end", end.date().isoformat()]
    crashed = marketpipe_cli(*args, env={"MARKETPIPE_CRASH_AT": "news:before_commit"}, timeout=300)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    with database_connection(stack) as conn:
        assert (
            conn.execute("SELECT count(*) FROM news.items WHERE 'KO' = ANY(symbols) AND source = 'alpaca'").fetchone()[
                0
            ]
            == 0
        )
    rerun = marketpipe_cli(*args, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    told = [t for t in truth(stack, ["KO"], start, end)["news"] if t["source"] == "alpaca"]
    with database_connection(stack) as conn:
        rows = dict(
            conn.execute(
                "SELECT id, story_id FROM news.items WHERE source = 'alpaca' AND id = ANY(%s)",
                ([t["id"] for t in told],),
            ).fetchall()
        )
        orphans = conn.execute(
            "SELECT count(*) FROM news.stories s"
            " WHERE NOT EXISTS (SELECT 1 FROM news.items i WHERE i.story_id = s.story_id)"
        ).fetchone()[0]
    assert told and set(rows) == {t["id"] for t in told}
    by_story: dict[str, set[int]] = {}
    for t in told:
        by_story.setdefault(t["story"], set()).add(rows[t["id"]])
    assert all(len(ids) == 1 for ids in by_story.values())  # no story split in two
    assert len(set(rows.values())) == len(by_story) and orphans == 0


def _news_frame(rows: list[dict]) -> pd.DataFrame:
    columns = {name: [r.get(name) for r in rows] for name in model.NEWS}
    return model.frame(model.NEWS, columns, what="test news")


def test_bad_input_is_stored_flagged_or_refused_with_a_reason(stack: Settings) -> None:
    ts = "2001-02-05T15:00:00Z"
    base = {"ts": ts, "source": "testvendor", "url": None, "author": None, "publisher": None, "summary": None}
    frame = _news_frame(
        [
            {**base, "id": "empty", "headline": "", "body": ""},
            {
                **base,
                "id": "html",
                "headline": "ZZQA <b>jumps</b>",
                "body": "<p>Shares of ZZQA rose.</p>",
                "symbols": "ZZQA",
            },
            {
                **base,
                "id": "huge",
                "headline": "ZZQA files a long report",
                "body": "the report " * 12_000,
                "symbols": "ZZQA",
            },
            {
                **base,
                "id": "spanish",
                "headline": "ZZQA sube",
                "body": "Las acciones de la empresa subieron después de que los resultados superaran las previsiones",
                "symbols": "ZZQA",
            },
            {**base, "id": "badsym", "headline": "ZZQA and friends", "body": "Text.", "symbols": "ZZQA,NOT A TICKER"},
            {  # array literals: quotes, backslashes, braces and the word NULL read back as they were
                **base,
                "id": "oddsym",
                "headline": "ZZQA and odd spellings",
                "body": "Text.",
                "symbols": 'ZZQA,null,{a"b\\c}',
            },
        ]
    )
    with database_connection(stack) as conn:
        with conn.transaction():
            written, rejected = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig())
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, flags, sentiment, length(body), symbols FROM news.items WHERE source = 'testvendor'"
            ).fetchall()
        }
        conn.execute("DELETE FROM news.items WHERE source = 'testvendor'")
        conn.execute("DELETE FROM news.item_symbols WHERE source = 'testvendor'")
        conn.commit()
    assert [r["id"] for r in rejected] == ["empty"] and "empty" in rejected[0]["reason"]
    assert written.inserted == 5 and set(rows) == {"html", "huge", "spanish", "badsym", "oddsym"}
    assert "html_stripped" in rows["html"][0]
    assert "truncated" in rows["huge"][0] and rows["huge"][2] == 20_000
    assert "non_english" in rows["spanish"][0] and rows["spanish"][1] is None
    assert rows["badsym"][3] == ["ZZQA"] and any(f.startswith("bad_symbols:") for f in rows["badsym"][0])
    assert rows["oddsym"][3] == ["ZZQA", "NULL"] and rows["oddsym"][0] == ['bad_symbols:{A"B\\C}']


def test_cli_lists_the_latest_news_and_shows_a_story(stack: Settings, marketpipe_cli) -> None:
    end = sandbox_now(stack)
    ingest("polygon", "news", ["NVDA"], end - timedelta(days=90), end)
    latest = marketpipe_cli("news", "latest", "--symbols", "NVDA", "--limit", "5", "--json")
    assert latest.returncode == 0, latest.stderr
    items = json.loads(latest.stdout)
    assert 0 < len(items) <= 5 and all("NVDA" in i["symbols"] for i in items)
    assert [i["published_at"] for i in items] == sorted((i["published_at"] for i in items), reverse=True)
    shown = marketpipe_cli("news", "story", str(items[0]["story_id"]))
    assert shown.returncode == 0 and f"story {items[0]['story_id']}" in shown.stdout
    assert items[0]["id"] in shown.stdout
    missing = marketpipe_cli("news", "story", "1")
    assert missing.returncode != 0 and "no story 1 is stored" in missing.stderr and "Traceback" not in missing.stderr
    bad = marketpipe_cli("news", "latest", "--kind", "tweets")
    assert bad.returncode != 0 and "--kind 'tweets'" in bad.stderr


@pytest.mark.parametrize("source", ["yahoo"])
def test_a_vendor_without_news_is_refused_before_any_request(stack: Settings, source: str) -> None:
    from core.errors import RequestError

    end = sandbox_now(stack)
    with pytest.raises(RequestError, match="serves no news"):
        ingest(source, "news", ["AAPL"], end - timedelta(days=1), end)
