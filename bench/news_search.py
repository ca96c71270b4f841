"""News search benchmark: the embedding stage's items/s, and search latency over stored story vectors.

Two figures, each a function the news bench (bench/news.py) can call, and a CLI of their own
(``python -m bench.news_search --json``):

- :func:`embedding_stage`: the default embedding model embedding news-like
  headlines with summaries, in items/s, after the model is loaded (its load time reported apart).
- :func:`search_latency`: p50/p95/p99 of :func:`storage.story_vectors.search_vectors` (the query
  the CLI and the Python call run: HNSW scan, re-ranking, filters, join to news.stories) over ``stories`` stored
  stories, in a scratch database migrated like the real one. The vectors are SYNTHETIC: unit vectors
  around ``topics`` random topic directions (text embeddings cluster by topic like this; uniformly
  random 384-d vectors would be a worse case for HNSW than any corpus), first seen over two years
  (9 chunks of 90 days), one to three of 500 tickers each. Embedding a million real texts would
  take hours on two cores (see the embedding stage's rate). The table is filled with COPY and the
  HNSW index (the migrations' own definition, read from the database) built after the load, as a
  bulk backfill would. Five kinds of query, equally many: no time range (all_time: every chunk's HNSW
  index is searched and the results merged), the last 30 days, one ticker over the last 90 days, "more
  like this story" (like_story: a stored story's own vector, no range, itself left out, through
  ``more_like_story``), and a text naming a ticker (named_ticker: no range, through
  ``features.news_search.search_by_vector``: the ticker looked up, the plain search and the one
  limited to the ticker, merged with the lift); the p95 target (50 ms) is checked for each kind.
  Recall@k of each kind is measured on a sample against an exact scan of the stored float32
  vectors (no index; for named_ticker both exact lists, merged the same way).

The scratch database (``marketpipe_bench_news``) is kept after a run: a second run with the same
size reuses it (``--rebuild`` to start over, ``--drop`` to remove it). Two cores shared with other
work: the load average is reported beside every figure. A search without a range is fast when the
graphs it walks are in the server's shared_buffers and several times slower when each page comes
from the OS cache, so the server's shared_buffers is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from core.settings import Settings

DATABASE = "marketpipe_bench_news"
DIM = 384
MODEL = "bench-synthetic-384"
TARGET_P95_MS = 50.0
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
TICKERS = [f"T{i:03d}" for i in range(500)]

_SUBJECTS = ["Apple", "Microsoft", "Nvidia", "Tesla", "Amazon", "Exxon", "JPMorgan", "Pfizer", "Boeing", "Netflix"]
_VERBS = ["beats", "misses", "raises", "cuts", "confirms", "withdraws", "reaffirms", "lifts"]
_OBJECTS = [
    "quarterly earnings estimates",
    "full-year revenue guidance",
    "its dividend",
    "its share buyback program",
    "production targets",
    "outlook for data-center demand",
]
_SUMMARIES = [
    "Shares moved in after-hours trading as analysts revised their price targets.",
    "The company cited supply constraints and a stronger dollar in its statement to investors.",
    "Executives told analysts on a conference call that demand remained robust across regions.",
    "The announcement follows a regulatory filing made earlier in the week.",
]


def news_texts(n: int, seed: int = 3) -> list[str]:
    """``n`` news-like texts (headline. summary), 25-45 words each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        subject, verb, obj = (
            _SUBJECTS[rng.integers(len(_SUBJECTS))],
            _VERBS[rng.integers(len(_VERBS))],
            _OBJECTS[rng.integers(len(_OBJECTS))],
        )
        summary = " ".join(_SUMMARIES[i] for i in rng.choice(len(_SUMMARIES), size=2, replace=False))
        out.append(f"{subject} {verb} {obj} by {rng.integers(2, 40)} percent. {summary}")
    return out


def embedding_stage(texts: int = 512, batch_size: int = 32) -> dict[str, Any]:
    """Items/s of the default model over ``texts`` news-like texts (load time apart)."""
    from features.embeddings import DEFAULT_MODEL, load_model

    model = load_model(DEFAULT_MODEL, batch_size=batch_size)
    corpus = news_texts(texts)
    t0 = time.perf_counter()
    model.embed(corpus[:1])
    load_s = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    model.embed(corpus)
    seconds = time.perf_counter() - t0
    return {
        "model": model.name,
        "texts": texts,
        "batch_size": batch_size,
        "load_s": round(load_s, 3),
        "seconds": round(seconds, 3),
        "items_per_s": round(texts / seconds, 1),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def synthetic_vectors(n: int, topics: int, rng: np.random.Generator, centers: np.ndarray | None = None) -> np.ndarray:
    """``n`` unit vectors, each a random topic direction plus noise (cosine to its topic about 0.7)."""
    if centers is None:
        centers = _unit(rng.standard_normal((topics, DIM), dtype=np.float32))
    picks = rng.integers(len(centers), size=n)
    noise = rng.standard_normal((n, DIM), dtype=np.float32) / np.sqrt(DIM)
    return _unit(centers[picks] + noise)


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def _stored(settings: Settings) -> int | None:
    from db.connect import database_connection
    from stack.scratch import database_exists

    if not database_exists(settings, DATABASE):
        return None
    with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM news.story_embeddings WHERE model = %s AND EXISTS (SELECT 1 FROM pg_indexes"
            " WHERE indexname = 'story_embeddings_hnsw_idx')",
            (MODEL,),
        ).fetchone()
        return int(row[0]) if row else None


def build(settings: Settings, stories: int, topics: int = 2000, seed: int = 11) -> dict[str, Any]:
    """A fresh scratch database with ``stories`` stories and their synthetic vectors, HNSW built after."""
    from pgvector.psycopg import register_vector

    from db.connect import database_connection
    from db.migrate import migrate
    from stack.scratch import create_database

    create_database(settings, DATABASE)
    rng = np.random.default_rng(seed)
    centers = _unit(rng.standard_normal((topics, DIM), dtype=np.float32))
    figures: dict[str, Any] = {}
    with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
        migrate(conn)
        register_vector(conn)
        row = conn.execute("SELECT pg_get_indexdef('news.story_embeddings_hnsw_idx'::regclass)").fetchone()
        if row is None:
            raise AssertionError("the migrations made no news.story_embeddings_hnsw_idx")
        hnsw_definition = row[0]
        conn.execute("DROP INDEX news.story_embeddings_hnsw_idx")
        t0 = time.perf_counter()
        chunk = 100_000
        for lo in range(0, stories, chunk):
            n = min(chunk, stories - lo)
            ids = np.arange(lo + 1, lo + n + 1)
            seconds = rng.integers(0, int(SPAN.total_seconds()), size=n)
            vectors = synthetic_vectors(n, topics, rng, centers)
            counts = rng.integers(1, 4, size=n)
            names = rng.integers(len(TICKERS), size=(n, 3))
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy("COPY news.stories (story_id, first_seen, headline, symbols) FROM STDIN") as copy:
                    for i in range(n):
                        symbols = [TICKERS[j] for j in names[i, : counts[i]]]
                        copy.write_row(
                            (int(ids[i]), START + timedelta(seconds=int(seconds[i])), f"story {ids[i]}", symbols)
                        )
                with cur.copy(
                    "COPY news.story_embeddings (story_id, first_seen, symbols, model, embedding)"
                    " FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["bigint", "timestamptz", "text[]", "text", "vector"])
                    for i in range(n):
                        symbols = [TICKERS[j] for j in names[i, : counts[i]]]
                        copy.write_row(
                            (int(ids[i]), START + timedelta(seconds=int(seconds[i])), symbols, MODEL, vectors[i])
                        )
        figures["load_s"] = round(time.perf_counter() - t0, 1)
        conn.execute("SET maintenance_work_mem = '1GB'")
        t0 = time.perf_counter()
        conn.execute(hnsw_definition)
        figures["index_build_s"] = round(time.perf_counter() - t0, 1)
        figures["index"] = hnsw_definition
        conn.execute("VACUUM ANALYZE news.story_embeddings")
        conn.execute("ANALYZE news.stories")
        row = conn.execute("SELECT pg_size_pretty(hypertable_size('news.story_embeddings'))").fetchone()
        figures["table_size"] = row[0] if row else None
    figures.update(_layout(settings))
    figures["topics"] = topics
    return figures


def _migrate_stored(settings: Settings) -> dict[str, Any]:
    """Bring a reused scratch database to the current migrations, as a deployment would: its
    stories then go through every migration since it was built (timed)."""
    from db.connect import database_connection
    from db.migrate import migrate

    with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
        t0 = time.perf_counter()
        applied = migrate(conn)
        seconds = time.perf_counter() - t0
    names = [m.filename for m in applied.migrations]
    return {"migrated": names, "migrate_s": round(seconds, 1)} if names else {}


def _layout(settings: Settings) -> dict[str, Any]:
    """The chunks of the vector table and the size of their HNSW graphs, as stored."""
    from db.connect import database_connection

    with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), pg_size_pretty(sum(pg_relation_size(i.indexrelid)))"
            " FROM show_chunks('news.story_embeddings') AS c(chunk)"
            " JOIN pg_index i ON i.indrelid = c.chunk"
            " JOIN pg_am a ON a.oid = (SELECT relam FROM pg_class WHERE oid = i.indexrelid) AND a.amname = 'hnsw'"
        ).fetchone()
    return {"chunks": int(row[0]) if row else 0, "hnsw_size": row[1] if row else None}


KINDS = ("all_time", "30d", "ticker_90d", "like_story", "named_ticker")
Query = tuple[str, "np.ndarray | int", dict[str, Any]]


def _queries(n: int, seed: int, stories: int, topics: int = 2000, build_seed: int = 11) -> list[Query]:
    """``n`` queries, the kinds in turn: a vector near a stored topic (as a user's text would be)
    with the kind's filters, or (like_story) the id of a stored story."""
    centers = _unit(np.random.default_rng(build_seed).standard_normal((topics, DIM), dtype=np.float32))
    rng = np.random.default_rng(seed)
    vectors = synthetic_vectors(n, topics, rng, centers)
    end = START + SPAN
    plan: list[Query] = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        filters: dict[str, Any] = {}
        if kind == "30d":
            filters = {"since": end - timedelta(days=30)}
        elif kind == "ticker_90d":
            filters = {"since": end - timedelta(days=90), "symbols": [TICKERS[int(rng.integers(len(TICKERS)))]]}
        elif kind == "named_ticker":  # a text naming a ticker, no filter: the lifted search
            filters = {"named": TICKERS[int(rng.integers(len(TICKERS)))]}
        plan.append((kind, int(rng.integers(1, stories + 1)) if kind == "like_story" else vectors[i], filters))
    return plan


def _search(conn: Any, query: np.ndarray | int, filters: dict, k: int, ef_search: int | None) -> list[int]:
    from features.news_search import search_by_vector
    from storage.story_vectors import more_like_story, search_vectors

    if isinstance(query, int):
        return [h.story_id for h in more_like_story(conn, query, model=MODEL, k=k, **filters)]
    if "named" in filters:  # what `news search "T123 beats estimates"` runs after embedding the text
        text = f"{filters['named']} beats estimates"
        return [h.story_id for h in search_by_vector(conn, query, text, model=MODEL, k=k)]
    return [h.story_id for h in search_vectors(conn, query, model=MODEL, k=k, ef_search=ef_search, **filters)]


def _exact(conn: Any, query: np.ndarray | int, filters: dict, k: int) -> list[int]:
    """The true ``k`` nearest: every float32 vector of the hypertable compared (no index); for a
    named ticker, the true nearest and the true nearest about it, ranked as the search ranks them."""
    from features.news_search import rank_with_tickers

    if "named" in filters:
        named = [filters["named"]]
        plain, about = _exact_hits(conn, query, {}, k), _exact_hits(conn, query, {"symbols": named}, k)
        return [h.story_id for h in rank_with_tickers(plain, about, named, k)]
    return [h.story_id for h in _exact_hits(conn, query, filters, k)]


def _exact_hits(conn: Any, query: np.ndarray | int, filters: dict, k: int) -> list[Any]:
    from pgvector import Vector

    from storage.story_vectors import StoryHit, prepare, story_vector

    prepare(conn)
    exclude: list[int] = []
    if isinstance(query, int):
        stored = story_vector(conn, query, MODEL)
        if stored is None:
            raise AssertionError(f"story {query} of the bench has no vector")
        query, exclude = stored.embedding, [stored.story_id]
    where = ["model = %(model)s", "story_id <> ALL(%(exclude)s::bigint[])"]
    if "since" in filters:
        where.append("first_seen >= %(since)s")
    if "symbols" in filters:
        where.append("symbols && %(symbols)s::text[]")
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        rows = conn.execute(
            f"SELECT story_id, first_seen, embedding <=> %(q)s, symbols FROM news.story_embeddings"
            f" WHERE {' AND '.join(where)} ORDER BY embedding <=> %(q)s, story_id LIMIT %(k)s",
            {"q": Vector(query), "model": MODEL, "exclude": exclude, "k": k, **filters},
        ).fetchall()
    return [StoryHit(r[0], r[1], float(r[2]), "", tuple(r[3]), None) for r in rows]


def search_latency(
    settings: Settings,
    queries: int = 300,
    k: int = 10,
    recall_sample: int = 80,
    ef_search: int | None = None,
    stories: int = 1_000_000,
) -> dict[str, Any]:
    """Latency of ``queries`` searches (``k`` stories each) through storage.story_vectors, by kind;
    recall@k of the first ``recall_sample`` (spread over the kinds) against an exact scan."""
    from db.connect import database_connection

    plan = _queries(queries, seed=5, stories=stories)
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    found: dict[str, list[list[int]]] = {kind: [] for kind in KINDS}
    with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('shared_buffers')").fetchone()
        shared_buffers = row[0] if row else None
        for _kind, query, filters in plan[: 2 * len(KINDS)]:  # warm the caches and the connection
            _search(conn, query, filters, k, ef_search)
        load_before = os.getloadavg()[0]
        for kind, query, filters in plan:
            t0 = time.perf_counter()
            ids = _search(conn, query, filters, k, ef_search)
            times[kind].append((time.perf_counter() - t0) * 1000)
            found[kind].append(ids)
        load_after = os.getloadavg()[0]
        recall: dict[str, float] = {}
        for kind in [kind for kind, ts in times.items() if ts]:
            picked = [p for p in plan if p[0] == kind][: max(1, recall_sample // len(KINDS))]
            hit = total = 0
            for i, (_, query, filters) in enumerate(picked):
                truth = _exact(conn, query, filters, k)
                hit += len(set(truth) & set(found[kind][i]))
                total += len(truth)
            recall[kind] = round(hit / total, 3) if total else float("nan")
    every = np.array([t for ts in times.values() for t in ts])
    by_kind = {
        kind: {
            "p50_ms": round(float(np.percentile(ts, 50)), 2),
            "p95_ms": round(float(np.percentile(ts, 95)), 2),
            "p99_ms": round(float(np.percentile(ts, 99)), 2),
            f"recall_at_{k}": recall[kind],
        }
        for kind, ts in times.items()
        if ts  # fewer queries than kinds leave the last kinds out
    }
    return {
        "queries": queries,
        "k": k,
        "ef_search": ef_search or "default",
        "p50_ms": round(float(np.percentile(every, 50)), 2),
        "p95_ms": round(float(np.percentile(every, 95)), 2),
        "p99_ms": round(float(np.percentile(every, 99)), 2),
        "by_kind": by_kind,
        "shared_buffers": shared_buffers,
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
    }


def run(
    settings: Settings,
    stories: int = 1_000_000,
    queries: int = 300,
    texts: int = 512,
    rebuild: bool = False,
    drop: bool = False,
    ef_search: int | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {"embedding": embedding_stage(texts)}
    stored = None if rebuild else _stored(settings)
    if stored == stories:
        report["build"] = {"reused": True, **_migrate_stored(settings), **_layout(settings)}
    else:
        report["build"] = build(settings, stories)
    report["stories"] = stories
    report["vectors"] = "synthetic (clustered unit vectors, 384-d); see bench/news_search.py"
    report["search"] = search_latency(settings, queries, ef_search=ef_search, stories=stories)
    # one target per kind of query: a mix's p95 would say more about the mix than about search
    report["targets"] = {
        f"search_p95_ms_{kind}": {"target": TARGET_P95_MS, "met": figures["p95_ms"] < TARGET_P95_MS}
        for kind, figures in report["search"]["by_kind"].items()
    }
    report["targets_met"] = all(t["met"] for t in report["targets"].values() if t["met"] is not None)
    if drop:
        from stack.scratch import drop_database

        drop_database(settings, DATABASE)
    return report


def main(argv: list[str] | None = None) -> None:
    from core.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--rebuild", action="store_true", help="build the scratch database again")
    parser.add_argument("--drop", action="store_true", help="drop the scratch database afterwards")
    parser.add_argument("--ef-search", type=int, default=None, help="HNSW candidates per chunk scan")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(load_settings(), args.stories, args.queries, args.texts, args.rebuild, args.drop, args.ef_search)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
