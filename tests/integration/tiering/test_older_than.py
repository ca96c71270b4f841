"""An explicit ``older_than`` cannot reach into the chunks that must stay hot.

1-minute bars stay hot for the continuous aggregates' refresh window and a day of margin either side
(a refresh over a tiered range would empty the 5min..1day buckets there); nothing is tiered from the
future. ``tier_chunks`` refuses such a value before any chunk moves, for the CLI, the flow and callers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.errors import RequestError
from core.settings import Settings
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.tiering import tier_chunks
from tests.support.tiering import make_bars


def hot_rows(conn: psycopg.Connection, names: list[str]) -> int:
    return conn.execute("SELECT count(*) FROM market.bars WHERE symbol = ANY(%s)", (names,)).fetchone()[0]


def test_minutes_inside_the_aggregates_refresh_window_are_refused_and_stay_hot(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = [symbols()]
    upsert_bars(conn, make_bars(names, "1979-06-04", 2, "1min", 10))  # Mon, Tue
    now, since = datetime(1979, 6, 10, tzinfo=UTC), datetime(1979, 6, 1, tzinfo=UTC)

    with pytest.raises(RequestError) as refused:
        tier_chunks(
            conn,
            lake,
            stack,
            dataset="bars_intraday",
            older_than=datetime(1979, 6, 6, tzinfo=UTC),
            newer_than=since,
            now=now,
        )

    message = str(refused.value)
    assert "older_than 1979-06-06 00:00 UTC" in message and "3-day refresh" in message
    assert "up to 1979-06-05 00:00 UTC" in message and "storage.routing.hot_data_days" in message
    assert hot_rows(conn, names) == 2 * 10
    moved = tier_chunks(
        conn,
        lake,
        stack,
        dataset="bars_intraday",
        older_than=datetime(1979, 6, 5, tzinfo=UTC),
        newer_than=since,
        now=now,
    )
    assert moved.rows == 10 and hot_rows(conn, names) == 10  # Monday, five days old, may move


def test_a_future_older_than_is_refused_for_every_dataset(
    stack: Settings, conn: psycopg.Connection, lake: Lake
) -> None:
    now = datetime(1979, 6, 10, tzinfo=UTC)

    with pytest.raises(RequestError) as refused:
        tier_chunks(conn, lake, stack, dataset="trades", older_than=now + timedelta(days=1), newer_than=now, now=now)

    assert "older_than 1979-06-11 00:00 UTC is in the future" in str(refused.value)
    assert "trades may be tiered up to 1979-06-10 00:00 UTC" in str(refused.value)


def test_the_tiering_flow_refuses_a_future_older_than(stack: Settings) -> None:
    from flows.tiering import tiering_flow

    with pytest.raises(RequestError, match="older_than 2999-01-01 00:00 UTC is in the future"):
        tiering_flow(datasets=["trades"], older_than="2999-01-01", newer_than="2998-01-01")
