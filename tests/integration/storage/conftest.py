"""A connection to the session's embedded stack and unique symbols that are cleaned up afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from db.connect import database_connection


@pytest.fixture
def conn(stack) -> Iterator[psycopg.Connection]:
    with database_connection(stack, autocommit=True) as connection:
        yield connection


@pytest.fixture
def symbols(stack) -> Iterator[Callable[[], str]]:
    """A factory of symbols no other test uses; their rows are deleted at teardown."""
    made: list[str] = []

    def make() -> str:
        made.append(f"T{uuid.uuid4().hex[:8].upper()}")
        return made[-1]

    yield make
    if made:
        with database_connection(stack, autocommit=True) as cleanup:
            for table in ("market.bars_intraday", "market.bars_daily", "market.corporate_actions", "ops.watermarks"):
                cleanup.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (made,))
