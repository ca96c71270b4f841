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

Bounds, by design: a tiered version published more than the dedup window away from the batch's
version of the article is not seen (an update moves the publication time by minutes); tiered items
carry no MinHash signature (tiering leaves it behind), so they are dedup candidates by canonical
URL and by their key, not by similar text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from storage.lake import Lake
from storage.news import StoredItem
from storage.tiering import manifest_files

NEWS_ITEMS_DATASET = "news_items"
_COLUMNS = ("source", "id", "story_id", "published_at", "updated_at", "canonical_url", "symbols", "kind")


def tiered_items(
    conn: psycopg.Connection, lake: Lake, low: datetime, high: datetime, keys: Sequence[tuple[str, str]]
) -> list[StoredItem]:
    """The tiered news items published in [low, high]: those with the given (source, id) keys and
    the news (kind ``news``) among them, each key's latest version; oldest first."""
    files = manifest_files(conn, dataset=NEWS_ITEMS_DATASET, start=low, end=high + timedelta(microseconds=1))
    if not files:
        return []
    wanted = set(keys)
    ids = pa.array(sorted({i for _, i in keys}), type=pa.string())
    latest: dict[tuple[str, str, datetime], dict] = {}
    for file in files:  # oldest object first; a key in two keeps its latest updated_at
        table = lake.read_parquet(file.key).select(list(_COLUMNS))
        published = table["published_at"]
        in_window = pc.and_(
            pc.equal(table["kind"], "news"),
            pc.and_(pc.greater_equal(published, pa.scalar(low, published.type)),
                    pc.less_equal(published, pa.scalar(high, published.type))),
        )  # fmt: skip
        rows = table.filter(pc.or_(pc.is_in(table["id"], value_set=ids), in_window)).to_pylist()
        for row in rows:
            if (row["source"], row["id"]) not in wanted and not low <= row["published_at"] <= high:
                continue
            key = (row["source"], row["id"], row["published_at"])
            if key not in latest or row["updated_at"] >= latest[key]["updated_at"]:
                latest[key] = row
    if not latest:
        return []
    rows = sorted(latest.values(), key=lambda r: (r["published_at"], r["source"], r["id"]))
    return [
        StoredItem(r["source"], r["id"], r["story_id"], r["published_at"], r["updated_at"], r["canonical_url"], None, s)
        for r, s in zip(rows, _symbols(conn, [r["symbols"] for r in rows]), strict=True)
    ]


def _symbols(conn: psycopg.Connection, literals: Sequence[str | None]) -> list[tuple[str, ...]]:
    """The lake's text form of the symbols arrays ({AAPL,"A,B"}) as tuples, read by PostgreSQL's own
    array parser (the form it wrote)."""
    rows = conn.execute(
        "SELECT coalesce(x::text[], '{}') FROM unnest(%s::text[]) WITH ORDINALITY AS t(x, n) ORDER BY n",
        (list(literals),),
    ).fetchall()
    return [tuple(r[0]) for r in rows]
