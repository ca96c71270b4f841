"""A tiered article is a full stored version to the writer: an update of it keeps the tiered
version as history (news.item_versions, news.item_symbol_versions), and a reworded copy of a tiered
story joins it. Items of 2012 and 2013 only (years no other test stores), tiered by an explicit range."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from core import model
from core.settings import Settings
from features.sentiment import load_sentiment_model
from pipeline.news import store_items
from quality.dedup import DedupConfig
from storage.lake import Lake
from storage.news import NewsWriteResult
from storage.tiering import tier_chunks


def _store(conn: psycopg.Connection, rows: list[dict[str, str]], lake: Lake) -> NewsWriteResult:
    frame = model.frame(model.NEWS, {k: [r.get(k) for r in rows] for k in model.NEWS}, what="test news")
    with conn.transaction():
        written, _ = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig(), lake=lake)
    return written


def _tier_year(conn: psycopg.Connection, lake: Lake, stack: Settings, year: int) -> None:
    bounds = datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, tzinfo=UTC)
    tier_chunks(
        conn, lake, stack, older_than=bounds[1], newer_than=bounds[0], dataset=["news_items", "news_item_symbols"]
    )


def test_an_update_of_a_tiered_version_keeps_it_as_history(stack: Settings, conn, lake) -> None:
    """2012: v1 is stored and tiered (item and links), then v2 updates it. The reads as of a time
    between the two saw nothing: v1 was neither hot nor in news.item_versions."""
    v1 = {"id": "v1", "ts": "2012-03-05T15:00:00Z", "updated_ts": "2012-03-05T15:00:00Z", "source": "tierhist",
          "headline": "ZZVR beats estimates and raises its outlook", "symbols": "ZZVR,ZZVS",
          "body": "The company reported strong growth in revenue and profit."}  # fmt: skip
    _store(conn, [v1], lake)
    _tier_year(conn, lake, stack, 2012)
    assert conn.execute("SELECT count(*) FROM news.items WHERE source = 'tierhist'").fetchone()[0] == 0
    v2 = {**v1, "updated_ts": "2012-03-05T19:00:00Z", "symbols": "ZZVR",
          "headline": "ZZVR misses estimates and cuts its outlook",
          "body": "Revenue fell and losses widened."}  # fmt: skip

    written = _store(conn, [v2], lake)

    assert written.inserted == 1
    history = conn.execute(
        "SELECT updated_at, superseded_at, headline, symbols FROM news.item_versions WHERE source = 'tierhist'"
    ).fetchall()
    assert history == [
        (
            datetime(2012, 3, 5, 15, tzinfo=UTC),
            datetime(2012, 3, 5, 19, tzinfo=UTC),
            "ZZVR beats estimates and raises its outlook",
            ["ZZVR", "ZZVS"],
        )
    ]
    links = conn.execute(
        "SELECT symbol, updated_at, superseded_at, sentiment IS NOT NULL FROM news.item_symbol_versions"
        " WHERE source = 'tierhist' ORDER BY symbol"
    ).fetchall()
    stamps = (datetime(2012, 3, 5, 15, tzinfo=UTC), datetime(2012, 3, 5, 19, tzinfo=UTC))
    assert links == [("ZZVR", *stamps, True), ("ZZVS", *stamps, True)]
    before = conn.execute(
        "SELECT symbol, items FROM scan.news_sentiment(48, 'both', 1, 20, '2012-03-05T17:00:00Z')"
    ).fetchall()
    assert sorted(before) == [("ZZVR", 1), ("ZZVS", 1)]
    after = conn.execute("SELECT symbol, items FROM scan.news_sentiment(48, 'both', 1, 20, '2012-03-05T20:00:00Z')")
    assert after.fetchall() == [("ZZVR", 1)]

    assert _store(conn, [v2], lake).unchanged == 1  # a rerun keeps the history as it is
    assert conn.execute("SELECT count(*) FROM news.item_symbol_versions WHERE source = 'tierhist'").fetchone()[0] == 2


def test_a_reworded_copy_of_a_tiered_story_joins_it(stack: Settings, conn, lake) -> None:
    """2013: an article is stored and tiered; another vendor's copy of it, under another URL and a
    little reworded, arrives later. Tiering left the MinHash signature behind, so the tiered article
    was a dedup candidate by key and canonical URL only and the copy founded a story of its own."""
    body = ("The company said the contract covers the maintenance of aircraft at three bases, starts "
            "next spring and lifts its order backlog to a record.")  # fmt: skip
    first = {"id": "d1", "ts": "2013-04-08T13:00:00Z", "source": "tierdup1", "symbols": "ZZDP", "body": body,
             "headline": "ZZDP wins a five year defense contract worth two billion dollars",
             "url": "https://example.com/news/zzdp-wins-defense-contract"}  # fmt: skip
    _store(conn, [first], lake)
    (story,) = conn.execute("SELECT story_id FROM news.items WHERE source = 'tierdup1'").fetchone()
    _tier_year(conn, lake, stack, 2013)
    assert conn.execute("SELECT count(*) FROM news.items WHERE source = 'tierdup1'").fetchone()[0] == 0
    (key,) = conn.execute("SELECT key FROM ops.lake_files WHERE dataset = 'news_items' AND min_ts >= '2013-01-01'"
                          " AND max_ts < '2014-01-01'").fetchone()  # fmt: skip
    assert [len(m) for m in lake.read_parquet(key)["minhash"].to_pylist()] == [4 * DedupConfig().num_perm]
    copy = {**first, "id": "c7", "ts": "2013-04-08T15:30:00Z", "source": "tierdup2",
            "headline": "ZZDP wins five year defense contract worth two billion dollars",
            "url": "https://wire.example.org/markets/zzdp-contract-award"}  # fmt: skip

    written = _store(conn, [copy], lake)

    assert (written.inserted, written.stories_founded) == (1, 0)
    assert conn.execute("SELECT story_id FROM news.items WHERE source = 'tierdup2'").fetchone()[0] == story
