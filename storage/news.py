"""The news store: items, their symbol links and stories in schema ``news`` (migration 0021).

Writes are idempotent upserts keyed by the vendor's identity (source, id, published_at): a rerun
of the same items changes nothing, an item whose ``updated_at`` is newer than the stored one
replaces it (headline, text, symbols, sentiment; its links are rewritten in the same transaction,
so an update that drops a symbol leaves no stale link), an older version is ignored. The version
an update replaces is kept, with its links, in ``news.item_versions`` and ``news.item_symbol_versions``
(migration 0026), known until the update's ``updated_at``: the reads show the latest version, the
sentiment features each item's version known at a bar's close. Stories are inserted when founded
and their aggregates (items, symbols, polarity) recomputed from their items.
Callers run :func:`write_news` inside their transaction, after :func:`lock_news_dedup`, which
serializes the dedup-and-store step of concurrent runs so two copies of one story processed at
once cannot found two stories.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from core.errors import StorageError
from storage.feature_tables import FEATURE_VALUES_TABLE
from storage.hot import Column, TableSpec, UpsertResult, upsert_frame

ITEM_COLUMNS = (
    "source",
    "id",
    "published_at",
    "updated_at",
    "kind",
    "story_id",
    "headline",
    "summary",
    "body",
    "author",
    "publisher",
    "community",
    "url",
    "canonical_url",
    "symbols",
    "lang",
    "flags",
    "sentiment",
    "sentiment_model",
    "vendor_sentiment",
    "score",
    "comments",
    "minhash",
)
LINK_COLUMNS = (
    "symbol",
    "published_at",
    "source",
    "id",
    "story_id",
    "kind",
    "sentiment",
    "vendor_sentiment",
    "vendor_label",
)
STORY_COLUMNS = ("story_id", "first_seen", "canonical_url", "headline")
# What tiering moves to the lake (storage/tiering.py: news_items, news_item_symbols). Arrays travel
# as PostgreSQL's text form ({AAPL,MSFT}); the MinHash signature as bytes, so a tiered item is a
# dedup candidate by similar text too (storage/news_tiers.py).
_ITEM_TYPES = {"published_at": "timestamptz", "updated_at": "timestamptz", "story_id": "int8", "sentiment": "float8"}
_ITEM_TYPES |= {"vendor_sentiment": "float8", "score": "int8", "comments": "int8", "minhash": "bytea"}
NEWS_ITEMS_TABLE = TableSpec(
    name="news.items",
    columns=tuple(Column(c, _ITEM_TYPES.get(c, "text")) for c in ITEM_COLUMNS),
    key=("source", "id", "published_at"),
    touched_at="ingested_at",
    time_column="published_at",
)
_LINK_TYPES = {"published_at": "timestamptz", "story_id": "int8", "sentiment": "float8", "vendor_sentiment": "float8"}
NEWS_LINKS_TABLE = TableSpec(
    name="news.item_symbols",
    columns=tuple(Column(c, _LINK_TYPES.get(c, "text")) for c in LINK_COLUMNS),
    key=("symbol", "published_at", "source", "id"),
    touched_at=None,
    time_column="published_at",
)
# The superseded versions (migration 0026), tiered as news_item_versions and news_item_symbol_versions
# (no MinHash signature: only an article's current version is a dedup candidate)
_VERSIONED = tuple(c for c in NEWS_ITEMS_TABLE.columns if c.name != "minhash")
ITEM_VERSIONS_TABLE = TableSpec(
    name="news.item_versions",
    columns=(
        *_VERSIONED[:4],
        Column("superseded_at", "timestamptz"),
        *_VERSIONED[4:],
        Column("ingested_at", "timestamptz"),
    ),
    key=("source", "id", "updated_at", "published_at"),
    touched_at=None,
    time_column="published_at",
)
LINK_VERSIONS_TABLE = TableSpec(
    name="news.item_symbol_versions",
    columns=(
        *NEWS_LINKS_TABLE.columns[:4],
        Column("updated_at", "timestamptz"),
        Column("superseded_at", "timestamptz"),
        *NEWS_LINKS_TABLE.columns[4:],
    ),
    key=("symbol", "published_at", "source", "id", "updated_at"),
    touched_at=None,
    time_column="published_at",
)
CRASH_ENV = "MARKETPIPE_CRASH_AT"  # tests only: "news:<point>" kills this process with SIGKILL there
_DEDUP_LOCK = 0x6E657773  # 'news': one advisory lock for the dedup-and-store step
_VALUES = [c for c in ITEM_COLUMNS if c not in ("source", "id", "published_at")]
_ITEM_ARRAYS = frozenset({"symbols", "flags"})  # text[] columns of ITEM_COLUMNS


@dataclass(frozen=True)
class NewsWriteResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stories_founded: int = 0
    stories: tuple[int, ...] = ()  # the written news items' stories (pipeline.news.store_items), to embed


@dataclass(frozen=True)
class StoredItem:
    """What dedup needs of an item already stored."""

    source: str
    id: str
    story_id: int
    published_at: datetime
    updated_at: datetime
    canonical_url: str | None
    minhash: bytes | None
    symbols: tuple[str, ...]


def lock_news_dedup(conn: psycopg.Connection) -> None:
    """Hold the news dedup lock until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DEDUP_LOCK,))


# A batch's arrays go as binary parameters (%b): in text form psycopg tests every string element
# with a regex for quoting, ~7x the client CPU (four 8,000-element arrays: 27 vs 4 ms a statement).
STORED_ITEMS_SQL = """
    SELECT source, id, story_id, published_at, updated_at, canonical_url, minhash, symbols
    FROM news.items WHERE kind = 'news' AND published_at BETWEEN %(low)s AND %(high)s
    UNION
    SELECT source, id, story_id, published_at, updated_at, canonical_url, minhash, symbols
    FROM news.items
    WHERE id = ANY(%(ids)b::text[]) AND (source, id) IN (SELECT * FROM unnest(%(sources)b::text[], %(ids)b::text[]))
    ORDER BY published_at
"""


def stored_items_params(low: datetime, high: datetime, keys: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {"low": low, "high": high, "sources": [k[0] for k in keys], "ids": [k[1] for k in keys]}


def stored_items(
    conn: psycopg.Connection, low: datetime, high: datetime, keys: Sequence[tuple[str, str]] = ()
) -> list[StoredItem]:
    """Stored news (kind ``news``) published in [low, high], plus the items with the given
    (source, id) keys whenever they were published (their story ids are kept on rerun). The key
    lookup names its ids in an ``= ANY`` the bloom filter of compressed chunks can test
    (61_news_columnstore.sql), so it skips the compressed batches holding none of them."""
    rows = conn.execute(STORED_ITEMS_SQL, stored_items_params(low, high, keys)).fetchall()
    return [StoredItem(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(r[7] or ())) for r in rows]


def write_news(
    conn: psycopg.Connection,
    items: pd.DataFrame,
    links: pd.DataFrame,
    stories: pd.DataFrame,
    stored: Sequence[StoredItem],
    tiered: Mapping[VersionKey, TieredVersion] | None = None,
) -> NewsWriteResult:
    """Upsert ``items`` (columns :data:`ITEM_COLUMNS`), rewrite the links of the items that were
    inserted or replaced (``links``: :data:`LINK_COLUMNS`), insert founded ``stories``
    (:data:`STORY_COLUMNS`) and refresh the aggregates of every story touched.

    An article's newest version wins whatever order its versions arrive in, also when an update
    moved its publication time (part of the key): :func:`plan_versions` decides from the stored
    versions, read first. Every row changed is then named by its whole key, so a change in a
    compressed chunk decompresses only the batch holding that row: a statement joining on
    (source, id) alone decompressed every compressed chunk of the history and failed past
    TimescaleDB's ``max_tuples_decompressed_per_dml_transaction`` (100,000) once a few weeks of
    news were compressed. ``stored``: what :func:`stored_items` read with these items' keys in the
    same transaction (under the dedup lock): every stored version of each article. ``tiered``: the
    lake's rows (item and links) of the stored versions with no hot row that this write may
    supersede (:func:`storage.news_tiers.lake_versions`); each one it does supersede is kept in the
    history tables as a hot one is, so the reads as of a time before the update still see it."""
    if items.empty:
        return NewsWriteResult()
    try:
        wanted = set(zip(items["source"], items["id"], strict=True))
        versions = [(i.source, i.id, i.published_at, i.updated_at) for i in stored if (i.source, i.id) in wanted]
        plan = plan_versions(items, versions)
        if plan.superseded:  # the versions this write replaces or moves stay, known until then
            _keep_superseded(conn, plan.superseded)
            from_lake = [(v, tiered[v.key]) for v in plan.superseded if tiered and v.key in tiered]
            if from_lake:
                _keep_tiered_superseded(conn, from_lake)
        if plan.moved:  # older versions published at another time: they go, with their links
            with conn.cursor() as cur:
                for table in ("news.items", "news.item_symbols"):
                    cur.executemany(
                        f"DELETE FROM {table} WHERE source = %s AND id = %s AND published_at = %s", plan.moved
                    )
        written = _upsert_items(conn, items[plan.keep]) if plan.keep.any() else []
        inserted = sum(1 for r in written if r[2])
        touched = {(r[0], r[1]) for r in written}
        replaced = [(r[0], r[1], r[3]) for r in written if not r[2]]  # their links at that key go
        if replaced:
            with conn.cursor() as cur:
                cur.executemany(
                    "DELETE FROM news.item_symbols WHERE source = %s AND id = %s AND published_at = %s", replaced
                )
        fresh = links.iloc[:0]
        if touched and len(links):
            mask = [(s, i) in touched for s, i in zip(links["source"], links["id"], strict=True)]
            fresh = links[mask].drop_duplicates(["symbol", "published_at", "source", "id"])
            if len(fresh):
                _write_links(conn, fresh)
        inserted_at = sorted({(r[0], r[1], r[3]) for r in written if r[2]})
        if inserted_at:
            _drop_unnamed_links(conn, inserted_at, fresh)
        founded = 0
        if len(stories):
            founded = len(
                conn.execute(
                    """
                    INSERT INTO news.stories (story_id, first_seen, canonical_url, headline)
                    SELECT * FROM unnest(%b::bigint[], %b::timestamptz[], %b::text[], %b::text[])
                    ON CONFLICT (story_id) DO NOTHING RETURNING story_id
                    """,
                    [list(c) for c in zip(*_rows(stories, STORY_COLUMNS), strict=True)],
                ).fetchall()
            )
        crash_point("before_commit")
        refresh_stories(conn, sorted({int(s) for s in items["story_id"]}), items["published_at"].min())
    except psycopg.Error as exc:
        raise StorageError(f"cannot store {len(items)} news item(s): {exc}") from exc
    updated = len(written) - inserted
    return NewsWriteResult(inserted, updated, len(items) - len(written), founded)


@dataclass(frozen=True)
class SupersededVersion:
    """A stored version an update replaces: its key, and the newer version's ``updated_at``."""

    source: str
    id: str
    published_at: datetime
    updated_at: datetime
    superseded_at: datetime

    @property
    def key(self) -> VersionKey:
        return (self.source, self.id, self.published_at, self.updated_at)


# (source, id, published_at, updated_at): one version of an article
VersionKey = tuple[str, str, datetime, datetime]


@dataclass(frozen=True)
class TieredVersion:
    """A version of an item read from the lake: its news_items row (the lake's columns, arrays in
    PostgreSQL's text form) and the news_item_symbols rows of the symbols it names."""

    item: Mapping[str, Any]
    links: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class VersionPlan:
    """Which rows of a batch to upsert (``keep``, a mask over the batch), which stored versions
    to delete (``moved``: (source, id, published_at) of versions the kept one supersedes) and which
    stored versions to keep as history before they are replaced or deleted (``superseded``: those
    older than the kept version)."""

    keep: np.ndarray
    moved: list[tuple[str, str, datetime]]
    superseded: list[SupersededVersion] = field(default_factory=list)


def plan_versions(items: pd.DataFrame, stored: Sequence[tuple[str, str, datetime, datetime]]) -> VersionPlan:
    """Per article (source, id): the batch's newest version (latest ``updated_at``) is kept unless a
    stored version is newer still (then the batch's is stale: nothing of it is written; at the
    same publication time the upsert would refuse it too, but a tiered version is no row it sees);
    stored versions published at another time and not newer are ``moved`` (superseded). A stored
    version at the kept one's own time is left to the upsert's own rule (replaced when not newer
    and different). Every stored version with an older ``updated_at``
    than the kept one, at any publication time, is ``superseded``: replaced or deleted by this
    write, it is kept as history first (one with the same ``updated_at`` that differs is a
    correction of that version, replaced in place: the vendor gave no time for the change)."""
    versions: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for source, item, published, updated in stored:
        versions.setdefault((source, item), []).append((published, updated))
    # instants to the microsecond, as the database keeps them
    published_at = [t.to_pydatetime() for t in items["published_at"].dt.floor("us")]
    updated_at = [t.to_pydatetime() for t in items["updated_at"].dt.floor("us")]
    order = np.lexsort((pd.DatetimeIndex(items["published_at"]).asi8, pd.DatetimeIndex(items["updated_at"]).asi8))
    newest: dict[tuple[str, str], int] = {}
    sources, ids = items["source"].tolist(), items["id"].tolist()
    for position in order:  # ascending updated_at: the last one seen of an article is its newest
        newest[(sources[position], ids[position])] = int(position)
    keep = np.zeros(len(items), dtype=bool)
    moved: list[tuple[str, str, datetime]] = []
    superseded: list[SupersededVersion] = []
    for key, position in newest.items():
        published, updated = published_at[position], updated_at[position]
        mine = sorted(set(versions.get(key, ())))
        elsewhere = [(p, u) for p, u in mine if p != published]
        if any(u > updated for _, u in mine):
            continue  # stale: a newer version is stored (a tiered one at this time too: no upsert sees it)
        keep[position] = True
        moved += [(key[0], key[1], p) for p, _ in elsewhere]
        superseded += [SupersededVersion(key[0], key[1], p, u, updated) for p, u in mine if u < updated]
    return VersionPlan(keep, moved, superseded)


def _keep_superseded(conn: psycopg.Connection, versions: Sequence[SupersededVersion]) -> None:
    """Copy each stored version about to be replaced, and its links, into the history tables (one
    statement a version, named by its whole key: only the batch holding it is decompressed in a
    compressed chunk). A version already there (a rerun) is left as it is."""

    def select_list(table: TableSpec, given: frozenset[str]) -> tuple[str, str]:
        names = [c.name for c in table.columns]
        values = [f"%({n})s::timestamptz" if n in given else n for n in names]
        return ", ".join(names), ", ".join(values)

    item_columns, item_values = select_list(ITEM_VERSIONS_TABLE, frozenset({"superseded_at"}))
    link_columns, link_values = select_list(LINK_VERSIONS_TABLE, frozenset({"updated_at", "superseded_at"}))
    key = "source = %(source)s AND id = %(id)s AND published_at = %(published_at)s"
    with conn.cursor() as cur:
        cur.executemany(
            f"""
            WITH item AS (
                INSERT INTO news.item_versions ({item_columns})
                SELECT {item_values} FROM news.items WHERE {key} AND updated_at = %(updated_at)s
                ON CONFLICT DO NOTHING
            )
            INSERT INTO news.item_symbol_versions ({link_columns})
            SELECT {link_values} FROM news.item_symbols WHERE {key}
            ON CONFLICT DO NOTHING
            """,
            [asdict(v) for v in versions],
        )


def _keep_tiered_superseded(
    conn: psycopg.Connection, versions: Sequence[tuple[SupersededVersion, TieredVersion]]
) -> None:
    """Keep each superseded version that lives in the lake only, and its links, in the history
    tables, as :func:`_keep_superseded` keeps a hot one (a version already there is left as it is)."""

    def insert(table: TableSpec) -> str:
        names = [c.name for c in table.columns]
        casts = ["text[]" if c.name in _ITEM_ARRAYS else c.pg_type for c in table.columns]
        values = ", ".join(f"%({n})s::{t}" for n, t in zip(names, casts, strict=True))
        return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({values}) ON CONFLICT DO NOTHING"

    items = [{**row.item, "superseded_at": v.superseded_at} for v, row in versions]
    stamps = [{"updated_at": v.updated_at, "superseded_at": v.superseded_at} for v, _ in versions]
    links = [{**link, **stamp} for (_, row), stamp in zip(versions, stamps, strict=True) for link in row.links]
    with conn.cursor() as cur:
        cur.executemany(
            insert(ITEM_VERSIONS_TABLE), [{c.name: r.get(c.name) for c in ITEM_VERSIONS_TABLE.columns} for r in items]
        )
        if links:
            cur.executemany(
                insert(LINK_VERSIONS_TABLE),
                [{c.name: r.get(c.name) for c in LINK_VERSIONS_TABLE.columns} for r in links],
            )


def _upsert_items(conn: psycopg.Connection, items: pd.DataFrame) -> list[tuple[str, str, bool, datetime]]:
    """Stage ``items`` (at most one version per article) and upsert them by their whole key: a
    stored row is replaced when the staged one is not older and differs. Returns (source, id,
    inserted, published_at) of each row written."""
    # one round trip: the stage exists from the transaction's first write on (its rows go at
    # commit); a second write in one transaction empties it first
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS news_stage (LIKE news.items INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
        " DELETE FROM news_stage"
    )
    with conn.cursor().copy(f"COPY news_stage ({', '.join(ITEM_COLUMNS)}) FROM STDIN") as copy:
        for row in _rows(items, ITEM_COLUMNS, arrays=_ITEM_ARRAYS):
            copy.write_row(row)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _VALUES)
    changed = " OR ".join(f"i.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in _VALUES if c != "minhash")
    return conn.execute(
        f"""
        INSERT INTO news.items AS i ({", ".join(ITEM_COLUMNS)})
        SELECT {", ".join(ITEM_COLUMNS)} FROM news_stage
        ON CONFLICT (source, id, published_at) DO UPDATE SET {sets}, ingested_at = now()
        WHERE EXCLUDED.updated_at >= i.updated_at AND ({changed})
        RETURNING source, id, (xmax = 0) AS inserted, published_at
        """
    ).fetchall()


def _write_links(conn: psycopg.Connection, links: pd.DataFrame) -> None:
    """Upsert ``links`` (one per key) of the items just written.

    An inserted item has no links at its key unless its row was tiered to the lake while its links
    stayed hot (news_items and news_item_symbols have their own hot windows, and ``lake tier
    --dataset`` moves one alone): a plain COPY then failed on the links' key and the whole batch
    was lost. A link already there is updated to this version's (the ones it does not name go in
    :func:`_drop_unnamed_links`). One statement, as the COPY was (an upsert from arrays: the 100
    links of a 50-item batch took about 1 ms more than the COPY, A/B)."""
    key = ("symbol", "published_at", "source", "id")
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in LINK_COLUMNS if c not in key)
    arrays = ", ".join(f"%b::{c.pg_type}[]" for c in NEWS_LINKS_TABLE.columns)  # binary, as STORED_ITEMS_SQL says
    conn.execute(
        f"""
        INSERT INTO news.item_symbols ({", ".join(LINK_COLUMNS)}) SELECT * FROM unnest({arrays})
        ON CONFLICT ({", ".join(key)}) DO UPDATE SET {sets}
        """,
        [list(c) for c in zip(*_rows(links, LINK_COLUMNS), strict=True)],
    )


_UNIT = "\x1f"  # separates the symbols of one key (no symbol holds it: quality.news_text)


def _drop_unnamed_links(
    conn: psycopg.Connection, inserted: Sequence[tuple[str, str, datetime]], links: pd.DataFrame
) -> None:
    """Delete the links at the key of each *inserted* item (source, id, published_at) whose symbol
    the version stored does not name (``links``: the links just written). Such links exist only
    when the item's row was tiered while its links stayed hot; before, they were deleted only when
    one of the version's links met them, so a version naming other symbols (or none) left the old
    ones, joined to the new row by ``scan.news_sentiment`` and the features with the old sentiment.

    One statement a batch, joined to the keys (the links' ``(source, id)`` index, probed per key)
    and bounded by the batch's first and last publication time as constants, so the chunks outside
    it are left out when planning (``published_at = ANY(array)`` excluded none: every chunk was
    scanned). Each key carries the symbols its version names, so a link is compared with its own
    item's few symbols: a NOT EXISTS over the batch's named links compared every link found with
    every link named (500 new items: ~20 ms a batch, a tenth of the news bench's time)."""
    named: dict[tuple[str, str, pd.Timestamp], list[str]] = {}
    if len(links):
        for source, id_, published, symbol in _rows(links, ("source", "id", "published_at", "symbol")):
            named.setdefault((source, id_, pd.Timestamp(published)), []).append(symbol)
    sources, ids, published = (list(c) for c in zip(*inserted, strict=True))
    symbols = [_UNIT.join(named.get((s, i, pd.Timestamp(p)), ())) for s, i, p in inserted]
    conn.execute(
        """
        DELETE FROM news.item_symbols l
        USING unnest(%(sources)b::text[], %(ids)b::text[], %(published)b::timestamptz[], %(symbols)b::text[])
            AS k(source, id, published_at, symbols)
        WHERE l.published_at BETWEEN %(low)s::timestamptz AND %(high)s::timestamptz
          AND l.source = k.source AND l.id = k.id AND l.published_at = k.published_at
          AND l.symbol <> ALL (string_to_array(k.symbols, %(unit)s))
        """,
        {
            "sources": sources,
            "ids": ids,
            "published": published,
            "symbols": symbols,
            "unit": _UNIT,
            "low": min(published),
            "high": max(published),
        },
    )


def crash_point(point: str) -> None:
    """Tests' kill -9 in the middle of a write (``MARKETPIPE_CRASH_AT=news:<point>``); a no-op otherwise."""
    if os.environ.get(CRASH_ENV) == f"news:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def refresh_stories(conn: psycopg.Connection, story_ids: Sequence[int], earliest: datetime | None = None) -> None:
    """A story's items, symbols, polarity and first item from its stored items. ``earliest``: the
    earliest publication time of the items just written (a story may now start there).

    The items are read from the stories' first item on (``news.stories.first_seen``, or
    ``earliest`` if before): a constant bound, so the chunks before it are left out when planning.
    Without it every chunk was read, and a compressed chunk is decompressed whole to find a story
    id (not a segment or order column): 6.8 s a batch over two years of news (1.5M items)."""
    if not story_ids:
        return
    ids = list(story_ids)
    row = conn.execute("SELECT min(first_seen) FROM news.stories WHERE story_id = ANY(%s)", (ids,)).fetchone()
    bounds = [t for t in (row[0] if row else None, earliest) if t is not None and not pd.isna(t)]
    since = min(bounds) if bounds else None
    bounded = "AND published_at >= %(since)s" if since is not None else ""
    # the stories' items read once (every chunk's story index probed once, not once per aggregate)
    query = """
        WITH member AS MATERIALIZED (
            SELECT story_id, sentiment, published_at, symbols FROM news.items
            WHERE story_id = ANY(%(ids)s) /* bounded */
        ), agg AS (
            SELECT story_id, count(*)::int AS n, avg(sentiment) AS p, min(published_at) AS f
            FROM member GROUP BY story_id
        ), syms AS (
            SELECT story_id, array_agg(DISTINCT sym ORDER BY sym) AS s
            FROM member, unnest(symbols) AS sym GROUP BY story_id
        )
        UPDATE news.stories st SET items = agg.n, polarity = agg.p, first_seen = agg.f,
            symbols = coalesce(syms.s, '{}'), updated_at = now()
        FROM agg LEFT JOIN syms USING (story_id)
        WHERE st.story_id = agg.story_id
        """
    conn.execute(query.replace("/* bounded */", bounded), {"ids": ids, "since": since})


def _rows(frame: pd.DataFrame, columns: Sequence[str], arrays: frozenset[str] = frozenset()) -> list[tuple[Any, ...]]:
    """Rows of ``columns`` for COPY, a missing value (None, NaN, NaT, pd.NA) as None; lists, tuples
    and bytes as they are, except the ``arrays`` columns' lists of strings, which go as PostgreSQL
    array literals (:func:`_array_literal`: psycopg's list dumper was a quarter of the items' COPY).
    A column is read at once, missing values to None (a list is a value, not missing)."""
    values = []
    for column in columns:
        cells = frame[column].to_numpy(dtype=object, na_value=None).tolist()
        if column in arrays:
            cells = [None if cell is None else _array_literal(cell) for cell in cells]
        values.append(cells)
    return list(zip(*values, strict=True)) if values else []


def _array_literal(values: Sequence[str | None]) -> str:
    """``values`` as a text[] literal: each string double-quoted, backslash and quote escaped, so any
    spelling (a vendor's junk symbol with commas or braces, the word NULL) reads back as it was; None
    is a NULL element (as psycopg's list dumper sent it)."""
    return "{" + ",".join("NULL" if v is None else '"' + _escape(str(v)) + '"' for v in values) + "}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def latest_items(
    conn: psycopg.Connection, *, symbols: Sequence[str] | None = None, kind: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest items (of ``symbols`` when given), with their story and sentiment."""
    rows = conn.execute(
        """
        SELECT i.published_at, i.source, i.id, i.story_id, i.kind, i.headline, i.symbols, i.sentiment,
               i.vendor_sentiment, i.url, i.flags
        FROM news.items i
        WHERE (%(kind)s::text IS NULL OR i.kind = %(kind)s)
          AND (%(symbols)s::text[] IS NULL OR i.symbols && %(symbols)s::text[])
        ORDER BY i.published_at DESC, i.source, i.id LIMIT %(limit)s
        """,
        {"kind": kind, "symbols": list(symbols) if symbols else None, "limit": limit},
    ).fetchall()
    names: tuple[str, ...] = ("published_at", "source", "id", "story_id", "kind", "headline", "symbols")
    names += ("sentiment", "vendor_sentiment", "url", "flags")
    return [dict(zip(names, r, strict=True)) for r in rows]


def story(conn: psycopg.Connection, story_id: int) -> dict[str, Any] | None:
    """A story and every item of it (oldest first), or None."""
    head = conn.execute(
        "SELECT story_id, first_seen, canonical_url, headline, symbols, items, polarity FROM news.stories"
        " WHERE story_id = %s",
        (story_id,),
    ).fetchone()
    if head is None:
        return None
    names = ("story_id", "first_seen", "canonical_url", "headline", "symbols", "items", "polarity")
    out: dict[str, Any] = dict(zip(names, head, strict=True))
    rows = conn.execute(
        "SELECT published_at, updated_at, source, id, headline, url, sentiment, vendor_sentiment, symbols"
        " FROM news.items WHERE story_id = %s ORDER BY published_at, source, id",
        (story_id,),
    ).fetchall()
    item_names = ("published_at", "updated_at", "source", "id", "headline", "url", "sentiment", "vendor_sentiment")
    out["members"] = [dict(zip((*item_names, "symbols"), r, strict=True)) for r in rows]
    return out


# ---------------------------------------------------------------------------------------------
# Sentiment features (features.news_sentiment computes them; they live in the feature store)


def symbol_sentiment_rows(
    conn: psycopg.Connection, symbols: Sequence[str], low: datetime, high: datetime, kind: str = "news"
) -> pd.DataFrame:
    """(symbol, published_at, known_at, superseded_at, sentiment) of every version of the items of
    ``kind`` about ``symbols`` published in [low, high], oldest first; posts flagged spam are left
    out. A version counts from ``known_at`` (its ``updated_at``) until ``superseded_at`` (the next
    version's ``updated_at``; NaT for the stored one): the latest version's symbols and sentiment
    are news.item_symbols', the earlier ones' news.item_symbol_versions' (migration 0026)."""
    rows = conn.execute(
        """
        SELECT l.symbol, l.published_at, i.updated_at, NULL::timestamptz, l.sentiment
        FROM news.item_symbols l
        JOIN news.items i ON i.source = l.source AND i.id = l.id AND i.published_at = l.published_at
        WHERE l.symbol = ANY(%(symbols)s) AND l.kind = %(kind)s AND l.published_at BETWEEN %(low)s AND %(high)s
          AND NOT ('spam' = ANY(i.flags))
        UNION ALL
        SELECT l.symbol, l.published_at, l.updated_at, l.superseded_at, l.sentiment
        FROM news.item_symbol_versions l
        JOIN news.item_versions i
          ON i.source = l.source AND i.id = l.id AND i.published_at = l.published_at AND i.updated_at = l.updated_at
        WHERE l.symbol = ANY(%(symbols)s) AND l.kind = %(kind)s AND l.published_at BETWEEN %(low)s AND %(high)s
          AND NOT ('spam' = ANY(i.flags))
        ORDER BY 1, 2, 3
        """,
        {"symbols": list(symbols), "kind": kind, "low": low, "high": high},
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["symbol", "published_at", "known_at", "superseded_at", "sentiment"])
    frame["superseded_at"] = pd.to_datetime(frame["superseded_at"], utc=True)
    return frame


def bar_stamps(
    conn: psycopg.Connection, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """(symbol, ts) of the stored bars (the consolidated series) in [start, end]."""
    rows = conn.execute(
        "SELECT symbol, ts FROM market.bars WHERE symbol = ANY(%s) AND timeframe = %s AND ts BETWEEN %s AND %s"
        " ORDER BY symbol, ts",
        (list(symbols), timeframe, start, end),
    ).fetchall()
    return pd.DataFrame(rows, columns=["symbol", "ts"])


def write_news_features(conn: psycopg.Connection, long: pd.DataFrame, feature_set: str) -> UpsertResult:
    """Upsert long feature rows (symbol, timeframe, ts, name, value) into the feature store's
    ``features.bar_feature_values`` under ``feature_set`` (idempotent)."""
    if long.empty:
        return UpsertResult()
    frame = long.assign(feature_set=feature_set)[list(FEATURE_VALUES_TABLE.column_names)]
    return upsert_frame(conn, frame, FEATURE_VALUES_TABLE)


def read_news_features(
    conn: psycopg.Connection, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime, feature_set: str
) -> pd.DataFrame:
    """The news features of bars in [start, end], one row per bar, one column per feature."""
    rows = conn.execute(
        "SELECT symbol, ts, name, value FROM features.bar_feature_values"
        " WHERE symbol = ANY(%s) AND timeframe = %s AND feature_set = %s AND ts BETWEEN %s AND %s",
        (list(symbols), timeframe, feature_set, start, end),
    ).fetchall()
    long = pd.DataFrame(rows, columns=["symbol", "ts", "name", "value"])
    if long.empty:
        return pd.DataFrame(columns=["symbol", "ts"])
    return long.pivot_table(index=["symbol", "ts"], columns="name", values="value", dropna=False).reset_index()
