"""One embedding per news story in ``news.story_embeddings`` (migrations 0022 and 0024, pgvector), and the
nearest stories to a vector in a time range, for some symbols.

The table is a hypertable on ``first_seen`` (the story's earliest publication); its key is
``(story_id, first_seen)`` because a hypertable's unique index must hold the time column. "One row per
story" is kept here: :func:`upsert_story_vectors` deletes a story's row stored under another
``first_seen`` (an earlier copy of the story arrived later) and inserts or replaces the row under the
new one, in one transaction, so an update always replaces and a failed batch stores nothing. A row
keeps the MD5 of the text its vector was computed from (``text_md5``, migration 0037):
:func:`stories_to_embed` names the stories whose text, first publication or tickers differ from
their row's, under :func:`lock_story_vectors` (one writer of a story at a time).

Search is cosine distance (``<=>``; vectors are unit length) through the HNSW index of each chunk the
time range keeps (90-day chunks). The index holds a half-precision copy of each vector (halfvec): the
scan picks twice ``k`` candidates in that order and they are ranked by the stored float32 vectors, so
the distances returned are exact. With a filter (symbols, a story left out, the model) pgvector 0.8's
iterative index scan (``hnsw.iterative_scan = relaxed_order``) goes on reading the index until enough
rows pass it. HNSW is approximate: a search may miss a true neighbour (recall is measured by the news
bench).

Vectors travel in pgvector's binary format (the ``pgvector`` package's psycopg 3 adapter).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg.vector import VectorBinaryDumper, VectorBinaryLoader, VectorDumper, VectorLoader
from psycopg import sql
from psycopg.types import TypeInfo

from core.errors import RequestError, StorageError

TABLE = "news.story_embeddings"
DIMENSIONS = 384  # the column's vector(384): all-MiniLM-L6-v2
MAX_K = 1000  # hnsw.ef_search's ceiling: an HNSW scan cannot return more rows than that
_EF_SEARCH_MIN = 40  # candidates an HNSW scan keeps (pgvector's default); more: better recall, slower
_RERANK_FACTOR = 2  # the index's half-precision order picks k * this stories; float32 distances rank them


@dataclass(frozen=True)
class StoryVector:
    """A story's embedding as stored: its id, earliest publication, tickers and the unit vector."""

    story_id: int
    first_seen: datetime
    embedding: np.ndarray = field(repr=False)
    symbols: tuple[str, ...] = ()
    text_md5: UUID | None = None  # of the text the vector was computed from (None: not known)


@dataclass(frozen=True)
class StoryHit:
    """A story found by a search: cosine ``distance`` to the query (0 same direction, 2 opposite)."""

    story_id: int
    first_seen: datetime
    distance: float
    headline: str
    symbols: tuple[str, ...]
    canonical_url: str | None

    @property
    def similarity(self) -> float:
        """Cosine similarity, ``1 - distance``."""
        return 1.0 - self.distance


def prepare(conn: psycopg.Connection) -> None:
    """Teach ``conn`` the vector type, once per connection: ``pgvector.Vector`` parameters are sent
    in binary and vector columns come back as ``Vector``. Only that class is adapted (pgvector's
    ``register_vector`` would also turn every numpy array parameter of the connection into a vector,
    which other storage code sharing the connection does not expect)."""
    if conn.adapters.types.get("vector") is not None:
        return
    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        raise StorageError(
            "this database has no pgvector type (`vector`): run `marketpipe db migrate` (migration "
            "0022_story_embeddings.sql creates it; `make install` installs pgvector for the local server)"
        )
    info.register(conn)
    conn.adapters.register_dumper(Vector, type("StoryVectorDumper", (VectorDumper,), {"oid": info.oid}))
    conn.adapters.register_dumper(Vector, type("StoryVectorBinaryDumper", (VectorBinaryDumper,), {"oid": info.oid}))
    conn.adapters.register_loader(info.oid, VectorLoader)
    conn.adapters.register_loader(info.oid, VectorBinaryLoader)


def normalize_symbols(symbols: Iterable[str] | None) -> tuple[str, ...]:
    """Upper-case, stripped, de-duplicated tickers in their first order; a blank one is refused."""
    if symbols is None:
        return ()
    out: dict[str, None] = {}
    for raw in symbols:
        symbol = str(raw).strip().upper()
        if not symbol:
            raise RequestError(f"symbols {list(symbols)!r}: a blank symbol; give tickers such as AAPL,MSFT")
        out[symbol] = None
    return tuple(out)


def checked_vector(vector: np.ndarray | Sequence[float], what: str = "query vector") -> np.ndarray:
    """``vector`` as float32 of the table's dimension, finite and non-zero; RequestError otherwise."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.shape[0] != DIMENSIONS:
        raise RequestError(
            f"{what} has shape {array.shape}; news.story_embeddings holds {DIMENSIONS}-dimensional vectors "
            "(all-MiniLM-L6-v2); a model of another size needs a migration of its own"
        )
    if not np.isfinite(array).all():
        raise RequestError(f"{what} holds NaN or infinite values")
    if not np.any(array):
        raise RequestError(f"{what} is all zeros: it has no direction to compare")
    return array


def _checked_k(k: int) -> int:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise RequestError(f"k={k!r}: ask for between 1 and {MAX_K} stories")
    return k


def _checked_range(since: datetime | None, until: datetime | None) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise RequestError(f"{name}={value.isoformat()} has no time zone; give an aware datetime (UTC)")
    if since is not None and until is not None and since >= until:
        raise RequestError(f"since {since.isoformat()} is not before until {until.isoformat()}; widen the range")


def upsert_story_vectors(conn: psycopg.Connection, rows: Sequence[StoryVector], model: str) -> int:
    """Store one embedding per story of ``rows`` (made by ``model``), replacing what a story had,
    in one transaction; a later row of the same story in ``rows`` wins. Returns the stories written.

    Every story must exist in ``news.stories``; a missing one fails the whole batch, naming it."""
    if not model:
        raise RequestError("upsert_story_vectors: model is empty; name the embedding model the vectors come from")
    latest: dict[int, StoryVector] = {}
    for row in rows:
        checked_vector(row.embedding, f"embedding of story {row.story_id}")
        if row.first_seen.tzinfo is None:
            raise RequestError(f"story {row.story_id}: first_seen {row.first_seen.isoformat()} has no time zone")
        latest[int(row.story_id)] = row
    if not latest:
        return 0
    prepare(conn)
    try:
        with conn.transaction(), conn.cursor() as cur:
            # the batch goes in by one binary COPY into a table of this transaction, then two statements
            cur.execute(
                "CREATE TEMP TABLE story_vectors_batch (story_id bigint, first_seen timestamptz, symbols text[],"
                f" embedding vector({DIMENSIONS}), text_md5 uuid)"
            )
            with cur.copy("COPY story_vectors_batch FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["bigint", "timestamptz", "text[]", "vector", "uuid"])
                for story_id, row in latest.items():
                    copy.write_row(
                        (
                            story_id,
                            row.first_seen,
                            list(normalize_symbols(row.symbols)),
                            Vector(checked_vector(row.embedding)),
                            row.text_md5,
                        )
                    )
            # the story stored under another first_seen (it moved earlier): the new row replaces it
            cur.execute(
                "DELETE FROM news.story_embeddings e USING story_vectors_batch b"
                " WHERE e.story_id = b.story_id AND e.first_seen <> b.first_seen"
            )
            cur.execute(
                "INSERT INTO news.story_embeddings (story_id, first_seen, symbols, model, embedding, text_md5)"
                " SELECT story_id, first_seen, symbols, %s, embedding, text_md5 FROM story_vectors_batch"
                " ON CONFLICT (story_id, first_seen) DO UPDATE SET symbols = EXCLUDED.symbols,"
                " model = EXCLUDED.model, embedding = EXCLUDED.embedding, text_md5 = EXCLUDED.text_md5,"
                " updated_at = now()",
                (model,),
            )
            # dropped here, not at commit: a caller's transaction may store another batch
            cur.execute("DROP TABLE story_vectors_batch")
    except psycopg.errors.ForeignKeyViolation as exc:
        detail = exc.diag.message_detail or str(exc)
        raise StorageError(
            f"storing story embeddings: a story is not in news.stories ({detail}); store the stories first "
            "(nothing of this batch was stored)"
        ) from exc
    return len(latest)


@dataclass(frozen=True)
class StoryToEmbed:
    """A story whose vector is missing or stale: its text (headline, lead) and where it is filed."""

    story_id: int
    first_seen: datetime
    headline: str
    lead: str | None
    symbols: tuple[str, ...]
    text_md5: UUID  # of the text its vector is computed from (the ``digest`` of headline and lead)


_LEAD_CHARS = 1000  # the model reads 256 tokens at most: a post's body is cut well past that
_VECTOR_LOCKS = 0x76656373 << 32  # 'vecs': one advisory lock a story, its id in the low 32 bits


def lock_story_vectors(conn: psycopg.Connection, story_ids: Iterable[int]) -> None:
    """Hold the vector locks of ``story_ids`` until the transaction ends (in key order, so two
    writers cannot wait on each other). Whoever embeds stories takes them before reading those
    stories (:func:`stories_to_embed`), so a writer reads what the last one to embed the same story
    stored, and an older text's vector never replaces a newer one's; writers of other stories go on
    at the same time. Two ids 2^32 apart share a lock (one waits for the other: no harm)."""
    keys = sorted({_VECTOR_LOCKS | (int(s) & 0xFFFFFFFF) for s in story_ids})
    if keys:
        conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS l(k, n) ORDER BY n", (keys,)
        )


@dataclass(frozen=True)
class VectorWork:
    """What :func:`stories_to_embed` read in one statement: the stories to embed, and the queue
    entries (:func:`queue_story_vectors`) of every story asked about, by story id, as they were."""

    todo: list[StoryToEmbed]
    queued: dict[int, datetime]


def stories_to_embed(
    conn: psycopg.Connection,
    story_ids: Iterable[int],
    model: str,
    digest: Callable[[str, str | None], UUID],
) -> VectorWork:
    """Those of ``story_ids`` whose ``model`` vector is missing or stale: no row by that model, or a
    row filed under another ``first_seen`` or other symbols than the story's, or computed from
    another text: ``digest(headline, lead)`` (the MD5 of the text the model reads) differs from the
    row's ``text_md5``. A row stored before the digest was kept (migration 0037) has none: it is
    stale when an item of its story was written after it, the rule of its time. The lead is the
    summary of the story's earliest item that has one, else the start of its earliest body (posts
    have no summary). Read in one statement with the stories' queue entries: call it after
    :func:`lock_story_vectors` of the same stories, in the transaction that stores the vectors and
    then :func:`dequeue_story_vectors` the entries read."""
    ids = sorted({int(s) for s in story_ids})
    if not ids:
        return VectorWork([], {})
    rows = conn.execute(
        """
        SELECT x.story_id, q.queued_at, s.story_id IS NOT NULL, s.first_seen, s.headline, lead.text, s.symbols,
               e.story_id IS NULL OR e.first_seen <> s.first_seen OR e.symbols <> s.symbols, e.text_md5,
               e.story_id IS NOT NULL AND e.text_md5 IS NULL AND EXISTS (
                   SELECT 1 FROM news.items i
                   WHERE i.story_id = s.story_id AND i.published_at >= s.first_seen AND i.ingested_at > e.updated_at
               )
        FROM unnest(%(ids)s::bigint[]) AS x(story_id)
        LEFT JOIN news.story_vector_queue q ON q.story_id = x.story_id
        LEFT JOIN news.stories s ON s.story_id = x.story_id
        LEFT JOIN news.story_embeddings e ON e.story_id = s.story_id AND e.model = %(model)s
        LEFT JOIN LATERAL (
            SELECT coalesce(nullif(i.summary, ''), left(i.body, %(chars)s)) AS text FROM news.items i
            WHERE i.story_id = s.story_id AND i.published_at >= s.first_seen
              AND coalesce(nullif(i.summary, ''), i.body, '') <> ''
            ORDER BY (nullif(i.summary, '') IS NULL), i.published_at, i.source, i.id LIMIT 1
        ) lead ON true
        ORDER BY x.story_id
        """,
        {"ids": ids, "model": model, "chars": _LEAD_CHARS},
    ).fetchall()
    todo = []
    queued = {}
    for story_id, queued_at, exists, first_seen, headline, lead, symbols, misfiled, stored_md5, written_after in rows:
        if queued_at is not None:
            queued[int(story_id)] = queued_at
        if not exists:
            continue
        text_md5 = digest(headline or "", lead)
        if misfiled or (written_after if stored_md5 is None else stored_md5 != text_md5):
            todo.append(StoryToEmbed(story_id, first_seen, headline or "", lead, tuple(symbols or ()), text_md5))
    return VectorWork(todo, queued)


def queue_story_vectors(conn: psycopg.Connection, story_ids: Iterable[int]) -> None:
    """Record that the vectors of ``story_ids`` are owed, in the transaction that wrote their items
    (an entry already there is stamped again: a writer that read the story before leaves it)."""
    ids = sorted({int(s) for s in story_ids})
    if ids:
        conn.execute(
            "INSERT INTO news.story_vector_queue (story_id, queued_at) SELECT unnest(%b::bigint[]), clock_timestamp()"
            " ON CONFLICT (story_id) DO UPDATE SET queued_at = EXCLUDED.queued_at",
            (ids,),
        )


def dequeue_story_vectors(conn: psycopg.Connection, queued: dict[int, datetime]) -> None:
    """Delete the queue entries ``queued`` as :func:`stories_to_embed` read them: one queued again
    since has another time and stays."""
    if queued:
        conn.execute(
            "DELETE FROM news.story_vector_queue q USING unnest(%b::bigint[], %b::timestamptz[]) AS d(story_id, at)"
            " WHERE q.story_id = d.story_id AND q.queued_at = d.at",
            (list(queued), list(queued.values())),
        )


def queued_story_ids(conn: psycopg.Connection, limit: int) -> list[int]:
    """Up to ``limit`` stories whose vectors are owed, longest waiting first."""
    rows = conn.execute(
        "SELECT story_id FROM news.story_vector_queue ORDER BY queued_at, story_id LIMIT %s", (limit,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def queued_story_count(conn: psycopg.Connection) -> int:
    """How many stories' vectors are owed (:func:`queue_story_vectors`)."""
    return int(conn.execute("SELECT count(*) FROM news.story_vector_queue").fetchone()[0])  # type: ignore[index]


def stories_without_vectors(
    conn: psycopg.Connection,
    model: str,
    since: datetime | None = None,
    until: datetime | None = None,
    symbols: Sequence[str] | None = None,
) -> list[int]:
    """The news stories (a story with a news item; posts are not embedded) first seen in
    ``[since, until)``, about any of ``symbols`` when given, that have no vector by ``model``: none
    at all, or another model's (after a change of ``embeddings.model``). Oldest first."""
    rows = conn.execute(
        """
        SELECT s.story_id FROM news.stories s
        WHERE (%(since)s::timestamptz IS NULL OR s.first_seen >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR s.first_seen < %(until)s)
          AND (%(symbols)s::text[] IS NULL OR s.symbols && %(symbols)s::text[])
          AND EXISTS (SELECT 1 FROM news.items i WHERE i.story_id = s.story_id AND i.kind = 'news')
          AND NOT EXISTS (SELECT 1 FROM news.story_embeddings e WHERE e.story_id = s.story_id AND e.model = %(model)s)
        ORDER BY s.first_seen, s.story_id
        """,
        {
            "model": model,
            "since": since,
            "until": until,
            "symbols": None if symbols is None else list(normalize_symbols(symbols)),
        },
    ).fetchall()
    return [int(r[0]) for r in rows]


def delete_story_vectors(conn: psycopg.Connection, story_ids: Iterable[int]) -> int:
    """Remove the embeddings of ``story_ids``; returns the rows removed."""
    with conn.transaction():
        cur = conn.execute("DELETE FROM news.story_embeddings WHERE story_id = ANY(%s)", ([int(s) for s in story_ids],))
        return cur.rowcount


def story_vector(conn: psycopg.Connection, story_id: int, model: str) -> StoryVector | None:
    """The stored embedding of ``story_id`` by ``model``, or None."""
    prepare(conn)
    row = conn.execute(
        "SELECT story_id, first_seen, embedding, symbols FROM news.story_embeddings WHERE story_id = %s AND model = %s",
        (int(story_id), model),
    ).fetchone()
    if row is None:
        return None
    return StoryVector(row[0], row[1], np.asarray(row[2].to_numpy(), dtype=np.float32), tuple(row[3]))


def search_vectors(
    conn: psycopg.Connection,
    vector: np.ndarray | Sequence[float],
    *,
    model: str,
    k: int = 10,
    since: datetime | None = None,
    until: datetime | None = None,
    symbols: Iterable[str] | None = None,
    exclude: Iterable[int] = (),
    ef_search: int | None = None,
    exact: bool = False,
) -> list[StoryHit]:
    """The ``k`` stories nearest to ``vector`` among ``model``'s, first seen in ``[since, until)``,
    about any of ``symbols`` (all stories when None), leaving out ``exclude``; nearest first.

    ``ef_search``: candidates each chunk's HNSW scan keeps (default max(40, 2k)): more is slower
    with better recall. A filter does not need a larger one: the iterative scan reads on until
    ``k`` rows pass it. ``exact``: no HNSW scan; every story the filters pass is compared (through
    the symbols' GIN index), faster when they pass few: at 1M stories the iterative scan walked
    ~170 ms to find ten about a ticker of 4,000 stories, the exact comparison of those 4,000 took 7 ms."""
    query = checked_vector(vector)
    k = _checked_k(k)
    if ef_search is not None and not (isinstance(ef_search, int) and k <= ef_search <= MAX_K):
        raise RequestError(f"ef_search={ef_search!r}: give between k ({k}) and {MAX_K} candidates per index scan")
    _checked_range(since, until)
    statement, params = search_statement(
        query, model=model, k=k, since=since, until=until, symbols=normalize_symbols(symbols), exclude=exclude
    )
    prepare(conn)
    candidates = str(ef_search or max(_EF_SEARCH_MIN, min(2 * k, MAX_K)))
    with conn.transaction():
        # both settings in one round trip, local to this transaction
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('enable_indexscan', %s, true)",
            (candidates, "off" if exact else "on"),
        )
        rows = conn.execute(statement, params).fetchall()
    return [StoryHit(r[0], r[1], _finite(r[2]), r[3], tuple(r[4]), r[5]) for r in rows]


def search_statement(
    query: np.ndarray,
    *,
    model: str,
    k: int,
    since: datetime | None = None,
    until: datetime | None = None,
    symbols: Sequence[str] = (),
    exclude: Iterable[int] = (),
) -> tuple[sql.Composed, dict[str, Any]]:
    """The statement :func:`search_vectors` runs and its parameters (arguments already checked)."""
    wanted = tuple(symbols)
    left_out = [int(s) for s in exclude]
    where = [sql.SQL("model = %(model)s")]
    if since is not None:
        where.append(sql.SQL("first_seen >= %(since)s"))
    if until is not None:
        where.append(sql.SQL("first_seen < %(until)s"))
    if wanted:
        where.append(sql.SQL("symbols && %(symbols)s::text[]"))
    if left_out:
        where.append(sql.SQL("story_id <> ALL(%(exclude)s::bigint[])"))
    # The index orders by the half-precision copy (the expression of migration 0024's index, to the
    # letter); the pool it yields is re-ranked by the stored float32 vectors, and only the k kept
    # are joined to their stories.
    statement = sql.SQL(
        "WITH nearest AS MATERIALIZED ("
        " SELECT story_id, first_seen, embedding <=> %(q)s AS distance FROM ("
        "  SELECT story_id, first_seen, embedding FROM news.story_embeddings"
        "  WHERE {where} ORDER BY embedding::halfvec({dim}) <=> %(q)s::halfvec({dim}) LIMIT %(pool)s) pool"
        " ORDER BY distance, story_id LIMIT %(k)s)"
        " SELECT n.story_id, n.first_seen, n.distance, s.headline, s.symbols, s.canonical_url"
        " FROM nearest n JOIN news.stories s ON s.story_id = n.story_id ORDER BY n.distance, n.story_id"
    ).format(where=sql.SQL(" AND ").join(where), dim=sql.Literal(DIMENSIONS))
    params = {
        "q": Vector(query),
        "model": model,
        "since": since,
        "until": until,
        "symbols": list(wanted),
        "exclude": left_out,
        "k": k,
        "pool": min(_RERANK_FACTOR * k, MAX_K),
    }
    return statement, params


def more_like_story(
    conn: psycopg.Connection,
    story_id: int,
    *,
    model: str,
    k: int = 10,
    since: datetime | None = None,
    until: datetime | None = None,
    symbols: Iterable[str] | None = None,
) -> list[StoryHit]:
    """The ``k`` stories nearest to story ``story_id``'s stored embedding (itself left out)."""
    stored = story_vector(conn, story_id, model)
    if stored is None:
        row = conn.execute(
            "SELECT s.story_id, e.model FROM news.stories s LEFT JOIN news.story_embeddings e USING (story_id)"
            " WHERE s.story_id = %s",
            (int(story_id),),
        ).fetchone()
        if row is not None and row[1] is not None:
            raise RequestError(
                f"story {story_id} has a vector by {row[1]}, not by {model} (embeddings.model); `marketpipe news "
                "embed` re-embeds the stored stories with the configured model"
            )
        what = "has no embedding yet (it is embedded when the news flow stores it)" if row else "does not exist"
        raise RequestError(f"story {story_id} {what}; `marketpipe news search TEXT` finds stories by text")
    return search_vectors(
        conn, stored.embedding, model=model, k=k, since=since, until=until, symbols=symbols, exclude=[story_id]
    )


def stored_tickers(conn: psycopg.Connection, candidates: Sequence[str], model: str) -> tuple[str, ...]:
    """Those of ``candidates`` that some stored vector by ``model`` is about, in the order given
    (the GIN index on symbols finds the first; nothing is counted)."""
    if not candidates:
        return ()
    rows = conn.execute(
        "SELECT c FROM unnest(%s::text[]) WITH ORDINALITY AS t(c, n)"
        " WHERE EXISTS (SELECT 1 FROM news.story_embeddings e WHERE e.symbols @> ARRAY[c] AND e.model = %s)"
        " ORDER BY n",
        (list(candidates), model),
    ).fetchall()
    return tuple(r[0] for r in rows)


def estimated_stories(conn: psycopg.Connection, symbols: Sequence[str], model: str) -> int:
    """How many of ``model``'s stored stories are about any of ``symbols``, as the planner
    estimates it from the column's statistics (its most common elements): a plan, not a count,
    which would read every such story (15-30 ms for a ticker of 4,000 stories at 1M)."""
    row = conn.execute(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM news.story_embeddings WHERE model = %s AND symbols && %s::text[]",
        (model, list(symbols)),
    ).fetchone()
    return int(row[0][0]["Plan"]["Plan Rows"]) if row else 0


def count_story_vectors(conn: psycopg.Connection, model: str | None = None) -> int:
    if model is None:
        row = conn.execute("SELECT count(*) FROM news.story_embeddings").fetchone()
    else:
        row = conn.execute("SELECT count(*) FROM news.story_embeddings WHERE model = %s", (model,)).fetchone()
    return int(row[0]) if row else 0


def _finite(value: float) -> float:
    out = float(value)
    return out if math.isfinite(out) else float("nan")
