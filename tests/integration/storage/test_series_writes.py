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


def test_the_probe_for_stored_rows_looks_each_series_up_by_index_whatever_the_statistics_say(conn, symbols) -> None:
    """Sessions of 1966 only (no other test writes them). A backfill's chunks were analysed empty
    (a rerun deleted their rows, autovacuum ran): the planner then hashed a batch's series against a
    sequential scan of every chunk in its range, reading all the rows the run's earlier batches had
    stored (12% of PostgreSQL's CPU in the ingest benchmark). The probe must stay index lookups."""

    def sessions(symbol: str) -> pd.DataFrame:
        return pd.concat([bars(symbol, n=390, start=f"1966-06-{day} 14:30") for day in (7, 8, 9)], ignore_index=True)

    def scans() -> tuple[int, int]:
        row = conn.execute(
            "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0) FROM pg_stat_xact_user_tables"
            " WHERE schemaname = '_timescaledb_internal'"
        ).fetchone()
        return int(row[0]), int(row[1])

    deleted = symbols()
    write_bars(conn, sessions(deleted))
    conn.execute("DELETE FROM market.bars_intraday WHERE symbol = %s", (deleted,))
    chunks = conn.execute(
        "SELECT show_chunks('market.bars_intraday_store', newer_than => '1966-06-06'::timestamptz,"
        " older_than => '1966-06-11'::timestamptz)"
    ).fetchall()
    assert len(chunks) == 3
    for (chunk,) in chunks:
        conn.execute(f"VACUUM ANALYZE {chunk}")  # their statistics now say: empty
    earlier = [symbols() for _ in range(4)]
    with conn.transaction():
        write_series_bars(conn, [sessions(name) for name in earlier])
    later = [symbols() for _ in range(4)]
    with conn.transaction():
        before = scans()
        results = write_series_bars(conn, [sessions(name) for name in later])
        after = scans()
    assert results == [UpsertResult(1170)] * 4
    assert after[0] - before[0] == 0  # no chunk read from end to end
    assert after[1] - before[1] > 0
    assert len(stored(conn, earlier + later)) == 8 * 1170
