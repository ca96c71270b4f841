"""A ticker the search text names lifts the stories about it (features.news_search): through the
real store (pgvector's HNSW graphs), with vectors made by hand so the nearness is known: the query
is nearer to a story about MSFT (cosine 0.90) than to one about AAPL (0.85)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from features.news_search import TICKER_BOOST, search_by_vector
from storage.story_vectors import StoryVector, upsert_story_vectors

MODEL = "ticker-lift-test-384"  # searches see only this model's vectors
BASE_ID = 8_170_000_000
T0 = datetime(2031, 8, 4, 14, 0, tzinfo=UTC)


def _unit(*weights: tuple[int, float]) -> np.ndarray:
    out = np.zeros(384, dtype=np.float32)
    for axis, weight in weights:
        out[axis] = weight
    return out / np.linalg.norm(out)


QUERY = _unit((0, 1.0))
STORIES = {  # story id offset -> (symbols, vector)
    1: (("MSFT",), _unit((0, 0.90), (1, (1 - 0.90**2) ** 0.5))),
    2: (("AAPL",), _unit((0, 0.85), (2, (1 - 0.85**2) ** 0.5))),
    3: (("IBM",), _unit((0, 0.50), (3, (1 - 0.50**2) ** 0.5))),
}


@pytest.fixture
def stored(conn: psycopg.Connection) -> psycopg.Connection:
    with conn.transaction():
        for offset, (symbols, _) in STORIES.items():
            conn.execute(
                "INSERT INTO news.stories (story_id, first_seen, headline, symbols) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (story_id) DO NOTHING",
                (BASE_ID + offset, T0 + timedelta(minutes=offset), f"story {offset}", list(symbols)),
            )
    rows = [StoryVector(BASE_ID + o, T0 + timedelta(minutes=o), v, s) for o, (s, v) in STORIES.items()]
    upsert_story_vectors(conn, rows, MODEL)
    return conn


def _ids(hits) -> list[int]:
    return [h.story_id - BASE_ID for h in hits]


def test_a_named_ticker_lifts_its_story_over_a_nearer_one(stored: psycopg.Connection) -> None:
    plain = search_by_vector(stored, QUERY, "quarterly results beat estimates", model=MODEL, k=3)
    assert _ids(plain) == [1, 2, 3]
    lifted = search_by_vector(stored, QUERY, "AAPL quarterly results beat estimates", model=MODEL, k=3)
    assert _ids(lifted) == [2, 1, 3]  # 0.85 + 0.1 over 0.90
    assert lifted[0].similarity == pytest.approx(0.85, abs=1e-4)  # the similarity shown stays the cosine
    assert TICKER_BOOST == 0.1


def test_a_lift_too_small_to_pass_a_much_nearer_story_changes_nothing(stored: psycopg.Connection) -> None:
    assert _ids(search_by_vector(stored, QUERY, "$IBM results", model=MODEL, k=3)) == [1, 2, 3]  # 0.5 + 0.1 < 0.85


def test_the_lift_reaches_a_story_beyond_the_plain_first_k(stored: psycopg.Connection) -> None:
    # k=1: the plain search returns MSFT only; the search limited to the named ticker brings AAPL
    assert _ids(search_by_vector(stored, QUERY, "what did AAPL report", model=MODEL, k=1)) == [2]


def test_no_lift_for_an_unknown_ticker_a_lowercase_word_or_an_explicit_symbols_filter(
    stored: psycopg.Connection,
) -> None:
    assert _ids(search_by_vector(stored, QUERY, "ZZZQ results", model=MODEL, k=3)) == [1, 2, 3]
    assert _ids(search_by_vector(stored, QUERY, "aapl results", model=MODEL, k=3)) == [1, 2, 3]
    filtered = search_by_vector(stored, QUERY, "AAPL results", model=MODEL, k=3, symbols=["MSFT", "AAPL"])
    assert _ids(filtered) == [1, 2]  # the caller's filter decides; nothing is lifted


def test_the_exact_search_finds_what_the_graphs_find(stored: psycopg.Connection) -> None:
    from storage.story_vectors import search_vectors

    for symbols in (["AAPL"], ["MSFT", "IBM"], None):
        graphs = search_vectors(stored, QUERY, model=MODEL, k=3, symbols=symbols)
        exact = search_vectors(stored, QUERY, model=MODEL, k=3, symbols=symbols, exact=True)
        assert _ids(exact) == _ids(graphs) and [h.distance for h in exact] == pytest.approx(
            [h.distance for h in graphs]
        )
