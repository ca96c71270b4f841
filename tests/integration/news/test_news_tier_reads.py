"""The writer reads tiered news before the news dedup lock (review finding F10): a batch whose
dedup window reaches the lake reads its objects while other writers store, and what was tiered
between that read and the lock is read under it. Each test stores news of a year of its own (2008
to 2011, sources 'tierwait', 'tiermid', 'tierhot'), tiered by an explicit range.

The slow S3 store is the session's lake seen through :class:`HeldLake`: its first object read
waits until the test releases it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa

from core import model
from core.settings import Settings
from db.connect import database_connection
from features.sentiment import load_sentiment_model
from pipeline.news import store_items
from quality.dedup import DedupConfig
from storage.lake import Lake
from storage.news import NewsWriteResult
from storage.tiering import tier_chunks


class HeldLake(Lake):
    """The session's lake whose first object read says so (``reading``) and waits for ``release``."""

    def __init__(self, lake: Lake, stack: Settings) -> None:
        secret = stack.lake.secret_key.get_secret_value()  # type: ignore[union-attr]
        super().__init__(lake.endpoint_url, stack.lake.access_key, secret, lake.bucket, stack.lake.region)
        self.reading, self.release = threading.Event(), threading.Event()

    def read_parquet_columns(self, *args: Any, **kwargs: Any) -> pa.Table:
        if not self.reading.is_set():
            self.reading.set()
            self.release.wait(timeout=300)
        return super().read_parquet_columns(*args, **kwargs)


def _article(source: str, item: str, published: str, updated: str, headline: str) -> dict[str, str]:
    body = "The company said so in a statement on its results and outlook."
    return {"id": item, "ts": published, "updated_ts": updated, "headline": headline, "body": body,
            "symbols": "ZZQW", "source": source}  # fmt: skip


def _store(conn: psycopg.Connection, row: dict[str, str], lake: Lake | None) -> NewsWriteResult:
    frame = model.frame(model.NEWS, {k: [row.get(k)] for k in model.NEWS}, what="test news")
    with conn.transaction():
        # a writer that waits for the dedup lock fails instead of waiting for ever
        conn.execute("SET LOCAL lock_timeout = '60s'")
        written, _ = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig(), lake=lake)
    return written


def _store_elsewhere(stack: Settings, row: dict[str, str], lake: Lake) -> NewsWriteResult:
    with database_connection(stack, autocommit=True) as other:
        return _store(other, row, lake)


def _tier_year(conn: psycopg.Connection, lake: Lake, stack: Settings, year: int) -> None:
    bounds = datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, tzinfo=UTC)
    tier_chunks(
        conn, lake, stack, older_than=bounds[1], newer_than=bounds[0], dataset=["news_items", "news_item_symbols"]
    )


def test_a_batch_reading_the_lake_holds_up_no_other_news_writer(stack: Settings, conn, lake) -> None:
    """A re-ingest of 2009 reads that year's object, and its read is held; a batch of 2008 news
    (nothing tiered in its window) is stored meanwhile. The lake was read under the dedup lock, so
    every writer waited for the S3 store (here: failed on its lock_timeout)."""
    tiered = _article("tierwait", "w1", "2009-03-05T15:00:00Z", "2009-03-05T15:00:00Z", "ZZQW names a chief")
    _store(conn, tiered, lake)
    _tier_year(conn, lake, stack, 2009)
    held = HeldLake(lake, stack)

    with ThreadPoolExecutor(1) as pool:
        reingest = pool.submit(_store_elsewhere, stack, {**tiered, "id": "w2"}, held)
        try:
            assert held.reading.wait(timeout=120), "the re-ingest never read the lake"
            hot_only = _article("tierwait", "w3", "2008-03-05T15:00:00Z", "2008-03-05T15:00:00Z", "ZZQW opens a plant")
            assert _store(conn, hot_only, lake).inserted == 1
            assert not reingest.done()  # still held in its lake read
        finally:
            held.release.set()
        assert reingest.result().inserted == 1


def test_a_version_tiered_while_a_batch_reads_the_lake_is_read_under_the_lock(stack: Settings, conn, lake) -> None:
    """2010: a tiered article makes a batch read the lake; the newest version of the batch's own
    article is hot then, and tiered while that read is held. Under the lock it is neither hot nor in
    what was read, unless the manifest is consulted again: the stale copy was stored as new."""
    _store(conn, _article("tiermid", "m1", "2010-03-04T15:00:00Z", "2010-03-04T15:00:00Z", "ZZQW signs a lease"), lake)
    _tier_year(conn, lake, stack, 2010)
    newest = _article("tiermid", "m2", "2010-03-06T15:00:00Z", "2010-03-07T09:00:00Z", "ZZQW raises its outlook")
    assert _store(conn, newest, lake).inserted == 1
    stale = {**newest, "updated_ts": newest["ts"], "headline": "ZZQW to report results"}
    held = HeldLake(lake, stack)

    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(_store_elsewhere, stack, stale, held)
        try:
            assert held.reading.wait(timeout=120), "the batch never read the lake"
            _tier_year(conn, lake, stack, 2010)  # the newest version goes to the lake now
            assert conn.execute("SELECT count(*) FROM news.items WHERE source = 'tiermid'").fetchone()[0] == 0
        finally:
            held.release.set()
        written = late.result()

    assert (written.inserted, written.updated, written.unchanged) == (0, 0, 1)
    assert conn.execute("SELECT count(*) FROM news.items WHERE source = 'tiermid'").fetchone()[0] == 0


def test_an_article_hot_and_tiered_keeps_its_hot_story(stack: Settings, conn, lake) -> None:
    """2011: two vendors' copies of an article (one canonical URL) are one story, S, and are
    tiered; a later version of the second copy is stored hot without the lake (the stream's way)
    and founds its own story, which the readers show. An update of it stored with the lake took
    the tiered row's story S (the dedup index knew the article by the last row it was given: the
    tiered one) and left its story counting an item it no longer had; it keeps the hot row's."""
    url = "https://example.com/news/zzqw-wins-a-contract"
    copies = [
        {**_article(source, "h1", "2011-03-05T15:00:00Z", "2011-03-05T15:00:00Z", "ZZQW wins a contract"), "url": url}
        for source in ("tierhot1", "tierhot2")
    ]
    frame = model.frame(model.NEWS, {k: [r.get(k) for r in copies] for k in model.NEWS}, what="test news")
    with conn.transaction():
        store_items(conn, frame, "news", load_sentiment_model(), DedupConfig(), lake=lake)
    (shared,) = conn.execute("SELECT DISTINCT story_id FROM news.items WHERE source LIKE 'tierhot%'").fetchone()
    _tier_year(conn, lake, stack, 2011)
    again = {**copies[1], "updated_ts": "2011-03-05T18:00:00Z", "headline": "ZZQW wins a large contract"}
    assert _store(conn, again, None).stories_founded == 1
    (own,) = conn.execute("SELECT story_id FROM news.items WHERE source = 'tierhot2'").fetchone()
    assert own != shared

    update = {**copies[1], "updated_ts": "2011-03-06T09:00:00Z", "headline": "ZZQW wins a larger contract"}
    written = _store(conn, update, lake)

    assert written.updated == 1
    stored = conn.execute("SELECT headline, story_id FROM news.items WHERE source LIKE 'tierhot%'").fetchall()
    assert stored == [("ZZQW wins a larger contract", own)]
    assert conn.execute("SELECT items FROM news.stories WHERE story_id = %s", (own,)).fetchone() == (1,)
