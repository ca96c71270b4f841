"""News and social posts from raw pages into the news store: clean, dedup into stories, score
sentiment, store, in one transaction per symbol (like bars: a crash leaves the pages pending and the
rerun is exact, since items keep their story ids and every write is an upsert); then embed each new
or changed news story for search in a second transaction.

The vectors commit after the items, without the dedup lock, so the HNSW inserts (most of the cost
of storing news) overlap the processor's other lane deduplicating and writing its batch. A process
killed between the two leaves some stories' vectors missing or stale (never wrong: a vector records
the text it was computed from): the items' transaction queues its stories' vectors as owed, the
vectors' transaction takes them off the queue, and the last step of the ingest and process flows,
:func:`story_vectors_task`, embeds what is left (a rerun of a killed run fills them); the next item
of such a story embeds it too. A vector missing because embedding was off is filled by the next
item of its story, or by `marketpipe news embed`.

The news path itself (clean, dedup, score, write, embed) is :mod:`pipeline.news`, which the live
stream's ``n`` messages take too; :func:`process_symbol_news` is the batch path's transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pandas as pd
import psycopg
from prefect import task
from prefect.cache_policies import NONE

from features.embeddings import EmbeddingModel
from features.news_sentiment import NEWS_FEATURE_SET, WINDOWS_HOURS, symbol_feature_frame
from features.sentiment import SentimentModel
from pipeline.news import embed_queued, embed_written_or_owe, store_items
from pipeline.request import IngestRequest
from quality.dedup import DedupConfig
from sources.dead_letters import record_dead_letter_sync
from sources.registry import SourceRegistry
from storage.lake import Lake
from storage.news import NewsWriteResult, bar_stamps, crash_point, symbol_sentiment_rows, write_news_features
from storage.watermarks import Watermark, advance_watermarks
from tasks.collection import ParsedPage
from tasks.processing import PendingPage, SymbolProcessing, at_hand, claim_pages, page_frames, read_unparsed
from tasks.resources import RunResources
from tasks.retries import DATABASE_RETRY_OPTIONS

NEWS_DATASETS = ("news",)
SOCIAL_DATASETS = ("social_posts",)
TEXT_DATASETS = NEWS_DATASETS + SOCIAL_DATASETS


def process_symbol_news(
    conn: psycopg.Connection,
    lake: Lake,
    pages: Sequence[PendingPage],
    sentiment: SentimentModel,
    config: DedupConfig,
    parsed: Mapping[str, ParsedPage] | None = None,
    registry: SourceRegistry | None = None,
    embedder: EmbeddingModel | None = None,
) -> SymbolProcessing:
    """One symbol's pending news or post pages into the news store, in one transaction: items,
    links, stories, dead letters for refused items, the watermark, the pages marked processed; then,
    with an ``embedder``, the vectors of the news stories it touched in a second one
    (:func:`pipeline.news.embed_written`)."""
    first = pages[0]
    kind = "news" if first.dataset in NEWS_DATASETS else "social"
    outcome = SymbolProcessing(first.symbol, pages=len(pages))
    written = NewsWriteResult()
    stored = read_unparsed(lake, pages, parsed)
    with conn.transaction():
        claimed = claim_pages(conn, at_hand(pages, parsed, stored))
        outcome.pages = len(claimed)
        frames = [(p, kept) for p, kept in page_frames(conn, claimed, parsed, stored, registry)]
        with_data = [(p, k) for p, k in frames if len(k.frame)]
        if with_data:
            frame = pd.concat([k.frame for _, k in with_data], ignore_index=True)
            outcome.records = len(frame)
            owed = embedder is not None  # the vectors of its stories, queued with the items
            written, rejected = store_items(conn, frame, kind, sentiment, config, lake, queue_vectors=owed)
            for refusal in rejected:
                page, kept = with_data[0]
                record_dead_letter_sync(
                    conn,
                    source=page.source,
                    dataset=page.dataset,
                    request=kept.request,
                    error=f"{kind} item {refusal['id']} refused: {refusal['reason']}",
                    payload=refusal,
                    payload_lake_key=page.key,
                )
            outcome.accepted = len(frame.drop_duplicates(["source", "id"])) - len(rejected)
            outcome.rejected = len(rejected)
            outcome.inserted, outcome.updated, outcome.unchanged = written.inserted, written.updated, written.unchanged
            newest = frame["ts"].max()
            advance_watermarks(conn, [Watermark(first.source, kind, first.symbol, "", newest.to_pydatetime())])
    if written.stories and embedder is not None:
        crash_point("before_vectors")
        embed_written_or_owe(conn, written, embedder, f"news of {first.symbol}")
    return outcome


@task(name="story-vectors", cache_policy=NONE, **DATABASE_RETRY_OPTIONS)
async def story_vectors_task(resources: RunResources) -> int:
    """After news is processed: the story vectors still owed (:func:`pipeline.news.embed_queued`:
    a run killed between a batch's items and its vectors, a vectors' transaction that failed).
    Nothing to do when every batch's vectors were stored; an embedding that keeps failing fails
    this step, loudly, after the items and their features are stored."""
    embedder = resources.embedder
    if embedder is None:
        return 0

    def run() -> int:
        with resources.connect() as conn:
            return embed_queued(conn, embedder)

    return await asyncio.to_thread(run)


def refresh_news_features(
    conn: psycopg.Connection, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime
) -> int:
    """Recompute the news sentiment features of the stored ``timeframe`` bars of ``symbols`` in
    [start, end] (point in time: see features.news_sentiment); returns the feature rows changed."""
    bars = bar_stamps(conn, symbols, timeframe, start, end)
    if bars.empty:
        return 0
    lookback = timedelta(hours=max(WINDOWS_HOURS))
    items = symbol_sentiment_rows(conn, symbols, bars["ts"].min() - lookback, bars["ts"].max() + timedelta(days=1))
    long = symbol_feature_frame(bars, items, timeframe)
    with conn.transaction():
        written = write_news_features(conn, long, NEWS_FEATURE_SET)
    return written.changed


@task(name="news-features", cache_policy=NONE, **DATABASE_RETRY_OPTIONS)
async def news_features_task(resources: RunResources, request: IngestRequest, timeframe: str = "1day") -> int:
    """The news features of the request's symbols' bars around its range, after its items are stored."""

    def run() -> int:
        with resources.connect() as conn:
            start, end = request.start - timedelta(days=1), request.end + timedelta(days=1)
            return refresh_news_features(conn, request.symbols, timeframe, start, end)

    return await asyncio.to_thread(run)
