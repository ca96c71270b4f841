"""Bars still forming, through the real ingest flow and real HTTP to the stack's sandbox on a pinned
clock: a run at 14:11 New York time and another after the close store exactly what one run after
the close stores, for minute bars and for the day's daily bar.

The sandbox serves nothing after its clock (intraday: only windows that have ended; the day's
daily bar as it forms) and sends its clock as the Date header; validation judges each bar against
it, stores a bar whose window had not closed as provisional, and a provisional bar never advances
the watermark, so the next run fetches it again and stores it final.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from core.model import PROVISIONAL_FLAG
from core.settings import Settings
from db.connect import database_connection
from flows.ingestion import ingest_flow

DAY = "2024-06-03"
AT_1411 = f"{DAY}T14:11:30-04:00"
AFTER_CLOSE = f"{DAY}T16:30:00-04:00"
COLUMNS = "ts, open, high, low, close, volume, vwap, trade_count, source, quality_flags"


@pytest.fixture
def pin(stack: Settings) -> Iterator[Callable[[str], None]]:
    """Pin the stack's sandbox clock; put it back (the wall clock) afterwards."""
    url = f"{stack.sandbox.base_url}/_sandbox/clock"

    def at(instant: str) -> None:
        response = httpx.post(url, json={"now": instant})
        assert response.status_code == 200, response.text

    try:
        yield at
    finally:
        httpx.delete(url)


def ingest(symbol: str, timeframe: str, start: str) -> dict[str, Any]:
    return asyncio.run(ingest_flow(symbols=[symbol], start_date=start, end_date=f"{DAY}T23:59:59", timeframe=timeframe))


def stored(stack: Settings, symbol: str, timeframe: str) -> pd.DataFrame:
    with database_connection(stack) as conn:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM market.bars WHERE symbol = %s AND timeframe = %s ORDER BY ts", (symbol, timeframe)
        ).fetchall()
    return pd.DataFrame(rows, columns=[c.strip() for c in COLUMNS.split(",")])


def watermark(stack: Settings, symbol: str, timeframe: str) -> pd.Timestamp | None:
    with database_connection(stack) as conn:
        row = conn.execute(
            "SELECT high_water_ts FROM ops.watermarks WHERE dataset = 'bars' AND symbol = %s AND timeframe = %s",
            (symbol, timeframe),
        ).fetchone()
    return pd.Timestamp(row[0]) if row else None


def forget(stack: Settings, symbol: str) -> None:
    """Every row of ``symbol`` in every table that has one (bars, watermarks, raw-page manifest...)."""
    with database_connection(stack, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.table_schema, c.table_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.column_name = 'symbol' AND t.table_type = 'BASE TABLE'"
            " AND c.table_schema IN ('market', 'ops', 'features')"
        ).fetchall()
        for schema, table in tables:
            conn.execute(f'DELETE FROM "{schema}"."{table}" WHERE symbol = %s', (symbol,))


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="America/New_York")


def test_minute_bars_of_a_run_at_1411_and_one_after_the_close_equal_one_run_after_the_close(
    stack: Settings, pin: Callable[[str], None]
) -> None:
    symbol = "FRMI"
    forget(stack, symbol)
    pin(AT_1411)
    early = ingest(symbol, "1min", DAY)
    at_1411 = stored(stack, symbol, "1min")
    assert len(at_1411) == 281  # 09:30 .. 14:10: only the minutes that had ended
    assert at_1411["ts"].max() == ny(f"{DAY} 14:10")
    assert early["quality_score"] == pytest.approx(1.0)  # the rest of the day is not a gap yet
    assert watermark(stack, symbol, "1min") == ny(f"{DAY} 14:10")

    pin(AFTER_CLOSE)
    ingest(symbol, "1min", DAY)
    two_runs = stored(stack, symbol, "1min")

    forget(stack, symbol)
    ingest(symbol, "1min", DAY)
    one_run = stored(stack, symbol, "1min")
    forget(stack, symbol)

    assert len(one_run) == 390 and (one_run["quality_flags"] == 0).all()
    pd.testing.assert_frame_equal(two_runs, one_run)


def test_todays_daily_bar_is_stored_provisional_at_1411_and_final_after_the_close(
    stack: Settings, pin: Callable[[str], None]
) -> None:
    symbol = "FRMD"
    start = "2024-05-28"
    forget(stack, symbol)
    pin(AT_1411)
    ingest(symbol, "1day", start)
    forming = stored(stack, symbol, "1day")
    assert len(forming) == 5
    assert forming["quality_flags"].tolist() == [0, 0, 0, 0, PROVISIONAL_FLAG]
    assert watermark(stack, symbol, "1day") == ny("2024-05-31")  # not past the forming bar

    pin(AFTER_CLOSE)
    ingest(symbol, "1day", start)
    two_runs = stored(stack, symbol, "1day")
    assert watermark(stack, symbol, "1day") == ny(DAY)

    forget(stack, symbol)
    ingest(symbol, "1day", start)
    one_run = stored(stack, symbol, "1day")
    forget(stack, symbol)

    assert (one_run["quality_flags"] == 0).all() and len(one_run) == 5
    assert forming["volume"].iloc[-1] < one_run["volume"].iloc[-1]  # the partial bar was replaced
    pd.testing.assert_frame_equal(two_runs, one_run)


def test_a_pin_after_the_markets_last_day_is_refused(stack: Settings) -> None:
    response = httpx.post(f"{stack.sandbox.base_url}/_sandbox/clock", json={"now": "2999-01-01T10:00"})
    assert response.status_code == 400 and "2999-01-01T10:00" in response.json()["error"]
