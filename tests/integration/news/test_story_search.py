"""News search through the real stack: the built-in model embeds stories, pgvector stores one vector
per story in news.story_embeddings (migration 0022), and search/more-like-this read it back with
time and symbol filters, through Python and through `marketpipe news`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from core.errors import MigrationError, StorageError
from core.settings import Settings
from db.connect import database_connection
from db.migrate import migrate
from features.embeddings import MINILM, MiniLMOnnx
from features.news_search import StoryText, search_news, store_story_embeddings, stories_like
from stack.postgres import EmbeddedPostgres
from storage.story_vectors import (
    StoryVector,
    count_story_vectors,
    prepare,
    search_statement,
    search_vectors,
    story_vector,
    upsert_story_vectors,
)
from tests.support.cli import run_cli

# Story ids and times of this module only (other tests share the session's database).
BASE_ID = 8_160_000_000
T0 = datetime(2031, 5, 5, 13, 30, tzinfo=UTC)

STORIES = [
    (1, 0, "Apple beats quarterly earnings estimates on record iPhone sales", ("AAPL",)),
    (2, 1, "Oil slides after OPEC agrees to raise output next month", ("XOM", "CVX")),
    (3, 2, "Tesla recalls 120,000 vehicles over faulty seat belt sensors", ("TSLA",)),
    (4, 3, "Federal Reserve holds interest rates steady, signals two cuts this year", ()),
    (5, 4, "Nvidia unveils a new data-center chip for training AI models", ("NVDA",)),
    (6, 30, "Apple shares jump as iPhone demand in China rebounds", ("AAPL",)),
]
# How a syndication partner ran story 1: other words, the same news.
SYNDICATED_COPY = "iPhone maker Apple tops Wall Street profit forecasts as phone sales hit a record"


@pytest.fixture(scope="module")
def model() -> MiniLMOnnx:
    return MiniLMOnnx()


def _story_rows(conn: psycopg.Connection, stories) -> None:
    with conn.transaction():
        for sid, hours, headline, symbols in stories:
            conn.execute(
                "INSERT INTO news.stories (story_id, first_seen, headline, symbols) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (story_id) DO UPDATE SET first_seen = EXCLUDED.first_seen, headline = EXCLUDED.headline,"
                " symbols = EXCLUDED.symbols",
                (BASE_ID + sid, T0 + timedelta(hours=hours), headline, list(symbols)),
            )


@pytest.fixture(scope="module")
def stored(stack: Settings, model: MiniLMOnnx):
    with database_connection(stack, autocommit=True) as conn:
        _story_rows(conn, STORIES)
        texts = [StoryText(BASE_ID + s, T0 + timedelta(hours=h), text, None, sym) for s, h, text, sym in STORIES]
        assert store_story_embeddings(conn, texts, model) == len(STORIES)
    return STORIES


def test_the_table_is_a_hypertable_with_an_hnsw_index_on_pgvector(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone() == ("0.8.0",)
    dims = conn.execute(
        "SELECT column_name FROM timescaledb_information.dimensions"
        " WHERE hypertable_schema = 'news' AND hypertable_name = 'story_embeddings'"
    ).fetchall()
    assert dims == [("first_seen",)]
    interval = conn.execute(
        "SELECT time_interval FROM timescaledb_information.dimensions"
        " WHERE hypertable_schema = 'news' AND hypertable_name = 'story_embeddings'"
    ).fetchone()
    assert interval == (timedelta(days=90),)  # migration 0024: fewer graphs for a search without a range
    indexes = {
        r[0]
        for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'news' AND tablename = 'story_embeddings'"
        ).fetchall()
    }
    assert any("USING hnsw (((embedding)::halfvec(384)) halfvec_cosine_ops)" in d for d in indexes), indexes


def test_the_search_reads_the_hnsw_index_and_ranks_by_the_float32_vectors(
    stored, conn: psycopg.Connection, model: MiniLMOnnx
) -> None:
    query = model.embed([SYNDICATED_COPY])[0]
    statement, params = search_statement(query, model=model.name, k=3)  # no range: every chunk's graph
    prepare(conn)
    with conn.transaction():
        # with the other scans priced out (the test's chunks are small), a query whose ORDER BY did not
        # match the index expression would still scan: the plan names the HNSW index only when they match
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall())
    assert "story_embeddings_hnsw_idx" in plan, plan
    hits = search_vectors(conn, query, model=model.name, k=3, since=T0 - timedelta(days=1))
    for hit in hits:
        stored_vector = story_vector(conn, hit.story_id, model.name)
        assert stored_vector is not None
        exact = 1.0 - float(np.dot(query.astype(np.float64), stored_vector.embedding.astype(np.float64)))
        assert abs(hit.distance - exact) < 5e-6  # float32 arithmetic; half precision is ~3e-5 off
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_the_syndicated_copy_finds_its_story_first(stored, conn: psycopg.Connection, model: MiniLMOnnx) -> None:
    hits = search_news(
        conn, SYNDICATED_COPY, k=3, since=T0 - timedelta(days=1), until=T0 + timedelta(days=3), model=model
    )
    assert [h.story_id for h in hits][:2] == [BASE_ID + 1, BASE_ID + 6]  # the story, then the other Apple one
    assert hits[0].headline == STORIES[0][2] and hits[0].symbols == ("AAPL",)
    assert hits[0].similarity > 0.6 and hits[0].similarity > hits[-1].similarity


def test_the_time_range_and_symbols_filter(stored, conn: psycopg.Connection, model: MiniLMOnnx) -> None:
    # story 1 first seen at T0: a range starting after it leaves story 6 as the nearest Apple story
    later = search_news(
        conn, SYNDICATED_COPY, k=3, since=T0 + timedelta(hours=1), until=T0 + timedelta(days=3), model=model
    )
    assert later[0].story_id == BASE_ID + 6 and BASE_ID + 1 not in [h.story_id for h in later]
    # the Tesla filter returns only Tesla's story, however far it is from the text
    tesla = search_news(conn, SYNDICATED_COPY, k=5, since=T0 - timedelta(days=1), symbols=["tsla"], model=model)
    assert [h.story_id for h in tesla] == [BASE_ID + 3]
    energy = search_news(conn, "crude prices", k=5, since=T0 - timedelta(days=1), symbols=["CVX", "NVDA"], model=model)
    assert [h.story_id for h in energy] == [BASE_ID + 2, BASE_ID + 5]
    none = search_news(conn, SYNDICATED_COPY, k=5, since=T0 + timedelta(days=10), model=model)
    assert all(h.story_id < BASE_ID or h.story_id > BASE_ID + 100 for h in none)


def test_more_like_this_story(stored, conn: psycopg.Connection, model: MiniLMOnnx) -> None:
    hits = stories_like(conn, BASE_ID + 1, k=3, since=T0 - timedelta(days=1), until=T0 + timedelta(days=3), model=model)
    ids = [h.story_id for h in hits]
    assert ids[0] == BASE_ID + 6 and BASE_ID + 1 not in ids


def test_an_update_replaces_the_row_even_when_the_story_moves_earlier(
    stack: Settings, conn: psycopg.Connection, model: MiniLMOnnx
) -> None:
    sid = BASE_ID + 50
    first = [(50, 100, "Boeing wins a large order for wide-body jets", ("BA",))]
    _story_rows(conn, first)
    store_story_embeddings(conn, [StoryText(sid, T0 + timedelta(hours=100), first[0][2], None, ("BA",))], model)
    before = story_vector(conn, sid, model.name)
    # an earlier copy arrived: the story's first_seen moves back a day and its text changes
    moved = T0 + timedelta(hours=76)
    store_story_embeddings(
        conn, [StoryText(sid, moved, "Airbus cuts delivery target on engine shortages", None, ("EADSY",))], model
    )
    rows = conn.execute("SELECT first_seen, symbols FROM news.story_embeddings WHERE story_id = %s", (sid,)).fetchall()
    assert rows == [(moved, ["EADSY"])]
    after = story_vector(conn, sid, model.name)
    assert before is not None and after is not None
    assert float(before.embedding @ after.embedding) < 0.9  # the vector is the new text's
    hits = search_news(
        conn, "Airbus delivery shortfall", k=1, since=moved, until=moved + timedelta(hours=1), model=model
    )
    assert [h.story_id for h in hits] == [sid]


def test_a_batch_keeps_each_storys_last_row_exactly_and_two_batches_fit_in_one_transaction(
    conn: psycopg.Connection,
) -> None:
    rng = np.random.default_rng(16)
    vectors = rng.standard_normal((3, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    _story_rows(conn, [(70, 300, "Copper hits a record", ("FCX",)), (71, 301, "Gold slips", ())])
    a, b, t = BASE_ID + 70, BASE_ID + 71, T0 + timedelta(hours=300)
    with conn.transaction():  # a caller's transaction holding two batches
        first = [StoryVector(a, t, vectors[0], ("fcx",)), StoryVector(a, t, vectors[1], ("FCX", "SCCO"))]
        assert upsert_story_vectors(conn, first, "synthetic") == 1
        assert upsert_story_vectors(conn, [StoryVector(b, t + timedelta(hours=1), vectors[2])], "synthetic") == 1
    kept = story_vector(conn, a, "synthetic")
    assert kept is not None and np.array_equal(kept.embedding, vectors[1])  # the later row, bit for bit
    assert kept.symbols == ("FCX", "SCCO") and kept.first_seen == t
    other = story_vector(conn, b, "synthetic")
    assert other is not None and np.array_equal(other.embedding, vectors[2]) and other.symbols == ()
    assert conn.execute("SELECT to_regclass('story_vectors_batch')").fetchone() == (None,)


def test_a_batch_with_an_unknown_story_stores_nothing(stored, conn: psycopg.Connection, model: MiniLMOnnx) -> None:
    sid, missing = BASE_ID + 60, BASE_ID + 61
    _story_rows(conn, [(60, 200, "Netflix adds subscribers", ("NFLX",))])
    batch = [
        StoryText(sid, T0 + timedelta(hours=200), "Netflix adds subscribers", None, ("NFLX",)),
        StoryText(missing, T0 + timedelta(hours=200), "A story never stored", None, ()),
    ]
    with pytest.raises(StorageError, match=r"not in news\.stories"):
        store_story_embeddings(conn, batch, model)
    assert conn.execute(
        "SELECT count(*) FROM news.story_embeddings WHERE story_id IN (%s, %s)", (sid, missing)
    ).fetchone() == (0,)
    assert count_story_vectors(conn, model.name) >= len(STORIES)


def test_cli_search_and_like(stored) -> None:
    minilm = {"MARKETPIPE_EMBEDDINGS__MODEL": MINILM}  # the fixture stored MiniLM's vectors; the default is another
    since, until = (T0 - timedelta(days=1)).date().isoformat(), (T0 + timedelta(days=3)).date().isoformat()
    result = run_cli(
        "news", "search", SYNDICATED_COPY, "--since", since, "--until", until, "-k", "2", "--json", env=minilm
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["story_id"] for r in rows] == [BASE_ID + 1, BASE_ID + 6]
    assert rows[0]["headline"] == STORIES[0][2] and rows[0]["symbols"] == ["AAPL"] and 0.6 < rows[0]["similarity"] <= 1

    table = run_cli(
        "news", "search", "Tesla recall", "--since", since, "--until", until, "--symbols", "TSLA", env=minilm
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[1:5] == [str(BASE_ID + 3), "2031-05-05", "15:30", "TSLA"]
    assert STORIES[2][2] in table.stdout

    like = run_cli(
        "news", "like", str(BASE_ID + 1), "--since", since, "--until", until, "-k", "1", "--json", env=minilm
    )
    assert like.returncode == 0, like.stderr
    assert [r["story_id"] for r in json.loads(like.stdout)] == [BASE_ID + 6]


def test_cli_mistakes_are_one_line_errors(stored) -> None:
    unknown = run_cli("news", "like", "999", "--since", "7d")
    assert unknown.returncode != 0
    assert unknown.stderr.strip() == (
        "error: story 999 does not exist; `marketpipe news search TEXT` finds stories by text"
    )
    bad_time = run_cli("news", "search", "apple", "--since", "yesterday")
    assert bad_time.returncode != 0 and len(bad_time.stderr.strip().splitlines()) == 1
    assert "--since 'yesterday' is neither an ISO date/time" in bad_time.stderr


def _bare_database(stack: Settings, name: str) -> EmbeddedPostgres:
    """A database with TimescaleDB only (no pgvector), owned by the application role."""
    server = EmbeddedPostgres(stack.database, stack.state_dir)
    with server.superuser_connection("postgres") as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} OWNER {stack.database.user}")
    with server.superuser_connection(name) as admin:
        admin.execute("CREATE EXTENSION timescaledb")
    return server


def test_the_migrator_says_how_to_get_a_missing_extension(stack: Settings, tmp_path: Path) -> None:
    name = "vec_extension_check"
    server = _bare_database(stack, name)
    routines = tmp_path / "routines"
    routines.mkdir()
    try:
        (tmp_path / "0001_needs_vector.sql").write_text(
            "CREATE EXTENSION IF NOT EXISTS vector;\nCREATE TABLE t (v vector(3));\n"
        )
        with database_connection(stack, dbname=name, autocommit=True) as conn:
            # the server has pgvector, but the application role may not create it
            with pytest.raises(
                MigrationError, match=r"run `CREATE EXTENSION vector;` as a superuser in database 'vec_extension_check'"
            ):
                migrate(conn, tmp_path, routines)
            assert conn.execute("SELECT to_regclass('public.t')").fetchone() == (None,)  # nothing half-applied
        (tmp_path / "0001_needs_vector.sql").unlink()
        (tmp_path / "0001_needs_other.sql").write_text("CREATE EXTENSION IF NOT EXISTS no_such_extension_here;\n")
        missing = "needs the PostgreSQL extension 'no_such_extension_here', which this server does not have"
        with (
            database_connection(stack, dbname=name, autocommit=True) as conn,
            pytest.raises(MigrationError, match=missing),
        ):
            migrate(conn, tmp_path, routines)
    finally:
        with server.superuser_connection("postgres") as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
