"""The continuous aggregates of 1-minute bars (db/routines/70_continuous_aggregates.sql) against the
vendor's own bars, and the read rule of storage/aggregates.py: stored vendor bars win over every
aggregate bucket they overlap, the aggregate fills the rest.

Minute bars are ingested from the stack's market sandbox over real HTTP by the ingest flow; the
vendor's 5min/15min/1hour/1day bars are fetched from the same sandbox's Polygon REST API.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
import pytest

from core.settings import Settings
from db.connect import database_connection
from db.migrate import FULL_EDITION, running_edition
from flows.ingestion import ingest_flow
from storage.aggregates import aggregates_available, refresh_bar_aggregates
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.router import StorageRouter
from tasks.pending import process_symbol_pending
from tasks.resources import RunResources
from tests.support.collection import collect
from tests.support.tiering import make_bars
from tests.support.vendors import polygon_bars

# Two weeks around the half days: Wed 2025-12-24 (13:00 close; Thu 12-25 a holiday) and Fri
# 2026-11-27 (13:00 close, the day after Thanksgiving).
RANGES = [("2025-12-22", "2025-12-26"), ("2026-11-25", "2026-11-30")]
HALF_DAYS = ["2025-12-24", "2026-11-27"]
TIMEFRAMES = ["5min", "15min", "1hour", "1day"]
# Where this test's hot window starts: no tiering ran on these symbols, so everything they have is
# hot, 2025-12 included (by the clock's 30-day window it would be the lake's, where no refresh goes).
HOT_SINCE = datetime(2025, 12, 1, tzinfo=UTC)
TABLES = ("market.bars_intraday", "market.bars_daily", "market.latest_bars", "ops.watermarks")
# vendors round vwap to 4 decimals; the aggregate keeps full precision
VWAP_ROUNDING = 0.5e-4 + 1e-9


@pytest.fixture
def minute_symbols(stack: Settings) -> Iterator[Callable[[], str]]:
    """Sandbox-valid symbols (at most 6 letters) no other test uses; at teardown their bars are
    deleted and the aggregates refreshed over what they covered, so no bucket of them stays."""
    made: list[str] = []

    def make() -> str:
        made.append(f"Q{uuid.uuid4().hex[:5].upper()}")
        return made[-1]

    yield make
    if not made:
        return
    with database_connection(stack, autocommit=True) as conn:
        span = conn.execute(
            "SELECT min(ts), max(ts) FROM market.bars_intraday WHERE symbol = ANY(%s)", (made,)
        ).fetchone()
        for table in TABLES:
            conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (made,))  # type: ignore[arg-type]
        if span and span[0] is not None and aggregates_available(conn):
            for view in ("5min", "15min", "1hour", "1day"):
                conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, %s, %s)",
                    (f"market.bars_agg_{view}", span[0] - pd.Timedelta(days=1), span[1] + pd.Timedelta(days=2)),
                )


# Every vendor bar stored, flagged or not: in strict mode a minute validation rejects (a random
# symbol's outlier return) is rightly missing from its bucket, which then differs from the vendor's.
LENIENT = {"quality": {"validation_mode": "lenient"}}


def ingest(symbol: str, start: str, end: str, timeframe: str = "1min", source: str = "polygon") -> dict:
    result = asyncio.run(
        ingest_flow(
            symbols=[symbol],
            start_date=start,
            end_date=f"{end}T23:59:59",
            timeframe=timeframe,
            source=source,
            overrides=LENIENT,
        )
    )
    assert [p["symbol"] for p in result["processed"]] == [symbol], result
    return result


def vendor_bars(stack: Settings, symbol: str, start: str, end: str, timeframe: str) -> pd.DataFrame:
    return polygon_bars(stack.sandbox.base_url, symbol, start, end, timeframe)


def router(conn: psycopg.Connection, stack: Settings) -> StorageRouter:
    return StorageRouter(conn, Lake.from_settings(stack.lake), stack)


def ny_window(start: str, end: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    return pd.Timestamp(start, tz="America/New_York"), pd.Timestamp(end, tz="America/New_York") + pd.Timedelta(days=1)


def volume_weighted(minutes: pd.DataFrame, buckets: pd.Series) -> pd.Series:
    """The volume-weighted vwap of the vendor's minutes per bucket (the sandbox's daily bars carry
    (O+H+L+C)/4 as vwap, so the daily check weighs the vendor's own minutes instead)."""
    pv = (minutes["vwap"] * minutes["volume"]).groupby(buckets).sum()
    return pv / minutes["volume"].groupby(buckets).sum()


def test_the_full_edition_has_the_aggregates(conn: psycopg.Connection) -> None:
    assert running_edition(conn) == FULL_EDITION
    assert aggregates_available(conn)
    views = conn.execute(
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = 'market' ORDER BY view_name"
    ).fetchall()
    assert views == [(f"bars_agg_{tf}", False) for tf in sorted(TIMEFRAMES)]
    policies = conn.execute(
        "SELECT hypertable_name, config->>'start_offset' FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
    ).fetchall()
    assert len(policies) == 4 and {p[1] for p in policies} == {"3 days"}


def test_aggregates_equal_the_vendors_bars_including_half_days(
    stack: Settings, conn: psycopg.Connection, minute_symbols: Callable[[], str]
) -> None:
    symbol = minute_symbols()
    for start, end in RANGES:
        ingest(symbol, start, end)
    reader = router(conn, stack)
    for start, end in RANGES:
        lo, hi = ny_window(start, end)
        assert refresh_bar_aggregates(conn, lo, hi, HOT_SINCE) is not None

    for start, end in RANGES:
        lo, hi = ny_window(start, end)
        minutes = vendor_bars(stack, symbol, start, end, "1min")
        for timeframe in TIMEFRAMES:
            want = vendor_bars(stack, symbol, start, end, timeframe)
            got = reader.read_bars([symbol], lo, hi, timeframe)
            assert set(got["source"]) == {"polygon/1min"}, timeframe  # nothing of the vendor's own is stored
            assert got["ts"].tolist() == want["ts"].tolist(), timeframe
            for column in ("open", "high", "low", "close", "volume", "trade_count"):
                assert got[column].tolist() == want[column].tolist(), (timeframe, column)
            if timeframe == "1day":
                day = minutes["ts"].dt.tz_convert("America/New_York").dt.normalize().dt.tz_convert("UTC")
                expected_vwap = volume_weighted(minutes, day).to_numpy()
            else:
                expected_vwap = want["vwap"].to_numpy()
            np.testing.assert_allclose(got["vwap"].to_numpy(), expected_vwap, rtol=0, atol=VWAP_ROUNDING)

    for half_day in HALF_DAYS:
        lo, hi = ny_window(half_day, half_day)
        local = {
            tf: reader.read_bars([symbol], lo, hi, tf)["ts"].dt.tz_convert("America/New_York") for tf in TIMEFRAMES
        }
        assert len(local["5min"]) == 42 and local["5min"].iloc[-1].strftime("%H:%M") == "12:55"
        assert local["1hour"].dt.strftime("%H:%M").tolist() == ["09:00", "10:00", "11:00", "12:00"]
        assert local["1day"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [f"{half_day} 00:00"]


def test_stored_vendor_bars_win_over_the_buckets_they_overlap(
    stack: Settings, conn: psycopg.Connection, minute_symbols: Callable[[], str]
) -> None:
    symbol = minute_symbols()
    ingest(symbol, "2026-11-30", "2026-12-02")
    ingest(symbol, "2026-12-01", "2026-12-01", timeframe="5min")  # the vendor's own 5min bars of one session
    ingest(symbol, "2026-12-02", "2026-12-02", timeframe="1hour", source="yahoo")  # hours from 09:30
    reader = router(conn, stack)
    lo, hi = ny_window("2026-11-30", "2026-12-02")
    assert refresh_bar_aggregates(conn, lo, hi, HOT_SINCE) is not None

    five = reader.read_bars([symbol], lo, hi, "5min")
    by_day = five.groupby(five["ts"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d"))["source"]
    assert by_day.agg(lambda s: sorted(set(s))).to_dict() == {
        "2026-11-30": ["polygon/1min"],
        "2026-12-01": ["polygon"],
        "2026-12-02": ["polygon/1min"],
    }
    assert by_day.size().tolist() == [78, 78, 78] and not five.duplicated(["symbol", "ts"]).any()

    hours = reader.read_bars([symbol], lo, hi, "1hour")
    local = hours["ts"].dt.tz_convert("America/New_York")
    yahoo_day = local.dt.strftime("%Y-%m-%d") == "2026-12-02"
    # Yahoo's 09:30, 10:30, ... bars overlap every clock-aligned aggregate hour of their day
    assert set(hours.loc[yahoo_day, "source"]) == {"yahoo"}
    assert local[yahoo_day].dt.strftime("%H:%M").tolist() == [f"{h:02d}:30" for h in range(9, 16)]
    assert set(hours.loc[~yahoo_day, "source"]) == {"polygon/1min"} and (~yahoo_day).sum() == 2 * 7

    # gap detection counts what a read returns: no session of 5min bars is missing
    counts = reader.bars_per_session([symbol], lo, hi, "5min")
    assert counts["bars"].tolist() == [78, 78, 78]


def test_minutes_newer_than_the_last_refresh_are_aggregated_at_read_time(
    stack: Settings, conn: psycopg.Connection, minute_symbols: Callable[[], str]
) -> None:
    symbol = minute_symbols()
    # Two sessions in a future January (09:30 New York = 14:30 UTC), never refreshed by anything:
    # beyond every aggregate's watermark, so only real-time aggregation can show them.
    minutes = make_bars([symbol], "2027-01-04", 2, "1min", per_session=390)
    upsert_bars(conn, minutes)
    # the router's clock after both sessions: every bucket's window has closed
    reader = StorageRouter(conn, Lake.from_settings(stack.lake), stack, now=datetime(2027, 1, 6, tzinfo=UTC))
    got = reader.read_bars([symbol], "2027-01-04", "2027-01-06", "15min")

    bucket = minutes["ts"].dt.floor("15min")
    grouped = minutes.groupby(bucket)
    with_vwap = minutes["vwap"].notna()
    pv = (minutes["vwap"] * minutes["volume"]).where(with_vwap).groupby(bucket).sum()
    assert got["ts"].tolist() == list(grouped.groups)
    assert got["open"].tolist() == grouped["open"].first().tolist()
    assert got["high"].tolist() == grouped["high"].max().tolist()
    assert got["low"].tolist() == grouped["low"].min().tolist()
    assert got["close"].tolist() == grouped["close"].last().tolist()
    assert got["volume"].tolist() == grouped["volume"].sum().tolist()
    expected_vwap = (pv / minutes["volume"].where(with_vwap).groupby(bucket).sum()).to_numpy()
    np.testing.assert_allclose(got["vwap"].to_numpy(), expected_vwap, rtol=1e-12)


def test_a_bucket_still_forming_is_not_served(
    stack: Settings, conn: psycopg.Connection, minute_symbols: Callable[[], str]
) -> None:
    symbol = minute_symbols()
    upsert_bars(conn, make_bars([symbol], "2027-02-01", 1, "1min", per_session=390))  # 14:30-20:59 UTC
    lake = Lake.from_settings(stack.lake)

    mid_session = StorageRouter(conn, lake, stack, now=datetime(2027, 2, 1, 15, 7, tzinfo=UTC))
    quarter_hours = mid_session.read_bars([symbol], "2027-02-01", "2027-02-02", "15min")
    assert [t.strftime("%H:%M") for t in quarter_hours["ts"]] == ["14:30", "14:45"]  # 15:00 is forming
    assert mid_session.read_bars([symbol], "2027-02-01", "2027-02-02", "1day").empty  # the day is forming

    next_day = StorageRouter(conn, lake, stack, now=datetime(2027, 2, 2, 5, 0, tzinfo=UTC))  # NY midnight
    assert len(next_day.read_bars([symbol], "2027-02-01", "2027-02-02", "15min")) == 26
    day = next_day.read_bars([symbol], "2027-02-01", "2027-02-03", "1day")
    assert day["ts"].tolist() == [pd.Timestamp("2027-02-01", tz="America/New_York").tz_convert("UTC")]
    assert day["volume"].iloc[0] == int(
        conn.execute("SELECT sum(volume) FROM market.bars_intraday WHERE symbol = %s", (symbol,)).fetchone()[0]
    )


def materialized_days(conn: psycopg.Connection, symbol: str) -> dict[object, int]:
    """The 1day buckets of ``symbol`` materialized (not computed at read time): its volume by day."""
    table = conn.execute(
        "SELECT quote_ident(materialization_hypertable_schema) || '.' || quote_ident(materialization_hypertable_name)"
        " FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = 'market' AND view_name = 'bars_agg_1day'"
    ).fetchone()
    assert table is not None
    rows = conn.execute(f"SELECT ts, volume FROM {table[0]} WHERE symbol = %s", (symbol,)).fetchall()  # type: ignore[arg-type]
    return {ts: int(volume) for ts, volume in rows}


def test_a_run_killed_before_its_refresh_leaves_it_to_the_next_run(stack: Settings, minute_symbols) -> None:
    """A backfill older than the policies' 3 days, its processing committed and the run killed
    before its refresh-aggregates step: the range lived in the run's memory alone, so the rerun
    (nothing new to fetch, every row unchanged) refreshed nothing and the sessions' aggregates
    stayed unmaterialized for good. The range is now recorded with the bars; the rerun refreshes it."""
    with database_connection(stack, autocommit=True) as conn:
        if not aggregates_available(conn):
            pytest.fail(f"this stack's TimescaleDB edition ({running_edition(conn)}) has no continuous aggregates")
    symbol = minute_symbols()
    today = datetime.now(UTC).date()
    start, end = str(today - pd.Timedelta(days=12)), str(today - pd.Timedelta(days=8))
    parsed = collect(stack, symbol, start, f"{end}T23:59:59", keep_parsed=True, now=datetime.now(UTC)).parsed
    with RunResources.from_settings(stack) as resources:  # the killed run: processed, not refreshed
        ((outcome, _),) = process_symbol_pending(resources, "polygon", symbol, "1min", "market_data", parsed)
    assert outcome.inserted > 0 and outcome.minutes_from is not None
    with database_connection(stack, autocommit=True) as conn:
        assert materialized_days(conn, symbol) == {}

    asyncio.run(ingest_flow(symbols=[symbol], start_date=start, end_date=f"{end}T23:59:59", timeframe="1min"))

    with database_connection(stack, autocommit=True) as conn:
        days = materialized_days(conn, symbol)
        stored = router(conn, stack).read_bars([symbol], *ny_window(start, end), "1day")
        left = conn.execute(
            "SELECT count(*) FROM ops.aggregate_refreshes WHERE range_to >= %s AND range_from <= %s",
            (pd.Timestamp(start, tz=UTC), pd.Timestamp(end, tz=UTC) + pd.Timedelta(days=1)),
        ).fetchone()
    assert len(days) >= 2 and left == (0,)
    assert days == {ts.to_pydatetime(): int(v) for ts, v in zip(stored["ts"], stored["volume"], strict=True)}
