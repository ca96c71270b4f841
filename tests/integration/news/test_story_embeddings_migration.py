"""Migration 0024 on a populated database: the story vectors stored in 30-day chunks move to a table of
90-day chunks whose HNSW graphs index a half-precision copy, and every row, constraint and search
still holds. The database is first built with the migrations before 0024, populated through the
writer of that layout, then migrated by today's migrator. The routines are today's, so they are
applied by that last step only: they may name tables of later migrations (61_news_columnstore.sql
sets the compression of 0026's tables)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from core.settings import Settings
from db.connect import database_connection
from db.migrate import MIGRATIONS_DIR, migrate
from stack.scratch import create_database, drop_database
from storage.story_vectors import DIMENSIONS, StoryVector, search_vectors, upsert_story_vectors

NAME = "story_vectors_0024_scratch"
MODEL = "test-model"
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
STORIES = 40  # first seen every 5 days: 200 days, seven or eight 30-day chunks
ROWS = "SELECT story_id, first_seen, symbols, model, embedding::text, updated_at FROM news.story_embeddings ORDER BY 1"


@pytest.fixture
def migrations_before(tmp_path: Path) -> Path:
    out = tmp_path / "migrations"
    out.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0024":
            (out / path.name).write_text(path.read_text())
    return out


@pytest.fixture
def scratch(stack: Settings) -> Iterator[psycopg.Connection]:
    create_database(stack, NAME)
    with database_connection(stack, dbname=NAME, autocommit=True) as conn:
        yield conn
    drop_database(stack, NAME)


def _vectors(n: int) -> np.ndarray:
    raw = np.random.default_rng(24).standard_normal((n, DIMENSIONS)).astype(np.float32)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def _chunk_days(conn: psycopg.Connection) -> list[int]:
    rows = conn.execute(
        "SELECT extract(day FROM range_end - range_start)::int FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = 'news' AND hypertable_name = 'story_embeddings' ORDER BY range_start"
    ).fetchall()
    return [r[0] for r in rows]


def test_stored_vectors_move_to_90_day_chunks_unchanged(scratch: psycopg.Connection, migrations_before: Path) -> None:
    conn = scratch
    no_routines = migrations_before.parent / "routines"
    no_routines.mkdir()
    migrate(conn, migrations_before, no_routines)
    vectors = _vectors(STORIES)
    seen = [T0 + timedelta(days=5 * i) for i in range(STORIES)]
    with conn.transaction():
        for i in range(STORIES):
            conn.execute(
                "INSERT INTO news.stories (story_id, first_seen, headline, symbols) VALUES (%s, %s, %s, %s)",
                (i + 1, seen[i], f"story {i + 1}", ["AAA"] if i % 2 else ["BBB"]),
            )
    with conn.transaction():  # the 0022 layout's columns (today's writer also fills later migrations' columns)
        for i in range(STORIES):
            conn.execute(
                "INSERT INTO news.story_embeddings (story_id, first_seen, symbols, model, embedding)"
                " VALUES (%s, %s, %s, %s, %s::vector)",
                (i + 1, seen[i], ["AAA"] if i % 2 else ["BBB"], MODEL, str(vectors[i].tolist())),
            )
    before = conn.execute(ROWS).fetchall()
    assert len(before) == STORIES and set(_chunk_days(conn)) == {30}

    applied = migrate(conn)

    assert [m.filename for m in applied.migrations][:1] == ["0024_story_embeddings_search.sql"]  # and later ones
    assert conn.execute(ROWS).fetchall() == before  # every column of every row, updated_at too
    assert set(_chunk_days(conn)) == {90} and len(_chunk_days(conn)) <= 4
    indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'story_embeddings'")}
    assert indexes == {
        "story_embeddings_pkey",
        "story_embeddings_first_seen_idx",
        "story_embeddings_story_idx",
        "story_embeddings_symbols_idx",
        "story_embeddings_hnsw_idx",
    }
    assert conn.execute("SELECT to_regclass('news.story_embeddings_90d')").fetchone() == (None,)

    # a stored story's own vector finds it first, at distance 0 in float32; the symbol filter holds
    hits = search_vectors(conn, vectors[7], model=MODEL, k=3)
    assert hits[0].story_id == 8 and abs(hits[0].distance) < 1e-6
    assert {h.symbols for h in search_vectors(conn, vectors[7], model=MODEL, k=5, symbols=["BBB"])} == {("BBB",)}
    # the writer's one-row-per-story rule and the cascade from news.stories still hold
    conn.execute("UPDATE news.stories SET first_seen = %s WHERE story_id = 8", (T0 - timedelta(days=400),))
    upsert_story_vectors(conn, [StoryVector(8, T0 - timedelta(days=400), vectors[7], ("AAA",))], MODEL)
    assert conn.execute("SELECT first_seen FROM news.story_embeddings WHERE story_id = 8").fetchall() == [
        (T0 - timedelta(days=400),)
    ]
    conn.execute("DELETE FROM news.stories WHERE story_id = 9")
    assert conn.execute("SELECT count(*) FROM news.story_embeddings WHERE story_id = 9").fetchone() == (0,)
