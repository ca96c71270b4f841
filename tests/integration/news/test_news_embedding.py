"""The news flow embeds the stories it stores (issue 16): after an ingest from the sandbox over HTTP,
every story of the ingested news items has exactly one vector in news.story_embeddings, a search for
a story's headline finds it (first for most), and a rerun of the same window stores no new vector and leaves
the vectors as they were. Posts (each a story of its own) are not embedded."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from core.settings import Settings
from db.connect import database_connection
from features.embeddings import DEFAULT_MODEL, process_model
from features.news_search import search_news
from flows.ingestion import ingest_flow

SYMBOLS = ["CSCO", "ORCL", "INTC", "AMD"]  # no other news test ingests these


def _ingest(source: str, data_type: str, start: datetime, end: datetime, incremental: bool = True) -> dict:
    return asyncio.run(
        ingest_flow(
            symbols=SYMBOLS,
            start_date=start.isoformat(),
            end_date=end.isoformat(),
            data_type=data_type,
            source=source,
            incremental=incremental,
        )
    )


def _ingest_all(start: datetime, end: datetime, incremental: bool = True) -> list[dict]:
    return [_ingest(s, "news", start, end, incremental) for s in ("polygon", "alpaca")]


def _vectors(conn: psycopg.Connection) -> dict[int, list[tuple]]:
    """Every vector row of the stories that have a news item about SYMBOLS, by story."""
    rows = conn.execute(
        """
        SELECT s.story_id, e.first_seen, e.symbols, e.model, e.updated_at, e.embedding::text
        FROM news.stories s LEFT JOIN news.story_embeddings e USING (story_id)
        WHERE s.story_id IN (SELECT story_id FROM news.item_symbols WHERE symbol = ANY(%s) AND kind = 'news')
        """,
        (SYMBOLS,),
    ).fetchall()
    out: dict[int, list[tuple]] = {}
    for story_id, *vector in rows:
        out.setdefault(story_id, []).extend([tuple(vector)] if vector[0] is not None else [])
    return out


@pytest.fixture(scope="module")
def window(stack: Settings) -> tuple[datetime, datetime]:
    now = datetime.fromisoformat(httpx.get(f"{stack.sandbox.base_url}/_sandbox/health").json()["now"])
    return now - timedelta(days=60), now


@pytest.fixture(scope="module")
def ingested(stack: Settings, window) -> dict[int, list[tuple]]:
    runs = _ingest_all(*window)
    assert all(not r["failed"] for r in runs)
    with database_connection(stack) as conn:
        return _vectors(conn)


def test_every_ingested_story_has_exactly_one_vector(stack: Settings, ingested) -> None:
    assert len(ingested) > 10
    assert {sid: len(rows) for sid, rows in ingested.items() if len(rows) != 1} == {}
    with database_connection(stack) as conn:
        filed = conn.execute(
            """
            SELECT count(*) FROM news.stories s JOIN news.story_embeddings e USING (story_id)
            WHERE s.story_id = ANY(%s) AND e.first_seen = s.first_seen AND e.symbols = s.symbols AND e.model = %s
            """,
            (list(ingested), DEFAULT_MODEL),
        ).fetchone()[0]
    assert filed == len(ingested)  # filed under the story's own first_seen and tickers, by the built-in model


def test_posts_are_stored_without_vectors(stack: Settings, window) -> None:
    end = window[1]
    run = _ingest("reddit", "social", end - timedelta(days=1), end)
    assert not run["failed"]
    with database_connection(stack) as conn:
        posts, embedded = conn.execute(
            """
            SELECT count(DISTINCT i.story_id), count(e.story_id) FROM news.items i
            LEFT JOIN news.story_embeddings e USING (story_id)
            WHERE i.kind = 'social' AND i.published_at >= %s
            """,
            (end - timedelta(days=1),),
        ).fetchone()
    assert posts > 0 and embedded == 0


def test_a_search_for_a_stored_headline_finds_its_story(stack: Settings, ingested) -> None:
    """Each ingested story whose headline no other story shares (syndicated copies are one story),
    searched by its headline alone, is among the first five hits, and first for most of them. Not
    first for all: a story is embedded from its headline and lead, and with the static default model
    (a bag of word pieces) a paraphrase about the same ticker whose lead shares more of the query's
    words can come first (measured: 'ORCL shares soar following earnings beat estimates' found its
    own story third, at 0.50, under 'ORCL shares surge after earnings beat estimates' at 0.77;
    35 of 39 stories first, all within three)."""
    model = process_model(DEFAULT_MODEL)
    with database_connection(stack, autocommit=True) as conn:
        stories = conn.execute(
            """
            SELECT s.story_id, s.headline, s.first_seen FROM news.stories s
            WHERE s.story_id = ANY(%s)
              AND EXISTS (SELECT 1 FROM news.items i WHERE i.story_id = s.story_id AND i.kind = 'news')
              AND (SELECT count(*) FROM news.stories o WHERE o.headline = s.headline) = 1
            """,
            (list(ingested),),
        ).fetchall()
        ranks = {}
        for sid, headline, first_seen in stories:
            window = {"since": first_seen - timedelta(days=30), "until": first_seen + timedelta(days=30)}
            hits = [h.story_id for h in search_news(conn, headline, k=5, model=model, **window)]
            ranks[sid] = hits.index(sid) + 1 if sid in hits else None
    assert len(ranks) > 10
    assert {sid: rank for sid, rank in ranks.items() if rank is None} == {}  # every one within five
    assert sum(rank == 1 for rank in ranks.values()) >= 0.8 * len(ranks)


def test_a_rerun_adds_no_vector_and_leaves_the_vectors_unchanged(stack: Settings, window, ingested) -> None:
    runs = _ingest_all(*window, incremental=False)
    assert all(not r["failed"] for r in runs), runs
    assert sum(p["inserted"] + p["updated"] for r in runs for p in r["processed"]) == 0, runs
    stored = sum(p["inserted"] + p["updated"] + p["unchanged"] for r in runs for p in r["processed"])
    assert stored > 0, runs  # the rerun did read the items again
    with database_connection(stack) as conn:
        again = _vectors(conn)
    assert again == ingested  # same stories, same rows: first_seen, symbols, model, updated_at, vector


def test_a_rerun_fills_a_vector_that_is_missing(stack: Settings, window, ingested) -> None:
    # a story stored while embedding was off (or before the flow embedded) has no vector: the next
    # run that reads one of its items embeds it, from the same text
    sid = min(ingested)
    before = ingested[sid][0][-1]
    with database_connection(stack, autocommit=True) as conn:
        assert conn.execute("DELETE FROM news.story_embeddings WHERE story_id = %s", (sid,)).rowcount == 1
    runs = _ingest_all(*window, incremental=False)
    assert all(not r["failed"] for r in runs), runs
    with database_connection(stack) as conn:
        after = _vectors(conn)
        distance = conn.execute(
            "SELECT embedding <=> %s::vector FROM news.story_embeddings WHERE story_id = %s", (before, sid)
        ).fetchone()[0]
    assert len(after[sid]) == 1 and distance < 1e-3
    assert {s: r for s, r in after.items() if s != sid} == {s: r for s, r in ingested.items() if s != sid}


def _in_scope(stdout: str) -> dict:
    """`news embed --json` without what it says of the owed vectors (the queue is the database's)."""
    return {k: v for k, v in json.loads(stdout).items() if k not in ("owed", "owed_embedded")}


def test_news_embed_moves_the_stored_stories_to_another_model_and_back(
    stack: Settings, ingested, marketpipe_cli
) -> None:
    # after a change of embeddings.model the stored stories have the old model's vectors, which
    # search never compares with the new one's: `news embed` re-embeds them, and a rerun has nothing to do
    hashed = ("--set", "embeddings.model=tests.support.embeddings:make_hashed_words")
    scope = ("--symbols", ",".join(SYMBOLS), "--json")
    importable = {"PYTHONPATH": str(Path(__file__).resolve().parents[3])}  # the swapped model lives in tests/
    first = marketpipe_cli(*hashed, "news", "embed", *scope, env=importable)
    assert first.returncode == 0, first.stderr[-2000:]
    assert _in_scope(first.stdout) == {"model": "hashed-words-384", "stories": len(ingested), "embedded": len(ingested)}
    with database_connection(stack) as conn:
        moved = _vectors(conn)
    assert set(moved) == set(ingested) and all(
        len(rows) == 1 and rows[0][2] == "hashed-words-384" for rows in moved.values()
    )
    again = marketpipe_cli(*hashed, "news", "embed", *scope, env=importable)
    assert _in_scope(again.stdout) == {"model": "hashed-words-384", "stories": 0, "embedded": 0}

    # meanwhile the default model's searches say what to do
    sid = min(ingested)
    like = marketpipe_cli("news", "like", str(sid))
    assert (
        like.returncode == 2 and f"story {sid} has a vector by hashed-words-384, not by {DEFAULT_MODEL}" in like.stderr
    )
    assert "`marketpipe news embed`" in like.stderr and "Traceback" not in like.stderr

    back = marketpipe_cli("news", "embed", *scope)  # the configured default again
    assert back.returncode == 0, back.stderr[-2000:]
    assert _in_scope(back.stdout) == {"model": DEFAULT_MODEL, "stories": len(ingested), "embedded": len(ingested)}
    with database_connection(stack) as conn:
        restored = _vectors(conn)
        distance = conn.execute(
            "SELECT max(e.embedding <=> o.v::vector) FROM news.story_embeddings e"
            " JOIN unnest(%s::bigint[], %s::text[]) AS o(story_id, v) USING (story_id)",
            (list(ingested), [rows[0][-1] for rows in ingested.values()]),
        ).fetchone()[0]
    assert all(rows[0][2] == DEFAULT_MODEL for rows in restored.values())
    assert distance < 1e-3  # the same vectors as the flow stored (same text, same model)


def test_news_embed_first_embeds_the_owed_vectors_whatever_its_range(stack: Settings, ingested, marketpipe_cli) -> None:
    # a story whose vector a killed or failed write left owed: queued, its vector gone. `news embed`
    # over a range that does not hold it (nothing after the sandbox's now) still embeds it from the queue
    sid = max(ingested)
    with database_connection(stack, autocommit=True) as conn:
        assert conn.execute("DELETE FROM news.story_embeddings WHERE story_id = %s", (sid,)).rowcount == 1
        conn.execute("INSERT INTO news.story_vector_queue (story_id, queued_at) VALUES (%s, clock_timestamp())", (sid,))
    later = (max(r[0][0] for r in ingested.values()) + timedelta(days=365)).isoformat()
    run = marketpipe_cli("news", "embed", "--since", later, "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert (summary["stories"], summary["embedded"]) == (0, 0)  # none without a vector in that range
    assert summary["owed"] >= 1 and summary["owed_embedded"] >= 1
    with database_connection(stack) as conn:
        after = _vectors(conn)
        queued = conn.execute("SELECT count(*) FROM news.story_vector_queue WHERE story_id = %s", (sid,)).fetchone()[0]
        distance = conn.execute(
            "SELECT embedding <=> %s::vector FROM news.story_embeddings WHERE story_id = %s",
            (ingested[sid][0][-1], sid),
        ).fetchone()[0]
    assert queued == 0
    assert len(after[sid]) == 1 and after[sid][0][:3] == ingested[sid][0][:3]  # filed as before, by the default
    assert distance < 1e-3  # the same vector (same text, same model)
