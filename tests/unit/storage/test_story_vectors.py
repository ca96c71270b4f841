"""storage.story_vectors' checks before any SQL, and the migrator's extension check's parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from core.errors import RequestError
from db.migrate import required_extensions
from storage.story_vectors import (
    DIMENSIONS,
    MAX_K,
    StoryHit,
    checked_vector,
    normalize_symbols,
    search_statement,
    search_vectors,
)


def test_a_vector_must_have_the_table_dimension_and_be_finite_and_nonzero() -> None:
    good = np.ones(DIMENSIONS)
    assert checked_vector(good).dtype == np.float32
    with pytest.raises(RequestError, match=r"shape \(10,\).*384-dimensional"):
        checked_vector(np.ones(10))
    bad = good.copy()
    bad[5] = np.nan
    with pytest.raises(RequestError, match="NaN"):
        checked_vector(bad)
    with pytest.raises(RequestError, match="all zeros"):
        checked_vector(np.zeros(DIMENSIONS))


def test_symbols_are_upper_cased_stripped_and_deduplicated() -> None:
    assert normalize_symbols([" aapl", "MSFT", "aapl"]) == ("AAPL", "MSFT")
    assert normalize_symbols(None) == ()
    with pytest.raises(RequestError, match="blank symbol"):
        normalize_symbols(["AAPL", " "])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k=0: ask for between 1 and 1000"),
        ({"k": 5000}, "k=5000"),
        ({"k": 10, "ef_search": 5}, r"ef_search=5: give between k \(10\) and 1000"),
        ({"since": datetime(2026, 1, 2)}, "since=2026-01-02T00:00:00 has no time zone"),
        (
            {"since": datetime(2026, 1, 2, tzinfo=UTC), "until": datetime(2026, 1, 1, tzinfo=UTC)},
            "is not before until",
        ),
    ],
)
def test_bad_search_arguments_are_refused_before_any_query(kwargs: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        search_vectors(None, np.ones(DIMENSIONS), model="m", **kwargs)  # type: ignore[arg-type]  # no connection used


def test_the_index_orders_by_half_precision_and_twice_k_candidates_are_ranked_in_float32() -> None:
    statement, params = search_statement(np.ones(DIMENSIONS, dtype=np.float32), model="m", k=10, symbols=("AAPL",))
    text = statement.as_string(None)
    # migration 0024's index expression, to the letter: another spelling would not use the index
    assert "ORDER BY embedding::halfvec(384) <=> %(q)s::halfvec(384) LIMIT %(pool)s" in text
    assert "embedding <=> %(q)s AS distance" in text and "ORDER BY distance, story_id LIMIT %(k)s" in text
    assert "symbols && %(symbols)s::text[]" in text and "first_seen >=" not in text and "story_id <> ALL" not in text
    assert (params["k"], params["pool"], params["symbols"]) == (10, 20, ["AAPL"])
    assert search_statement(np.ones(DIMENSIONS, dtype=np.float32), model="m", k=MAX_K)[1]["pool"] == MAX_K


def test_similarity_is_one_minus_the_cosine_distance() -> None:
    hit = StoryHit(1, datetime(2026, 1, 1, tzinfo=UTC), 0.25, "h", (), None)
    assert hit.similarity == 0.75


def test_the_migrator_finds_the_extensions_a_migration_creates() -> None:
    sql = (
        "-- CREATE EXTENSION in a comment is not a statement\n"
        'CREATE EXTENSION IF NOT EXISTS vector;\ncreate extension "pg_trgm";'
    )
    assert required_extensions(sql) == ["vector", "pg_trgm"]
    assert required_extensions("CREATE TABLE t (x int);") == []
