"""A chunk tiered while the router reads is returned exactly once, whichever tier it is read from.

Tiering commits a chunk's manifest rows and its DROP together; a read sends one statement for the
hot rows and one for the manifest. :class:`TieringBetweenReads` tiers the chunk between the two,
deterministically: the reader's connection runs it right after the first of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import cast

import psycopg
import pytest
from pandas.testing import assert_frame_equal

from core.settings import Settings
from db.connect import database_connection
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.router import StorageRouter
from storage.tiering import tier_chunks
from tests.support.tiering import TieringBetweenReads, make_bars


@pytest.fixture
def reader(stack: Settings) -> Iterator[psycopg.Connection]:
    """The router's own autocommit connection (the tiering runs on the test's ``conn``)."""
    with database_connection(stack, autocommit=True) as connection:
        yield connection


def racing_router(
    stack: Settings, reader: psycopg.Connection, conn: psycopg.Connection, lake: Lake, first_day: datetime
) -> tuple[StorageRouter, TieringBetweenReads]:
    """A router whose reads tier the chunk of ``first_day`` (one day of 1-minute bars) between them."""
    racing = TieringBetweenReads(
        reader,
        lambda: tier_chunks(
            conn,
            lake,
            stack,
            dataset="bars_intraday",
            older_than=first_day.replace(day=first_day.day + 1),
            newer_than=first_day,
        ),
    )
    return StorageRouter(cast(psycopg.Connection, racing), lake, stack), racing


def test_bars_of_a_chunk_tiered_between_the_reads_are_returned_once(
    stack: Settings, conn: psycopg.Connection, reader: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(2))
    upsert_bars(conn, make_bars(names, "1972-06-05", 2, "1min", 10))  # Mon, Tue: two daily chunks
    expected = StorageRouter(conn, lake, stack).read_bars(names, "1972-06-05", "1972-06-07", "1min")
    router, racing = racing_router(stack, reader, conn, lake, datetime(1972, 6, 5, tzinfo=UTC))

    bars = router.read_bars(names, "1972-06-05", "1972-06-07", "1min")

    assert racing.report is not None and racing.report.rows == 2 * 10  # Monday moved between the reads
    assert_frame_equal(bars, expected)


def test_sessions_of_a_chunk_tiered_between_the_reads_are_counted_once(
    stack: Settings, conn: psycopg.Connection, reader: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(2))
    upsert_bars(conn, make_bars(names, "1977-06-06", 2, "1min", 10))  # Mon, Tue: two daily chunks
    expected = StorageRouter(conn, lake, stack).bars_per_session(names, "1977-06-06", "1977-06-08", "1min")
    router, racing = racing_router(stack, reader, conn, lake, datetime(1977, 6, 6, tzinfo=UTC))

    counts = router.bars_per_session(names, "1977-06-06", "1977-06-08", "1min")

    assert racing.report is not None and racing.report.rows == 2 * 10
    assert len(expected) == 4 and set(expected["bars"]) == {10}
    by_session = ["symbol", "session_date"]
    assert_frame_equal(
        counts.sort_values(by_session, ignore_index=True), expected.sort_values(by_session, ignore_index=True)
    )
