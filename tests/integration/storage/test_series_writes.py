"""Several series' bars written in one transaction (``write_series_bars``, what a processing batch
does) store and count exactly what writing each alone does, against the real TimescaleDB."""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest

from core.errors import StorageError
from storage.hot import UpsertResult, write_bars, write_series_bars
from storage.watermarks import read_watermarks
from tests.support.storage import bars


def stored(conn: psycopg.Connection, names: list[str]) -> list[tuple]:
    return conn.execute(
        "SELECT symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source "
        "FROM market.bars WHERE symbol = ANY(%s) ORDER BY symbol, timeframe, ts",
        (names,),
    ).fetchall()


def marks(conn: psycopg.Connection, names: list[str]) -> dict[str, pd.Timestamp]:
    found = read_watermarks(conn, source="test", dataset="bars", symbols=names, timeframe="1min")
    return {symbol: pd.Timestamp(mark.high_water_ts) for (_, _, symbol, _), mark in found.items()}


def test_new_series_are_written_together_and_counted_apart(conn, symbols) -> None:
    names = [symbols() for _ in range(3)]
    frames = [bars(names[0], n=30), bars(names[1], n=5, close=20.0), bars(names[2], n=12, start="2024-03-05 14:30")]
    frames[1] = pd.concat([frames[1], frames[1].iloc[[4]].assign(close=30.0)], ignore_index=True)  # a key twice
    with conn.transaction():
        results = write_series_bars(conn, frames)
    assert results == [UpsertResult(30), UpsertResult(5, duplicates=1), UpsertResult(12)]
    rows = stored(conn, names)
    assert len(rows) == 47 and [r[6] for r in rows if r[0] == names[1]][-1] == 30.0  # the later row won
    assert marks(conn, names) == {
        names[0]: pd.Timestamp("2024-03-04 14:59", tz="UTC"),
        names[1]: pd.Timestamp("2024-03-04 14:34", tz="UTC"),
        names[2]: pd.Timestamp("2024-03-05 14:41", tz="UTC"),
    }
    again = write_series_bars(conn, frames)  # a rerun: every series meets its stored rows and merges
    assert again == [UpsertResult(0, 0, 30), UpsertResult(0, 0, 5, 1), UpsertResult(0, 0, 12)]
    assert stored(conn, names) == rows


def test_a_series_with_stored_rows_makes_each_series_be_written_alone(conn, symbols) -> None:
    names = [symbols() for _ in range(2)]
    write_bars(conn, bars(names[0], n=10))
    corrected = bars(names[0], n=20, close=100.5)  # 10 stored rows change, 10 are new
    results = write_series_bars(conn, [corrected, bars(names[1], n=7)])
    assert results == [UpsertResult(10, 10, 0), UpsertResult(7)]
    alone = [symbols() for _ in range(2)]
    write_bars(conn, bars(alone[0], n=10))
    assert [write_bars(conn, bars(alone[0], n=20, close=100.5)), write_bars(conn, bars(alone[1], n=7))] == results
    for batched, single in zip(names, alone, strict=True):
        assert [r[1:] for r in stored(conn, [batched])] == [r[1:] for r in stored(conn, [single])]


def test_a_bad_series_leaves_the_whole_batch_unwritten(conn, symbols) -> None:
    names = [symbols() for _ in range(2)]
    bad = bars(names[1], n=3).assign(timeframe="7sec")
    with pytest.raises(StorageError, match="7sec"):
        write_series_bars(conn, [bars(names[0], n=5), bad])
    assert stored(conn, names) == [] and marks(conn, names) == {}
