"""An updated article counts, in the sentiment features, as the version known at each bar's close
(review pit.md finding 4): the update replaces the stored item and its links (what the readers
show), the version it replaces is kept with its links (migration 0026) and counts until the update's
``updated_at``. Items of March 2002 only, source 'vertest' (a range and a source no other test uses);
the symbols are the test's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pandas as pd
import psycopg
import pytest

from core import model
from features.news_sentiment import NEWS_FEATURE_SET
from features.sentiment import load_sentiment_model
from pipeline.news import store_items
from quality.dedup import DedupConfig
from storage.hot import upsert_bars
from storage.news import latest_items, read_news_features, story
from storage.scanners import news_sentiment, run_scan
from tasks.news import refresh_news_features
from tests.support.storage import bars

SOURCE = "vertest"
PUBLISHED = "2002-03-04T15:05:00Z"  # 10:05 New York
UPDATED = "2002-03-04T20:30:00Z"  # 15:30 New York
# 1-minute bars closing at 10:06, 15:29, 15:30 (the update's time: it counts) and 15:31 New York
BAR_STARTS = ("2002-03-04T15:05:00Z", "2002-03-04T20:28:00Z", "2002-03-04T20:29:00Z", "2002-03-04T20:30:00Z")
BEFORE, AFTER = (0, 1), (2, 3)  # the bars before the update's time, the bars from it on


def article(item: str, updated: str, headline: str, symbols: str, published: str = PUBLISHED) -> dict[str, str]:
    body = f"{headline}. The company said so in a statement on its results."
    return {"id": item, "ts": published, "updated_ts": updated, "headline": headline, "body": body, "symbols": symbols}


def store(conn: psycopg.Connection, *versions: dict[str, str]) -> None:
    rows = [{**v, "source": SOURCE} for v in versions]
    frame = model.frame(model.NEWS, {k: [r.get(k) for r in rows] for k in model.NEWS}, what="test news")
    with conn.transaction():
        store_items(conn, frame, "news", load_sentiment_model(), DedupConfig())


def features(conn: psycopg.Connection, symbols: list[str]) -> pd.DataFrame:
    """The news features of the test's 1-minute bars of ``symbols``, after storing the bars and
    refreshing the features (the product's path: tasks.news.refresh_news_features)."""
    frame = pd.concat([bars(s, 1, start=ts) for s in symbols for ts in BAR_STARTS], ignore_index=True)
    upsert_bars(conn, frame)
    start, end = datetime(2002, 3, 4, tzinfo=UTC), datetime(2002, 3, 5, tzinfo=UTC)
    refresh_news_features(conn, symbols, "1min", start, end)
    read = read_news_features(conn, symbols, "1min", start, end, NEWS_FEATURE_SET)
    return read.sort_values(["symbol", "ts"]).reset_index(drop=True)


def of(table: pd.DataFrame, symbol: str, feature: str, bars_at: tuple[int, ...]) -> list[float]:
    values = table[table["symbol"] == symbol][feature].tolist()
    return [values[i] for i in bars_at]


@pytest.fixture
def clean(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    yield conn
    for table in ("news.item_symbol_versions", "news.item_versions", "news.item_symbols", "news.items"):
        conn.execute(f"DELETE FROM {table} WHERE source = %s", (SOURCE,))  # type: ignore[arg-type]


def test_an_update_reaches_the_features_from_its_time_on_and_the_readers_at_once(
    clean: psycopg.Connection, symbols: Callable[[], str]
) -> None:
    first, added = symbols(), symbols()
    store(clean, article("u1", PUBLISHED, f"{first} beats estimates and raises its outlook on strong demand", first))
    store(clean, article("u1", UPDATED, f"{added} plunges after a fraud probe and heavy losses", added))

    old_score, new_score = (
        clean.execute(f"SELECT sentiment FROM news.{table} WHERE source = %s AND id = 'u1'", (SOURCE,)).fetchone()[0]
        for table in ("item_symbol_versions", "item_symbols")
    )
    assert old_score > 0 > new_score  # the two versions' sentiment differ (else the test proves nothing)

    table = features(clean, [first, added])
    # before 15:30 the 10:05 version only: its symbol, its sentiment
    assert of(table, first, "news_count_24h", BEFORE) == [1.0, 1.0]
    assert of(table, first, "news_sentiment_mean_24h", BEFORE) == pytest.approx([old_score, old_score])
    assert of(table, added, "news_count_24h", BEFORE) == [0.0, 0.0]
    # from 15:30 on the update only: the symbol it added, its sentiment; the dropped symbol has none
    assert of(table, added, "news_count_24h", AFTER) == [1.0, 1.0]
    assert of(table, added, "news_sentiment_mean_24h", AFTER) == pytest.approx([new_score, new_score])
    assert of(table, first, "news_count_24h", AFTER) == [0.0, 0.0]

    # the readers show the latest version only
    (latest,) = [i for i in latest_items(clean, symbols=[first, added]) if i["source"] == SOURCE]
    assert latest["symbols"] == [added] and latest["headline"].startswith(f"{added} plunges")
    members = story(clean, latest["story_id"])["members"]  # type: ignore[index]
    assert [(m["id"], m["symbols"]) for m in members] == [("u1", [added])]


def test_the_replaced_version_is_kept_with_its_links_until_the_update(
    clean: psycopg.Connection, symbols: Callable[[], str]
) -> None:
    first, added = symbols(), symbols()
    store(clean, article("u2", PUBLISHED, f"{first} wins a large contract", first))
    update = article("u2", UPDATED, f"{first} and {added} win a large contract together", f"{first},{added}")
    store(clean, update)
    store(clean, update)  # a rerun: the replaced version is kept once, the update supersedes nothing
    kept = clean.execute(
        "SELECT headline, symbols, updated_at::text, superseded_at::text FROM news.item_versions"
        " WHERE source = %s AND id = 'u2'",
        (SOURCE,),
    ).fetchall()
    assert kept == [(f"{first} wins a large contract", [first], "2002-03-04 15:05:00+00", "2002-03-04 20:30:00+00")]
    links = clean.execute(
        "SELECT symbol, updated_at::text, superseded_at::text FROM news.item_symbol_versions"
        " WHERE source = %s AND id = 'u2'",
        (SOURCE,),
    ).fetchall()
    assert links == [(first, "2002-03-04 15:05:00+00", "2002-03-04 20:30:00+00")]
    current = clean.execute(
        "SELECT symbol FROM news.item_symbols WHERE source = %s AND id = 'u2' ORDER BY symbol", (SOURCE,)
    ).fetchall()
    assert current == sorted([(first,), (added,)])


def test_an_update_that_moved_the_publication_time_keeps_the_earlier_version_counting_before_it(
    clean: psycopg.Connection, symbols: Callable[[], str]
) -> None:
    symbol = symbols()
    store(clean, article("u3", PUBLISHED, f"{symbol} beats estimates and raises its outlook on strong demand", symbol))
    moved = article(
        "u3", UPDATED, f"{symbol} plunges after a fraud probe and heavy losses", symbol, "2002-03-04T15:04:00Z"
    )
    store(clean, moved)
    table = features(clean, [symbol])
    assert of(table, symbol, "news_count_24h", (0, 1, 2, 3)) == [1.0, 1.0, 1.0, 1.0]  # one version at a time
    before, after = (
        of(table, symbol, "news_sentiment_mean_24h", BEFORE),
        of(table, symbol, "news_sentiment_mean_24h", AFTER),
    )
    assert before[0] > 0 > after[0]


def test_an_item_first_stored_in_a_version_updated_after_a_bar_never_reaches_that_bar(
    clean: psycopg.Connection, symbols: Callable[[], str]
) -> None:
    """Published 10:05, first seen as updated at 15:30: what it said at 10:05 was never known here."""
    symbol = symbols()
    store(clean, article("u4", UPDATED, f"{symbol} plunges after a fraud probe and heavy losses", symbol))
    table = features(clean, [symbol])
    assert of(table, symbol, "news_count_24h", (0, 1, 2, 3)) == [0.0, 0.0, 1.0, 1.0]


def test_the_news_scanner_as_of_a_past_time_sees_the_version_known_then(
    clean: psycopg.Connection, symbols: Callable[[], str]
) -> None:
    """scan.news_sentiment(..., as_of) read the current links by publication time, so a 15:30
    update (its sentiment, the symbol it added) counted as of 15:29; now as of 15:29 the 10:05
    version counts (its symbol, its sentiment), from 15:30 on the update."""
    first, added = symbols(), symbols()
    store(clean, article("u5", PUBLISHED, f"{first} beats estimates and raises its outlook on strong demand", first))
    store(clean, article("u5", UPDATED, f"{added} plunges after a fraud probe and heavy losses", added))
    old_score, new_score = (
        clean.execute(f"SELECT sentiment FROM news.{table} WHERE source = %s AND id = 'u5'", (SOURCE,)).fetchone()[0]
        for table in ("item_symbol_versions", "item_symbols")
    )
    assert old_score > 0 > new_score

    def scan(as_of: str) -> list[tuple[str, int, float]]:
        found = run_scan(clean, news_sentiment(24, "both", as_of=as_of, limit=1000))
        return [(s, int(n), m) for s, n, m in zip(found["symbol"], found["items"], found["sentiment"], strict=True)
                if s in (first, added)]  # fmt: skip

    assert scan("2002-03-04T20:29:59Z") == [(first, 1, pytest.approx(old_score))]
    assert scan(UPDATED) == [(added, 1, pytest.approx(new_score))]
    assert scan("2002-03-04T15:04:59Z") == []  # before its publication nothing
