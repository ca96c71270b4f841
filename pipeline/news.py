"""The news path shared by the batch flow (:mod:`tasks.news`, pages from the raw zone) and the live
stream (:mod:`streaming.service`, Alpaca's ``n`` messages): parsed items in the ``core.model.NEWS``
(or ``SOCIAL_POSTS``) layout are cleaned, deduplicated into stories against what is stored, scored,
written inside the caller's transaction, then their stories embedded in the next ones. Whichever
path delivers an article first, the other finds it stored under the same ``(source, id)`` and story.

:func:`prepare_items` (pure) turns parsed frames into stored rows and refusals;
:func:`assign_stories` (pure over what is stored) gives each item its story;
:func:`store_items` writes a frame inside the caller's transaction, :func:`embed_written` embeds
its stories in the next one; :func:`store_streamed_news` is the stream's pair of transactions (the
batch path's is :func:`tasks.news.process_symbol_news`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psycopg
from loguru import logger

from core import model
from core.errors import ConfigurationError
from db.connect import connection_lost
from features.embeddings import EmbeddingModel, process_model
from features.news_search import StoryText, store_story_embeddings, text_digest
from features.sentiment import SentimentModel, item_text, load_sentiment_model, symbol_sentiment
from quality.dedup import (
    DedupConfig,
    StoryIndex,
    canonical_url,
    signature_bytes,
    signature_from_bytes,
)
from quality.news_text import cashtags, clean_text, is_spam, split_symbols
from sources.dead_letters import record_dead_letter_sync
from storage.lake import Lake
from storage.news import NewsWriteResult, StoredItem, lock_news_dedup, stored_items, write_news
from storage.news_tiers import TieredNews, dedup_candidates, lake_versions, tiered_items
from storage.story_vectors import (
    dequeue_story_vectors,
    lock_story_vectors,
    queue_story_vectors,
    queued_story_ids,
    stories_to_embed,
)
from storage.watermarks import Watermark, advance_watermarks

if TYPE_CHECKING:
    from core.settings import Settings

_LABEL_VALUE = {"positive": 1.0, "negative": -1.0, "neutral": 0.0}
# prepare_items' columns in their order (storage.news.ITEM_COLUMNS and LINK_COLUMNS, by name)
_ITEM_ORDER: tuple[str, ...] = ("source", "id", "published_at", "updated_at", "author", "publisher", "kind")
_ITEM_ORDER += ("headline", "summary", "body", "community", "url", "canonical_url", "symbols", "lang", "flags")
_ITEM_ORDER += ("vendor_sentiment", "score", "comments", "sentiment", "sentiment_model", "minhash")
_LINK_ORDER = ("symbol", "published_at", "source", "id", "kind", "sentiment", "vendor_sentiment", "vendor_label")


@dataclass
class PreparedItems:
    """Rows ready for dedup and the store, and what was refused (with reasons)."""

    items: pd.DataFrame
    links: pd.DataFrame
    rejected: list[dict[str, Any]] = field(default_factory=list)
    signatures: list[np.ndarray] = field(default_factory=list)


def _vendor_labels(text: Any) -> dict[str, str]:
    if not isinstance(text, str) or not text:
        return {}
    pairs = (p.split(":", 1) for p in text.split(",") if ":" in p)
    return {model.normalize_symbol(s): label.strip().lower() for s, label in pairs}


def canonical_items(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """News (:data:`model.NEWS`) or posts (:data:`model.SOCIAL_POSTS`) in one shape."""
    if kind == "news":
        return pd.DataFrame(
            {
                "source": frame["source"].astype(str),
                "id": frame["id"].astype(str),
                "published_at": frame["ts"],
                "updated_at": frame["updated_ts"].fillna(frame["ts"]) if "updated_ts" in frame else frame["ts"],
                "headline": frame["headline"],
                "summary": frame["summary"],
                "body": frame.get("body", None),
                "author": frame["author"],
                "publisher": frame["publisher"],
                "community": None,
                "url": frame["url"],
                "raw_symbols": frame["symbols"],
                "vendor_labels": frame.get("vendor_sentiment", None),
                "score": None,
                "comments": None,
            }
        )
    return pd.DataFrame(
        {
            "source": frame["source"].astype(str),
            "id": frame["id"].astype(str),
            "published_at": frame["ts"],
            "updated_at": frame["ts"],
            "headline": frame["title"],
            "summary": None,
            "body": frame["body"],
            "author": frame["author"],
            "publisher": None,
            "community": frame["community"],
            "url": frame["url"],
            "raw_symbols": None,
            "vendor_labels": None,
            "score": frame["score"],
            "comments": frame["comments"],
        }
    )


def prepare_items(frame: pd.DataFrame, kind: str, sentiment: SentimentModel, dedup: StoryIndex) -> PreparedItems:
    """Clean, flag, score and sign every item of ``frame`` (pure). Refused items (no text at all)
    come back in ``rejected`` with their reason; everything else is kept, flagged."""
    raw = canonical_items(frame, kind)
    raw = raw.sort_values(["updated_at"]).drop_duplicates(["source", "id"], keep="last")
    raw = raw.sort_values(["published_at", "source", "id"]).reset_index(drop=True)
    rejected: list[dict[str, Any]] = []
    # the stored rows column by column (a frame of column lists: a list of row dicts made pandas
    # infer every cell's type row by row); records are read from column lists, not to_dict (arrow boxing)
    out: dict[str, list[Any]] = {name: [] for name in _ITEM_ORDER}
    vendors: list[dict[str, str]] = []
    leads: list[str] = []
    texts: list[str] = []
    signed: list[tuple[str, str]] = []
    column = {c: raw[c].to_numpy(dtype=object, na_value=None).tolist() for c in raw.columns}
    for i, source in enumerate(column["source"]):
        item_id = column["id"][i]
        clean = clean_text(_text(column["headline"][i]), _text(column["summary"][i]), _text(column["body"][i]))
        if clean.reject:
            rejected.append({"source": source, "id": item_id, "reason": clean.reject})
            continue
        flags = list(clean.flags)
        if kind == "news":
            listed = [s for s in str(column["raw_symbols"][i] or "").split(",") if s]
        else:
            listed = cashtags(f"{clean.headline} {clean.body}")
            if is_spam(f"{clean.headline} {clean.body}"):
                flags.append("spam")
            if not listed:
                flags.append("off_topic")
        symbols, refused = split_symbols(listed)
        if refused:
            flags.append("bad_symbols:" + "|".join(refused[:5]))
        vendor = _vendor_labels(column["vendor_labels"][i])
        vendor_values = [_LABEL_VALUE[v] for v in vendor.values() if v in _LABEL_VALUE]
        url = _text(column["url"][i])
        score, comments = column["score"][i], column["comments"][i]
        for name, value in (
            ("source", source),
            ("id", item_id),
            ("published_at", column["published_at"][i]),
            ("updated_at", column["updated_at"][i]),
            ("author", column["author"][i]),
            ("publisher", column["publisher"][i]),
            ("kind", kind),
            ("headline", clean.headline),
            ("summary", clean.summary or None),
            ("body", clean.body or None),
            ("community", column["community"][i]),
            ("url", url or None),
            ("canonical_url", canonical_url(url) if kind == "news" else None),
            ("symbols", symbols),
            ("lang", clean.lang),
            ("flags", flags),
            ("vendor_sentiment", sum(vendor_values) / len(vendor_values) if vendor_values else None),
            ("score", None if score is None else int(score)),
            ("comments", None if comments is None else int(comments)),
        ):
            out[name].append(value)
        vendors.append(vendor)
        leads.append(clean.lead)
        texts.append(item_text(clean.headline, clean.lead) if clean.lang != "other" else "")
        signed.append((clean.headline, clean.lead))
    signatures = dedup.signatures(signed)
    scores = sentiment.score(texts) if texts else np.zeros(0)
    links: dict[str, list[Any]] = {name: [] for name in _LINK_ORDER}
    for i, (score, text, signature) in enumerate(zip(scores.tolist(), texts, signatures, strict=True)):
        out["sentiment"].append(score if text else None)
        out["sentiment_model"].append(sentiment.name if text else None)
        out["minhash"].append(signature_bytes(signature) if kind == "news" else None)
        symbols = out["symbols"][i]
        if not symbols:
            continue
        per_symbol = (
            symbol_sentiment(sentiment, f"{out['headline'][i]}. {leads[i]}", symbols, score)
            if text
            else dict.fromkeys(symbols)
        )
        vendor = vendors[i]
        published, source, item_id = out["published_at"][i], out["source"][i], out["id"][i]
        for symbol in symbols:
            label = vendor.get(symbol)
            for name, value in (
                ("symbol", symbol),
                ("published_at", published),
                ("source", source),
                ("id", item_id),
                ("kind", kind),
                ("sentiment", per_symbol[symbol]),
                ("vendor_sentiment", _LABEL_VALUE.get(label) if label else None),
                ("vendor_label", label),
            ):
                links[name].append(value)
    items = pd.DataFrame(out) if texts else pd.DataFrame()
    return PreparedItems(items, pd.DataFrame(links) if links["symbol"] else pd.DataFrame(), rejected, signatures)


def _text(value: Any) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _nanoseconds(stamps: pd.Series) -> list[int]:
    """Epoch nanoseconds of a timezone-aware timestamp column (any resolution)."""
    return pd.DatetimeIndex(stamps).as_unit("ns").asi8.tolist()


def assign_stories(prepared: PreparedItems, stored: Sequence[StoredItem], index: StoryIndex) -> pd.DataFrame:
    """Each prepared item's ``story_id`` (in place) given the ``stored`` items (kept ids first);
    returns the stories the batch founds (:data:`storage.news.STORY_COLUMNS`)."""
    items = prepared.items
    num_perm = index.config.num_perm
    for s in stored:
        index.add(
            s.source,
            s.id,
            s.story_id,
            pd.Timestamp(s.published_at).value,
            s.canonical_url,
            signature_from_bytes(s.minhash, num_perm),
            s.symbols,
        )
    columns = ["story_id", "first_seen", "canonical_url", "headline"]
    if items.empty:
        items["story_id"] = np.zeros(0, dtype=np.int64)
        return pd.DataFrame(columns=columns)
    published = items["published_at"].tolist()
    news = (items["kind"] == "news").tolist()
    urls = items["canonical_url"].tolist()
    no_text = np.zeros(0, np.uint32)  # a post is its own story (posts are not syndicated articles)
    assigned = index.assign_many(
        items["source"].tolist(),
        items["id"].tolist(),
        _nanoseconds(items["published_at"]),
        [u if is_news else None for u, is_news in zip(urls, news, strict=True)],
        [sig if is_news else no_text for sig, is_news in zip(prepared.signatures, news, strict=True)],
        items["symbols"].tolist(),
    )
    story_ids = [story for story, _ in assigned]
    founded = [
        {"story_id": story, "first_seen": first_seen, "canonical_url": url, "headline": headline}
        for (story, new), first_seen, url, headline in zip(
            assigned, published, urls, items["headline"].tolist(), strict=True
        )
        if new
    ]
    items["story_id"] = np.array(story_ids, dtype=np.int64)
    if len(prepared.links):
        by_item = dict(zip(zip(items["source"], items["id"], strict=True), story_ids, strict=True))
        prepared.links["story_id"] = [
            by_item[(s, i)] for s, i in zip(prepared.links["source"], prepared.links["id"], strict=True)
        ]
    return pd.DataFrame(founded, columns=columns)


def embed_stories(conn: psycopg.Connection, story_ids: Sequence[int], embedder: EmbeddingModel) -> int:
    """Embed those of ``story_ids`` whose vector by ``embedder`` is missing or stale
    (:func:`storage.story_vectors.stories_to_embed`: new stories, stories whose text, first item or
    tickers changed) from their headline and lead, store one vector each and take their entries off
    the queue of owed vectors, inside the caller's transaction, under those stories' vector locks
    (one writer of a story at a time, each reading what the last one stored); returns the stories
    embedded."""
    lock_story_vectors(conn, story_ids)
    work = stories_to_embed(conn, story_ids, embedder.name, text_digest)
    todo = [s for s in work.todo if s.headline.strip() or (s.lead or "").strip()]
    done = 0
    if todo:
        texts = [StoryText(s.story_id, s.first_seen, s.headline, s.lead, s.symbols) for s in todo]
        try:
            done = store_story_embeddings(conn, texts, embedder)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{exc}; or set embeddings.enabled: false to store news without embedding its stories"
            ) from exc
    dequeue_story_vectors(conn, work.queued)
    return done


def embed_in_batches(
    conn: psycopg.Connection,
    story_ids: Sequence[int],
    embedder: EmbeddingModel,
    *,
    batch: int = 500,
    advance: Callable[[int], None] | None = None,
) -> int:
    """:func:`embed_stories` over ``story_ids`` (e.g. :func:`storage.story_vectors.
    stories_without_vectors`: after a change of ``embeddings.model``), ``batch`` stories a
    transaction, so an interrupted run keeps what it stored and a rerun continues; ``advance(n)``
    after each batch. Returns the stories embedded."""
    done = 0
    for begin in range(0, len(story_ids), batch):
        part = story_ids[begin : begin + batch]
        with conn.transaction():
            done += embed_stories(conn, part, embedder)
        if advance is not None:
            advance(len(part))
    return done


VECTOR_BATCH = 500  # stories a vectors' transaction: its advisory locks and how long it holds them


def embed_written(conn: psycopg.Connection, written: NewsWriteResult, embedder: EmbeddingModel | None) -> int:
    """The second transaction of storing news (one per :data:`VECTOR_BATCH` stories): the vectors
    of the stories ``written`` touched (:attr:`storage.news.NewsWriteResult.stories`), after the
    items committed and the dedup lock was let go, so the HNSW inserts (most of storing news) do not
    hold up the next batch's dedup. What a killed process or a failure leaves owed stays in the
    queue (:func:`store_items` ``queue_vectors``) for :func:`embed_queued`."""
    if embedder is None or not written.stories:
        return 0
    return embed_in_batches(conn, written.stories, embedder, batch=VECTOR_BATCH)


def embed_written_or_owe(
    conn: psycopg.Connection, written: NewsWriteResult, embedder: EmbeddingModel | None, what: str
) -> int:
    """:func:`embed_written`, where a failure other than a lost connection leaves the vectors owed
    (queued with the items, for :func:`embed_queued`) with a warning naming ``what`` was stored,
    instead of failing a caller whose items are already committed; returns the stories embedded."""
    try:
        return embed_written(conn, written, embedder)
    except Exception as exc:
        if connection_lost(exc):
            raise
        logger.warning(
            "{}: the items are stored, the vectors of {} stories are not ({}); they stay queued for the "
            "story-vectors step of the next ingest or process run",
            what,
            len(written.stories),
            exc,
        )
        return 0


def embed_queued(
    conn: psycopg.Connection, embedder: EmbeddingModel, *, advance: Callable[[int], None] | None = None
) -> int:
    """The vectors still owed (:func:`storage.story_vectors.queued_story_ids`: a process killed
    between a batch's items and its vectors, a vectors' transaction that failed), longest waiting
    first, :data:`VECTOR_BATCH` stories a transaction, until the queue is empty or a round takes
    nothing off it; returns the stories embedded."""
    done = 0
    last: list[int] = []
    while True:
        with conn.transaction():
            owed = queued_story_ids(conn, VECTOR_BATCH)
        if not owed or owed == last:  # the same entries again: another writer is re-queueing them
            return done
        with conn.transaction():
            done += embed_stories(conn, owed, embedder)
        if advance is not None:
            advance(len(owed))
        last = owed


def store_items(
    conn: psycopg.Connection,
    frame: pd.DataFrame,
    kind: str,
    sentiment: SentimentModel,
    config: DedupConfig,
    lake: Lake | None = None,
    *,
    queue_vectors: bool = False,
) -> tuple[NewsWriteResult, list[dict[str, Any]]]:
    """Prepare, dedup against the store and write ``frame`` inside the caller's transaction, which
    holds the news dedup lock from then on; the result names the stories of the written news items
    (``stories``) for :func:`embed_written`, once that transaction committed, and with
    ``queue_vectors`` (the caller embeds) they are queued as owed in this one (posts, each a story of
    its own, often spam or off topic, are left out of news search). With the
    ``lake``, the versions and dedup candidates tiered to it count as stored
    (:func:`storage.news_tiers.tiered_items`: read only when the batch's dedup window reaches
    tiered news, and before the news dedup lock, so a slow or failing lake holds up this batch
    alone); without it, the hot ones only (the stream: live news is never tiered). A lake that
    cannot be read fails the batch with a :class:`~core.errors.StorageError` naming the object,
    before anything is written: the caller's transaction rolls back (the batch path's pages stay
    pending for the next run)."""
    index = StoryIndex(config)
    prepared = prepare_items(frame, kind, sentiment, index)
    if prepared.items.empty:
        return NewsWriteResult(), prepared.rejected
    window = timedelta(hours=config.window_hours)
    low = prepared.items["published_at"].min() - window
    high = prepared.items["published_at"].max() + window
    keys = list(zip(prepared.items["source"], prepared.items["id"], strict=True))
    # the lake before the lock: no other writer waits on this batch's S3 reads
    early = tiered_items(conn, lake, low, high, keys) if lake is not None else TieredNews()
    # and the rows of the tiered versions the batch supersedes, for the history tables
    early_rows = lake_versions(conn, lake, prepared.items, (), early.items) if lake is not None else {}
    lock_news_dedup(conn)
    hot = stored_items(conn, low, high, keys)
    # then what was tiered since (hot rows first, the manifest second: a row is in one or both)
    tiered = tiered_items(conn, lake, low, high, keys, early).items if lake is not None else ()
    rows = lake_versions(conn, lake, prepared.items, hot, tiered, early_rows) if lake is not None else {}
    stories = assign_stories(prepared, dedup_candidates(hot, tiered), index)
    versions = sorted([*hot, *tiered], key=lambda i: i.published_at)
    written = write_news(conn, prepared.items, prepared.links, stories, versions, rows)
    if kind == "news":  # a post is a story of its own, not searched as news
        written = replace(written, stories=tuple(sorted({int(s) for s in prepared.items["story_id"]})))
        if queue_vectors:
            queue_story_vectors(conn, written.stories)
    return written, prepared.rejected


@dataclass(frozen=True)
class NewsModels:
    """What the news path runs with: the sentiment model, the dedup settings, the embedder (None
    when ``embeddings.enabled`` is false)."""

    sentiment: SentimentModel
    dedup: DedupConfig
    embedder: EmbeddingModel | None

    @classmethod
    def from_settings(cls, settings: Settings) -> NewsModels:
        news, embeddings = settings.news, settings.embeddings
        return cls(
            load_sentiment_model(news.sentiment_model),
            DedupConfig(threshold=news.dedup_threshold, window_hours=news.dedup_window_hours),
            process_model(embeddings.model, batch_size=embeddings.batch_size, cache_dir=embeddings.cache_dir)
            if embeddings.enabled
            else None,
        )


def symbol_watermarks(frame: pd.DataFrame, kind: str = "news") -> list[Watermark]:
    """Each symbol's newest published item of ``frame`` (:data:`core.model.NEWS` rows), as the batch
    path's watermark of that symbol (the high-water mark a poll resumes an hour before)."""
    newest: dict[tuple[str, str], pd.Timestamp] = {}
    for source, symbols, ts in zip(frame["source"], frame["symbols"], frame["ts"], strict=True):
        for symbol in str(symbols or "").split(","):
            if symbol and (key := (str(source), symbol)) and (key not in newest or ts > newest[key]):
                newest[key] = ts
    return [Watermark(source, kind, symbol, "", ts.to_pydatetime()) for (source, symbol), ts in sorted(newest.items())]


def store_streamed_news(
    conn: psycopg.Connection, frame: pd.DataFrame, models: NewsModels, request: Mapping[str, Any]
) -> tuple[NewsWriteResult, list[dict[str, Any]]]:
    """One micro-batch of streamed articles (:data:`core.model.NEWS`) into the news store as the
    batch path stores a page: items, links, stories, a dead letter per refused item (``request``
    names the stream), each symbol's watermark in one transaction; the stories' vectors in the next
    (:func:`embed_written`)."""
    with conn.transaction():
        queue = models.embedder is not None
        written, rejected = store_items(conn, frame, "news", models.sentiment, models.dedup, queue_vectors=queue)
        for refusal in rejected:
            record_dead_letter_sync(
                conn,
                source=str(frame["source"].iloc[0]),
                dataset="stream",
                request={**request, "id": refusal["id"]},
                error=f"news item {refusal['id']} refused: {refusal['reason']}",
                payload=refusal,
            )
        advance_watermarks(conn, symbol_watermarks(frame))
    embed_written_or_owe(conn, written, models.embedder, f"streamed news ({len(frame)} messages)")
    return written, rejected
