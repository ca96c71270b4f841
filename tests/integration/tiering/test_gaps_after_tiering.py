"""Gap detection counts tiered sessions as stored: a backfill never refetches what the lake holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import psycopg

from core.settings import Settings
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.tiering import tier_chunks
from tasks.historical import find_gaps
from tests.support.tiering import make_bars, year_window


def test_tiered_sessions_are_not_gaps(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    whole, partial = symbols(), symbols()
    # Three full January sessions (09:30-16:00 New York = 14:30-21:00 UTC) for one symbol; the other
    # lacks its middle session.
    bars = make_bars([whole, partial], "2001-01-08", 3, "1min", per_session=390)
    middle = bars["ts"].dt.date == date(2001, 1, 9)
    upsert_bars(conn, bars[~(middle & (bars["symbol"] == partial))])
    before = find_gaps(stack, [whole, partial], "1min", date(2001, 1, 8), date(2001, 1, 10))

    older, newer = year_window(2001)
    report = tier_chunks(conn, lake, stack, older_than=newer, newer_than=older)
    assert report.rows == 5 * 390
    assert conn.execute("SELECT count(*) FROM market.bars WHERE symbol = ANY(%s)", ([whole, partial],)).fetchone() == (
        0,
    )
    after = find_gaps(stack, [whole, partial], "1min", date(2001, 1, 8), date(2001, 1, 10))

    for gaps in (before, after):
        assert [(g.symbols, g.start, g.end, g.sessions) for g in gaps] == [
            ((partial,), date(2001, 1, 9), date(2001, 1, 9), 1)
        ]

    # Rows in both tiers count once: a late hot copy of a tiered session is no extra bar.
    upsert_bars(conn, bars[(bars["symbol"] == whole) & (bars["ts"].dt.date == date(2001, 1, 8))])
    assert find_gaps(stack, [whole], "1min", date(2001, 1, 8), date(2001, 1, 10)) == []
