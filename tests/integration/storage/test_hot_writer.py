"""The hot writer against the real TimescaleDB: idempotency, exact updates, atomicity."""

from __future__ import annotations

import threading
import time

import pandas as pd
import psycopg
import pytest

from core.errors import StorageError
from db.connect import database_connection
from storage.hot import BARS_INTRADAY, upsert_bars, upsert_frame, write_bars
from storage.watermarks import read_watermarks
from tests.support.storage import bars


def stored(conn: psycopg.Connection, symbol: str) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT timeframe, ts, open, high, low, close, volume, vwap, trade_count, source, ingested_at "
        "FROM market.bars WHERE symbol = %s ORDER BY timeframe, ts",
        (symbol,),
    ).fetchall()
    columns = [
        "timeframe",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "trade_count",
        "source",
        "ingested_at",
    ]
    return pd.DataFrame(rows, columns=columns)


@pytest.mark.parametrize("method", ["auto", "merge"])
def test_insert_then_rerun_changes_nothing(conn, symbols, method):
    symbol = symbols()
    frame = bars(symbol, n=30)
    first = upsert_frame(conn, frame, BARS_INTRADAY, method=method)
    before = stored(conn, symbol)
    again = upsert_frame(conn, frame, BARS_INTRADAY, method=method)
    assert (first.inserted, first.updated, first.unchanged) == (30, 0, 0)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 30)
    pd.testing.assert_frame_equal(stored(conn, symbol), before)  # ingested_at did not move either


def test_stored_values_equal_the_frame(conn, symbols):
    symbol = symbols()
    frame = bars(symbol, n=3)
    frame.loc[1, "vwap"] = float("nan")
    frame.loc[2, "trade_count"] = pd.NA
    upsert_bars(conn, frame)
    back = stored(conn, symbol)
    assert back["close"].tolist() == [100.0, 101.0, 102.0]
    assert back["volume"].tolist() == [1000, 2000, 3000]
    assert back["vwap"].isna().tolist() == [False, True, False]
    assert back["trade_count"].isna().tolist() == [False, False, True]
    assert list(back["ts"].map(pd.Timestamp)) == list(frame["ts"])


def test_a_changed_value_updates_exactly_that_row(conn, symbols):
    symbol = symbols()
    frame = bars(symbol, n=10)
    upsert_bars(conn, frame)
    before = stored(conn, symbol)
    corrected = frame.copy()
    corrected.loc[4, "close"] = 555.5
    result = upsert_bars(conn, corrected)
    after = stored(conn, symbol)
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 9)
    assert after.loc[4, "close"] == 555.5
    assert after.loc[4, "ingested_at"] > before.loc[4, "ingested_at"]
    unchanged = after.drop(index=4)
    pd.testing.assert_frame_equal(unchanged, before.drop(index=4))


def test_an_overlapping_batch_inserts_the_new_rows_and_keeps_the_old(conn, symbols):
    symbol = symbols()
    upsert_bars(conn, bars(symbol, n=10))
    result = upsert_bars(conn, bars(symbol, n=15))  # the first 10 identical, 5 new
    assert (result.inserted, result.updated, result.unchanged) == (5, 0, 10)
    assert len(stored(conn, symbol)) == 15


def test_duplicate_keys_in_one_batch_collapse_to_the_last(conn, symbols):
    symbol = symbols()
    batch = pd.concat([bars(symbol, n=5, close=10.0), bars(symbol, n=2, close=70.0)], ignore_index=True)
    result = upsert_bars(conn, batch)
    assert (result.inserted, result.duplicates) == (5, 2)
    assert stored(conn, symbol)["close"].tolist() == [70.0, 71.0, 12.0, 13.0, 14.0]


def test_mixed_timeframes_land_in_their_hypertables(conn, symbols):
    symbol = symbols()
    batch = pd.concat([bars(symbol, n=2), bars(symbol, n=3, timeframe="1day", start="2024-03-04 05:00")])
    result = upsert_bars(conn, batch)
    counts = dict(
        conn.execute(
            "SELECT 'intraday', count(*) FROM market.bars_intraday WHERE symbol = %(s)s "
            "UNION ALL SELECT 'daily', count(*) FROM market.bars_daily WHERE symbol = %(s)s",
            {"s": symbol},
        ).fetchall()
    )
    assert result.inserted == 5
    assert counts == {"intraday": 2, "daily": 3}


def test_a_mixed_rerun_merges_both_tables_in_one_transaction(conn, symbols):
    symbol = symbols()
    batch = pd.concat([bars(symbol, n=2), bars(symbol, n=3, timeframe="1day", start="2024-03-04 05:00")])
    upsert_bars(conn, batch)
    changed = batch.copy()
    changed.iloc[4, changed.columns.get_loc("close")] = 9.0  # the last daily bar
    result = upsert_bars(conn, changed)  # two staging merges, one after the other, in one transaction
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 4)


def test_a_failing_batch_leaves_nothing_behind(conn, symbols):
    symbol = symbols()
    good = bars(symbol, n=5, timeframe="1day", start="2024-03-04 05:00")
    bad = bars(symbol, n=5, start="2024-03-04 14:30")
    bad.loc[3, "open"] = float("nan")  # NULL in a NOT NULL column: the intraday part fails after COPY
    with pytest.raises(StorageError, match="rolled back"):
        upsert_bars(conn, pd.concat([good, bad], ignore_index=True))
    assert stored(conn, symbol).empty  # the daily part, already merged, was rolled back too


def test_a_failing_rerun_keeps_the_committed_rows_as_they_were(conn, symbols):
    symbol = symbols()
    upsert_bars(conn, bars(symbol, n=5))
    before = stored(conn, symbol)
    bad = bars(symbol, n=5, close=1.0)
    bad.loc[4, "high"] = float("nan")
    with pytest.raises(StorageError):
        upsert_bars(conn, bad)
    pd.testing.assert_frame_equal(stored(conn, symbol), before)


def test_write_bars_commits_bars_and_watermarks_together(conn, symbols):
    symbol = symbols()
    frame = bars(symbol, n=7, source="polygon")
    write_bars(conn, frame)
    marks = read_watermarks(conn, symbols=[symbol])
    assert list(marks) == [("polygon", "bars", symbol, "1min")]
    assert pd.Timestamp(marks["polygon", "bars", symbol, "1min"].high_water_ts) == frame["ts"].max()


def test_watermark_is_never_ahead_when_the_transaction_fails_after_copy(conn, symbols):
    symbol = symbols()
    write_bars(conn, bars(symbol, n=3, source="polygon"))
    later = bars(symbol, n=3, source="polygon", start="2024-03-05 14:30")
    with pytest.raises(RuntimeError, match="crash"), conn.transaction():
        write_bars(conn, later)  # COPY and merge done, watermark advanced, then the process fails
        raise RuntimeError("crash before commit")
    mark = read_watermarks(conn, symbols=[symbol])["polygon", "bars", symbol, "1min"]
    newest = conn.execute("SELECT max(ts) FROM market.bars_intraday WHERE symbol = %s", (symbol,)).fetchone()[0]
    assert mark.high_water_ts == newest == pd.Timestamp("2024-03-04 14:32", tz="UTC")


def test_a_watermark_the_database_refuses_rolls_the_bars_back(conn, symbols):
    symbol = symbols()
    with pytest.raises(StorageError, match="watermark"):
        write_bars(conn, bars(symbol, n=3, source=""))  # bars accept source '', ops.watermarks does not
    assert stored(conn, symbol).empty
    assert read_watermarks(conn, symbols=[symbol]) == {}


def test_a_concurrent_writer_of_the_same_keys_is_merged_not_duplicated(stack, conn, symbols):
    symbol = symbols()
    frame = bars(symbol, n=20)
    result: list = []
    with database_connection(stack) as other, database_connection(stack, autocommit=True) as observer:
        other.execute("SELECT 1")  # opens a transaction: the upsert below runs in a savepoint of it
        upsert_bars(other, frame.iloc[5:8])  # not committed yet: invisible to the overlap check
        writer = threading.Thread(target=lambda: result.append(upsert_bars(conn, frame)))
        writer.start()
        _wait_until_blocked(observer, conn.info.backend_pid)  # the direct COPY waits on the other's keys
        other.commit()
        writer.join(timeout=60)
    assert (result[0].inserted, result[0].unchanged) == (17, 3)  # COPY failed, the merge path took over
    assert len(stored(conn, symbol)) == 20


def _wait_until_blocked(observer: psycopg.Connection, pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = observer.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for a lock")
