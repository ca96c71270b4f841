"""The tiered versions of news the writer must see (storage.news, news_items in the lake).

The writer decides an article's versions and its story from the stored ones
(:func:`storage.news.stored_items`, :func:`storage.news.plan_versions`). Those were the hot rows
only: once an article was tiered, a late copy of an earlier version was stored hot as new (and the
lake then held two versions of it), and a re-ingest of a tiered period was deduplicated against
the hot items only, so its articles founded new stories. :func:`tiered_items` reads what the lake
holds of a batch, bounded like the hot window read: the objects the manifest (``ops.lake_files``)
lists for news_items published in the batch's dedup window, [first item - window, last item +
window]; none when that window is hot, which is the ingest of recent news: one indexed manifest
query, no lake read. Of those objects it keeps the rows of the batch's (source, id) keys and the
news published in the window (dedup candidates), each key's latest ``updated_at`` (as compaction).

Tiered items carry their MinHash signature (tiered with them since the lake kept it; an object
written before reads it as null), so they are dedup candidates by similar text as hot ones are.
Bounds, by design: a tiered version published more than the dedup window away from the batch's
version of the article is not seen (an update moves the publication time by minutes).

The lake is read before the dedup lock (:func:`pipeline.news.store_items`), so a slow or failing
S3 store holds up the batch that needs it alone, not every news writer waiting on the lock; each
object is read for the columns and rows the writer uses (ranged reads, row groups skipped by their
statistics). Under the lock the writer reads the hot rows, then calls :func:`tiered_items` again
with what it read: the manifest is consulted again and only the objects it lists that were not
read are read (a chunk tiered, or a partition compacted, in between; there is no such object
almost always). Hot rows first and the manifest second, as the read router does: a row tiered in
between is found in one tier or both, never in neither.

A tiered version the batch supersedes is kept as history like a hot one (:func:`lake_versions`:
its whole row and links, read only for those versions, before the lock and, for what was tiered
since, under it).

An article can be in both tiers: a version stored hot after an earlier one was tiered (the
stream stores against the hot rows only). Its hot row is what every reader shows (``news
latest|story``, the sentiment features and ``scan.news_sentiment`` read the hot store only), so
the dedup candidates prefer it (:func:`dedup_candidates`); the versions decided from
(:func:`storage.news.plan_versions`) are those of both tiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.dataset as pads

from storage.lake import Lake
from storage.news import StoredItem, TieredVersion, VersionKey, plan_versions
from storage.tiering import DATASETS, arrow_schema, manifest_files

NEWS_ITEMS_DATASET = "news_items"
NEWS_LINKS_DATASET = "news_item_symbols"
_COLUMNS = ("source", "id", "story_id", "published_at", "updated_at", "canonical_url", "minhash", "symbols", "kind")


@dataclass(frozen=True)
class TieredNews:
    """What :func:`tiered_items` read of the lake: the manifest's objects it read, as (key,
    checksum), and the items it kept of them (each key's latest version, oldest first)."""

    objects: frozenset[tuple[str, str]] = frozenset()
    items: tuple[StoredItem, ...] = ()


def tiered_items(
    conn: psycopg.Connection,
    lake: Lake,
    low: datetime,
    high: datetime,
    keys: Sequence[tuple[str, str]],
    earlier: TieredNews | None = None,
) -> TieredNews:
    """The tiered news items published in [low, high]: those with the given (source, id) keys and
    the news (kind ``news``) among them, each key's latest version. ``earlier``: what a call with
    the same arguments read before (the writer's, before its dedup lock); only the objects the
    manifest lists now that it did not read are read, their items merged with its items (a key in
    both keeps its latest ``updated_at``, the newer object's on a tie, as compaction does). A lake
    that cannot be read is a :class:`~core.errors.StorageError` naming the object."""
    earlier = earlier or TieredNews()
    files = manifest_files(conn, dataset=NEWS_ITEMS_DATASET, start=low, end=high + timedelta(microseconds=1))
    unread = [f for f in files if (f.key, f.checksum) not in earlier.objects]  # oldest object first
    if not unread:
        return earlier
    wanted = set(keys)
    schema = arrow_schema(DATASETS[NEWS_ITEMS_DATASET].file_columns)
    rows = _batch_rows(schema, low, high, sorted({i for _, i in keys}))
    read: list[dict[str, Any]] = []
    for file in unread:
        for row in lake.read_parquet_columns(file.key, _COLUMNS, rows, schema).to_pylist():
            in_window = row["kind"] == "news" and low <= row["published_at"] <= high
            if in_window or (row["source"], row["id"]) in wanted:
                read.append(row)
    items = [
        StoredItem(
            r["source"], r["id"], r["story_id"], r["published_at"], r["updated_at"], r["canonical_url"], r["minhash"], s
        )
        for r, s in zip(read, _symbols(conn, [r["symbols"] for r in read]), strict=True)
    ]
    objects = earlier.objects | {(f.key, f.checksum) for f in unread}
    return TieredNews(objects, tuple(latest_versions([*earlier.items, *items])))


def lake_versions(
    conn: psycopg.Connection,
    lake: Lake,
    items: pd.DataFrame,
    stored: Sequence[StoredItem],
    tiered: Sequence[StoredItem],
    earlier: dict[VersionKey, TieredVersion] | None = None,
) -> dict[VersionKey, TieredVersion]:
    """The lake's rows of the ``tiered`` versions that ``items`` (a batch, before
    :func:`storage.news.write_news`) supersedes and no hot row holds (``stored``: the hot ones read,
    or none before the dedup lock): their whole news_items row and the news_item_symbols rows of
    the symbols each names (a stale link of another object is left out), for the history tables.
    ``earlier``: what a call before read (before the lock; only the versions it lacks are read now).
    Read only for those versions, so a re-ingest of the versions the lake holds reads no more."""
    earlier = dict(earlier or {})
    if not tiered or items.empty:
        return earlier
    hot = {(i.source, i.id, i.published_at, i.updated_at) for i in stored}
    versions = [(i.source, i.id, i.published_at, i.updated_at) for i in (*stored, *tiered)]
    plan = plan_versions(items, sorted(set(versions)))
    needed = {v.key for v in plan.superseded if v.key not in hot and v.key not in earlier}
    needed &= {(i.source, i.id, i.published_at, i.updated_at) for i in tiered}
    if not needed:
        return earlier
    low, high = min(k[2] for k in needed), max(k[2] for k in needed)
    ids = sorted({k[1] for k in needed})
    rows: dict[VersionKey, dict[str, Any]] = {}
    for row in _read(conn, lake, NEWS_ITEMS_DATASET, low, high, ids):  # a later object wins
        if (key := (row["source"], row["id"], row["published_at"], row["updated_at"])) in needed:
            rows[key] = row
    symbols = dict(zip(rows, _symbols(conn, [r["symbols"] for r in rows.values()]), strict=True))
    named = {(k[0], k[1], k[2], symbol): k for k, names in symbols.items() for symbol in names}
    links: dict[VersionKey, dict[str, dict[str, Any]]] = {k: {} for k in rows}
    for link in _read(conn, lake, NEWS_LINKS_DATASET, low, high, ids):
        if (version := named.get((link["source"], link["id"], link["published_at"], link["symbol"]))) is not None:
            links[version][link["symbol"]] = link
    read = {k: TieredVersion(row, tuple(links[k].values())) for k, row in rows.items()}
    return earlier | read


def _read(
    conn: psycopg.Connection, lake: Lake, dataset: str, low: datetime, high: datetime, ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Every column of the rows of ``dataset``'s objects with these ids published in [low, high],
    oldest object first."""
    files = manifest_files(conn, dataset=dataset, start=low, end=high + timedelta(microseconds=1))
    schema = arrow_schema(DATASETS[dataset].file_columns)
    published, stamp = pads.field("published_at"), schema.field("published_at").type
    rows = pads.field("id").isin(pa.array(ids, pa.string()))
    rows &= (published >= pa.scalar(low, stamp)) & (published <= pa.scalar(high, stamp))
    out: list[dict[str, Any]] = []
    for file in files:
        out += lake.read_parquet_columns(file.key, schema.names, rows, schema).to_pylist()
    return out


def _batch_rows(schema: pa.Schema, low: datetime, high: datetime, ids: Sequence[str]) -> pads.Expression:
    """The rows a batch needs of an object: its ids (whenever published; a row of another source
    with the same id is dropped after the read), the news published in [low, high]."""
    published, stamp = pads.field("published_at"), schema.field("published_at").type
    in_window = (published >= pa.scalar(low, stamp)) & (published <= pa.scalar(high, stamp))
    return pads.field("id").isin(pa.array(ids, pa.string())) | ((pads.field("kind") == "news") & in_window)


def latest_versions(items: Sequence[StoredItem]) -> list[StoredItem]:
    """Each key's (source, id, published_at) latest ``updated_at`` of ``items`` (listed oldest
    object first: on a tie the later one), ordered by publication time, source and id."""
    latest: dict[tuple[str, str, datetime], StoredItem] = {}
    for item in items:
        key = (item.source, item.id, item.published_at)
        if key not in latest or item.updated_at >= latest[key].updated_at:
            latest[key] = item
    return sorted(latest.values(), key=lambda i: (i.published_at, i.source, i.id))


def dedup_candidates(hot: Sequence[StoredItem], tiered: Sequence[StoredItem]) -> list[StoredItem]:
    """The stored items a batch's stories are assigned against, by publication time: the ``hot``
    ones, and the ``tiered`` ones of articles with no hot row. The dedup index knows an article
    (source, id) by one story, the last one it is given: the tiered row of an article stored hot
    again (with a story of its own: the stream reads no lake) came after the hot one, so an update
    took the tiered row's story and left the story the readers showed it in."""
    hot_articles = {(i.source, i.id) for i in hot}
    kept = [i for i in tiered if (i.source, i.id) not in hot_articles]
    return sorted([*hot, *kept], key=lambda i: i.published_at)


def _symbols(conn: psycopg.Connection, literals: Sequence[str | None]) -> list[tuple[str, ...]]:
    """The lake's text form of the symbols arrays ({AAPL,"A,B"}) as tuples, read by PostgreSQL's own
    array parser (the form it wrote)."""
    if not literals:
        return []
    rows = conn.execute(
        "SELECT coalesce(x::text[], '{}') FROM unnest(%s::text[]) WITH ORDINALITY AS t(x, n) ORDER BY n",
        (list(literals),),
    ).fetchall()
    return [tuple(r[0]) for r in rows]
