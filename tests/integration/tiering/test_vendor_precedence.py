"""Source precedence across the tiers: the bar served and the bar the lake keeps are the
best-ranked vendor's whether its row was hot or already tiered when the other vendor's arrived,
and the losing vendor's row is kept in market.vendor_bars_* (as the hot writer keeps it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import psycopg
import pyarrow.compute as pc
from pandas.testing import assert_frame_equal

from core.settings import Settings
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.lifecycle import compact
from storage.router import StorageRouter
from storage.tiering import manifest_files, tier_chunks
from tests.support.tiering import make_bars, year_window

# Mondays of a year this module alone writes (tests/support/tiering.py), one per test: each test's
# partition holds its own objects only
BETTER_TIERED_FIRST, WORSE_TIERED_FIRST, CORRECTED = "1981-06-01", "1981-07-06", "1981-08-03"


def vendor_bars(bars: pd.DataFrame, source: str, shift: float) -> pd.DataFrame:
    """The same bars as another vendor sends them: ``source``, prices ``shift`` dollars apart."""
    prices = ["open", "high", "low", "close"]
    return bars.assign(source=source, **{p: (bars[p] + shift).round(2) for p in prices})


def tier_year(conn: psycopg.Connection, lake: Lake, stack: Settings) -> None:
    older, _ = year_window(1981)
    tier_chunks(conn, lake, stack, dataset="bars_intraday", older_than=older.replace(year=1982), newer_than=older)


def read_session(router: StorageRouter, symbol: str, session: str) -> pd.DataFrame:
    return router.read_bars([symbol], session, pd.Timestamp(session) + pd.Timedelta(days=1), "1min")


def kept_apart(conn: psycopg.Connection, symbol: str) -> pd.DataFrame:
    """The symbol's rows in market.vendor_bars_intraday (bars that lost to another vendor's)."""
    rows = conn.execute(
        "SELECT ts, close, source FROM market.vendor_bars_intraday WHERE symbol = %s ORDER BY ts", (symbol,)
    ).fetchall()
    return pd.DataFrame(rows, columns=["ts", "close", "source"])


def lake_rows(conn: psycopg.Connection, lake: Lake, symbol: str, session: str) -> tuple[int, pd.DataFrame]:
    """How many objects of the session's partition the manifest lists, and their rows of ``symbol``."""
    files = [
        f
        for f in manifest_files(conn, dataset="bars_intraday", timeframe="1min", symbols=[symbol])
        if f.partition == f"date={session}"
    ]
    tables = [lake.read_parquet(f.key) for f in files]
    rows = pd.concat([t.filter(pc.equal(t["symbol"], symbol)).to_pandas() for t in tables], ignore_index=True)
    return len(files), rows


def test_a_worse_vendors_backfill_of_a_tiered_session_neither_wins_nor_deletes_the_better_row(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    symbol = symbols()
    polygon = make_bars([symbol], BETTER_TIERED_FIRST, 1, "1min", 5).assign(source="polygon")
    yahoo = vendor_bars(polygon, "yahoo", 0.5)
    precedence = stack.storage.source_precedence
    assert precedence.index("polygon") < precedence.index("yahoo")
    upsert_bars(conn, polygon, precedence=precedence)
    router = StorageRouter(conn, lake, stack, now=datetime(1981, 12, 1, tzinfo=UTC))
    served = read_session(router, symbol, BETTER_TIERED_FIRST)
    assert served["source"].tolist() == ["polygon"] * 5
    tier_year(conn, lake, stack)

    # Yahoo's backfill finds no stored bar of its own there, and the hot store none at all.
    upsert_bars(conn, yahoo, precedence=precedence)
    assert_frame_equal(read_session(router, symbol, BETTER_TIERED_FIRST), served)

    tier_year(conn, lake, stack)  # yahoo's bars become a second object of the partition
    assert lake_rows(conn, lake, symbol, BETTER_TIERED_FIRST)[0] == 2
    assert_frame_equal(read_session(router, symbol, BETTER_TIERED_FIRST), served)

    compact(conn, lake, stack, dataset="bars_intraday", min_files=2)
    assert_frame_equal(read_session(router, symbol, BETTER_TIERED_FIRST), served)
    objects, cold = lake_rows(conn, lake, symbol, BETTER_TIERED_FIRST)
    assert objects == 1 and cold["source"].tolist() == ["polygon"] * 5
    assert cold["close"].tolist() == served["close"].tolist()
    losers = kept_apart(conn, symbol)
    assert losers["source"].tolist() == ["yahoo"] * 5
    assert losers["close"].tolist() == yahoo["close"].tolist()


def test_a_better_vendor_arriving_after_the_worse_one_was_tiered_wins_and_the_worse_row_is_kept(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    symbol = symbols()
    polygon = make_bars([symbol], WORSE_TIERED_FIRST, 1, "1min", 5, seed=7).assign(source="polygon")
    yahoo = vendor_bars(polygon, "yahoo", -0.5)
    precedence = stack.storage.source_precedence
    upsert_bars(conn, yahoo, precedence=precedence)
    tier_year(conn, lake, stack)
    router = StorageRouter(conn, lake, stack, now=datetime(1981, 12, 1, tzinfo=UTC))

    upsert_bars(conn, polygon, precedence=precedence)
    served = read_session(router, symbol, WORSE_TIERED_FIRST)
    assert served["source"].tolist() == ["polygon"] * 5
    assert served["close"].tolist() == polygon["close"].tolist()

    tier_year(conn, lake, stack)
    assert_frame_equal(read_session(router, symbol, WORSE_TIERED_FIRST), served)
    compact(conn, lake, stack, dataset="bars_intraday", min_files=2)
    assert_frame_equal(read_session(router, symbol, WORSE_TIERED_FIRST), served)
    objects, cold = lake_rows(conn, lake, symbol, WORSE_TIERED_FIRST)
    assert objects == 1 and cold["source"].tolist() == ["polygon"] * 5
    losers = kept_apart(conn, symbol)
    assert losers["source"].tolist() == ["yahoo"] * 5
    assert losers["close"].tolist() == yahoo["close"].tolist()


def test_compaction_never_puts_an_older_version_of_a_losing_bar_over_a_newer_one(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    symbol = symbols()
    polygon = make_bars([symbol], CORRECTED, 1, "1min", 5, seed=9).assign(source="polygon")
    yahoo, yahoo_fix = vendor_bars(polygon, "yahoo", 0.5), vendor_bars(polygon, "yahoo", 0.25)
    precedence = stack.storage.source_precedence
    upsert_bars(conn, polygon, precedence=precedence)
    tier_year(conn, lake, stack)
    upsert_bars(conn, yahoo, precedence=precedence)
    tier_year(conn, lake, stack)  # the partition: polygon's object, then yahoo's first version
    corrected = vendor_bars(polygon, "polygon", 0.01)
    upsert_bars(conn, corrected, precedence=precedence)  # hot again: polygon's correction...
    upsert_bars(conn, yahoo_fix, precedence=precedence)  # ...refuses yahoo's, kept apart

    compact(conn, lake, stack, dataset="bars_intraday", min_files=2)

    losers = kept_apart(conn, symbol)
    assert losers["close"].tolist() == yahoo_fix["close"].tolist()  # not yahoo's first version
    router = StorageRouter(conn, lake, stack, now=datetime(1981, 12, 1, tzinfo=UTC))
    served = read_session(router, symbol, CORRECTED)
    assert served["source"].tolist() == ["polygon"] * 5
    assert served["close"].tolist() == corrected["close"].tolist()
