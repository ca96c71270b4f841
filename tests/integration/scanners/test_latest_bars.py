"""market.latest_bars follows every write path of the hot store (statement triggers)."""

from __future__ import annotations

import pandas as pd
import pytest

from core.model import BARS, frame
from storage.hot import BARS_INTRADAY, upsert_bars, upsert_frame


def bars(symbol: str, start: str, closes: list[float], timeframe: str = "1min") -> pd.DataFrame:
    step = "1D" if timeframe == "1day" else "1min"
    ts = pd.date_range(start, periods=len(closes), freq=step, tz="UTC")
    return frame(
        BARS,
        {
            "symbol": symbol,
            "ts": ts,
            "timeframe": timeframe,
            "open": closes,
            "high": [c + 1 for c in closes],
            "low": [c - 1 for c in closes],
            "close": closes,
            "volume": [100] * len(closes),
            "vwap": closes,
            "trade_count": [1] * len(closes),
            "source": "test",
        },
        what="test bars",
    )


def latest(conn, symbols: list[str]) -> dict[tuple[str, str], tuple[pd.Timestamp, float]]:
    rows = conn.execute(
        "SELECT symbol, timeframe, ts, close FROM market.latest_bars WHERE symbol = ANY(%s)", (symbols,)
    ).fetchall()
    return {(s, tf): (pd.Timestamp(ts).tz_convert("UTC"), close) for s, tf, ts, close in rows}


def test_new_bars_through_the_direct_copy_path_set_the_latest_bar(conn, fresh_symbols: list[str]) -> None:
    a, b, _ = fresh_symbols
    batch = pd.concat([bars(a, "2025-03-03 14:30", [10, 11, 12]), bars(b, "2025-03-03 14:30", [20, 21])])

    upsert_frame(conn, batch, BARS_INTRADAY)  # fresh range: binary COPY straight into the hypertable

    assert latest(conn, [a, b]) == {
        (a, "1min"): (pd.Timestamp("2025-03-03 14:32", tz="UTC"), 12.0),
        (b, "1min"): (pd.Timestamp("2025-03-03 14:31", tz="UTC"), 21.0),
    }


def test_later_bars_move_it_and_earlier_ones_do_not(conn, fresh_symbols: list[str]) -> None:
    a = fresh_symbols[0]
    upsert_bars(conn, bars(a, "2025-03-03 14:30", [10, 11]))

    upsert_bars(conn, bars(a, "2025-03-04 14:30", [30]))
    upsert_bars(conn, bars(a, "2025-03-02 14:30", [5]))  # older, arrives late

    assert latest(conn, [a]) == {(a, "1min"): (pd.Timestamp("2025-03-04 14:30", tz="UTC"), 30.0)}


def test_a_corrected_latest_bar_is_rewritten_and_a_corrected_older_bar_is_not(conn, fresh_symbols: list[str]) -> None:
    a = fresh_symbols[0]
    upsert_bars(conn, bars(a, "2025-03-03 14:30", [10, 11, 12]))

    upsert_bars(conn, bars(a, "2025-03-03 14:32", [99]))  # same key: the merge path's UPDATE
    after_latest = latest(conn, [a])
    upsert_bars(conn, bars(a, "2025-03-03 14:30", [55]))  # an older bar corrected
    after_older = latest(conn, [a])

    assert after_latest == {(a, "1min"): (pd.Timestamp("2025-03-03 14:32", tz="UTC"), 99.0)}
    assert after_older == after_latest


def test_daily_and_intraday_series_are_kept_apart(conn, fresh_symbols: list[str]) -> None:
    a = fresh_symbols[0]

    upsert_bars(conn, pd.concat([bars(a, "2025-03-03 14:30", [10, 11]), bars(a, "2025-03-03 05:00", [7, 8], "1day")]))

    assert latest(conn, [a]) == {
        (a, "1min"): (pd.Timestamp("2025-03-03 14:31", tz="UTC"), 11.0),
        (a, "1day"): (pd.Timestamp("2025-03-04 05:00", tz="UTC"), 8.0),
    }


def test_deleting_the_latest_bar_falls_back_to_the_previous_one(conn, fresh_symbols: list[str]) -> None:
    a, b, _ = fresh_symbols
    upsert_bars(conn, pd.concat([bars(a, "2025-03-03 14:30", [10, 11, 12]), bars(b, "2025-03-03 14:30", [20])]))

    conn.execute("DELETE FROM market.bars_intraday WHERE symbol = %s AND ts >= '2025-03-03 14:32+00'", (a,))
    conn.execute("DELETE FROM market.bars_intraday WHERE symbol = %s", (b,))

    assert latest(conn, [a, b]) == {(a, "1min"): (pd.Timestamp("2025-03-03 14:31", tz="UTC"), 11.0)}


def test_a_rolled_back_write_leaves_no_latest_bar(conn, fresh_symbols: list[str]) -> None:
    a = fresh_symbols[0]

    with pytest.raises(RuntimeError), conn.transaction():
        upsert_bars(conn, bars(a, "2025-03-03 14:30", [10]))
        raise RuntimeError("the caller fails after writing")

    assert latest(conn, [a]) == {}


def test_refresh_rebuilds_what_drop_chunks_would_leave_stale(conn, fresh_symbols: list[str]) -> None:
    a = fresh_symbols[0]
    upsert_bars(conn, bars(a, "2025-03-03 14:30", [10, 11]))
    conn.execute("DELETE FROM market.latest_bars WHERE symbol = %s", (a,))  # as if a trigger had not fired

    series = conn.execute("SELECT market.refresh_latest_bars()").fetchone()[0]

    assert series >= 1
    assert latest(conn, [a]) == {(a, "1min"): (pd.Timestamp("2025-03-03 14:31", tz="UTC"), 11.0)}


def test_an_open_backfill_of_older_bars_does_not_block_live_writes(stack, conn, fresh_symbols: list[str]) -> None:
    from db.connect import database_connection

    a = fresh_symbols[0]
    upsert_bars(conn, bars(a, "2025-03-03 14:30", [10, 11]))
    with database_connection(stack) as backfill:  # a transaction left open after writing old bars
        backfill.execute("SELECT 1")  # opens the transaction: the writer's block becomes a savepoint in it
        upsert_bars(backfill, bars(a, "2025-02-03 14:30", [1, 2, 3]))
        assert backfill.info.transaction_status.name == "INTRANS"

        conn.execute("SET lock_timeout = '5s'")  # bounded: a lock wait fails the test instead of hanging it
        upsert_bars(conn, bars(a, "2025-03-03 14:32", [12]))
        backfill.commit()

    assert latest(conn, [a]) == {(a, "1min"): (pd.Timestamp("2025-03-03 14:32", tz="UTC"), 12.0)}
