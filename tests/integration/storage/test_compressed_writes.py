"""The hot writer on warm (natively compressed) chunks: a correction or a late backfill into a
compressed range upserts exactly like into an uncompressed one, and recompressing changes nothing.

Each test writes into a day no other test uses and compresses only that day's chunk."""

from __future__ import annotations

import pandas as pd
import psycopg

from core.model import TRADES, frame
from db.migrate import FULL_EDITION, running_edition
from storage.hot import upsert_bars
from storage.tiering import ensure_native_compression
from storage.trades import upsert_trades
from tests.support.storage import bars


def compress_day(conn: psycopg.Connection, table: str, day: str) -> list[str]:
    """Compress ``table``'s chunks holding ``day`` (UTC); returns their names."""
    schema, name = table.split(".")
    rows = conn.execute(
        "SELECT compress_chunk(format('%%I.%%I', chunk_schema, chunk_name)::regclass, if_not_compressed => true)::text"
        " FROM timescaledb_information.chunks WHERE hypertable_schema = %s AND hypertable_name = %s"
        " AND range_start < %s::timestamptz + interval '1 day' AND range_end > %s::timestamptz",
        (schema, name, day, day),
    ).fetchall()
    return [r[0] for r in rows]


def compressed(conn: psycopg.Connection, chunk: str) -> bool:
    schema, name = chunk.split(".")
    row = conn.execute(
        "SELECT is_compressed FROM timescaledb_information.chunks WHERE chunk_schema = %s AND chunk_name = %s",
        (schema, name),
    ).fetchone()
    assert row is not None, chunk
    return bool(row[0])


def stored(conn: psycopg.Connection, symbol: str, table: str = "market.bars_intraday") -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT ts, open, high, low, close, volume, vwap, trade_count, source FROM {table}"
            " WHERE symbol = %s ORDER BY ts",
            (symbol,),
        )
        return pd.DataFrame.from_records(cur.fetchall(), columns=[d.name for d in cur.description or []])


def latest(conn: psycopg.Connection, symbol: str, timeframe: str = "1min") -> tuple:
    row = conn.execute(
        "SELECT ts, close FROM market.latest_bars WHERE symbol = %s AND timeframe = %s", (symbol, timeframe)
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_the_database_runs_the_full_edition_with_compression_policies(stack, conn) -> None:
    assert running_edition(conn) == FULL_EDITION
    decision = ensure_native_compression(conn, stack)  # `marketpipe up` set them: nothing to change
    assert decision.apply and decision.policies_set == ()
    policies = conn.execute(
        "SELECT hypertable_schema || '.' || hypertable_name, config->>'compress_after'"
        " FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' ORDER BY 1"
    ).fetchall()
    after = f"{stack.storage.data_lake.compression_after_days} days"
    assert policies == [
        ("features.bar_feature_values", after),
        ("features.bar_features", after),
        ("market.bars_daily_store", after),
        ("market.bars_intraday_store", after),
        ("market.option_quotes", after),
        ("market.quotes", after),
        ("market.trades", after),
        ("news.item_symbol_versions", after),
        ("news.item_symbols", after),
        ("news.item_versions", after),
        ("news.items", after),
    ]


def test_a_correction_and_a_late_backfill_into_a_compressed_day_upsert_like_anywhere(conn, symbols) -> None:
    symbol, neighbour = symbols(), symbols()
    day = "2004-03-04"
    upsert_bars(
        conn, pd.concat([bars(symbol, n=60, start=f"{day} 14:30"), bars(neighbour, n=30, start=f"{day} 14:30")])
    )
    chunks = compress_day(conn, "market.bars_intraday_store", day)
    assert chunks and all(compressed(conn, c) for c in chunks)
    neighbour_before = stored(conn, neighbour)

    # the vendor corrects one minute and delivers 10 minutes it had missed, after the old ones
    revised = bars(symbol, n=70, start=f"{day} 14:30")
    revised.loc[4, "close"] = 555.5
    result = upsert_bars(conn, revised)

    assert (result.inserted, result.updated, result.unchanged) == (10, 1, 59)
    after = stored(conn, symbol)
    assert len(after) == 70 and after.loc[4, "close"] == 555.5
    assert after["close"].drop(index=4).tolist() == revised["close"].drop(index=4).tolist()
    assert latest(conn, symbol) == (pd.Timestamp(f"{day} 15:39", tz="UTC"), revised["close"].iloc[-1])
    pd.testing.assert_frame_equal(stored(conn, neighbour), neighbour_before)

    again = upsert_bars(conn, revised)  # a rerun finds every row, compressed or not, unchanged
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 70)

    compress_day(conn, "market.bars_intraday_store", day)  # recompress what the writes decompressed
    pd.testing.assert_frame_equal(stored(conn, symbol), after)
    assert all(compressed(conn, c) for c in chunks)


def test_a_new_series_copied_into_a_compressed_day_and_a_delete_from_it(conn, symbols) -> None:
    first, second = symbols(), symbols()
    day = "2004-03-05"
    upsert_bars(conn, bars(first, n=20, start=f"{day} 14:30"))
    chunks = compress_day(conn, "market.bars_intraday_store", day)
    assert chunks

    result = upsert_bars(conn, bars(second, n=20, start=f"{day} 14:30"))  # no overlap: the COPY path
    assert (result.inserted, result.updated, result.unchanged) == (20, 0, 0)
    assert len(stored(conn, second)) == 20

    # deleting the latest minutes of a compressed series moves its latest bar back (row trigger)
    deleted = conn.execute(
        "DELETE FROM market.bars_intraday WHERE symbol = %s AND ts >= %s", (first, f"{day} 14:45")
    ).rowcount
    assert deleted == 5
    assert latest(conn, first)[0] == pd.Timestamp(f"{day} 14:44", tz="UTC")


def test_daily_bars_and_trades_upsert_into_compressed_chunks(conn, symbols) -> None:
    symbol = symbols()
    daily = bars(symbol, n=10, timeframe="1day", start="2004-06-01")
    upsert_bars(conn, daily)
    assert compress_day(conn, "market.bars_daily_store", "2004-06-01")
    daily.loc[9, "close"] = 77.0
    result = upsert_bars(conn, daily)
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 9)
    assert stored(conn, symbol, "market.bars_daily")["close"].iloc[-1] == 77.0

    trades = frame(
        TRADES,
        {
            "symbol": symbol,
            "ts": pd.date_range("2004-06-01 14:30", periods=5, freq="1s", tz="UTC"),
            "exchange": "N",
            "trade_id": [str(i) for i in range(5)],
            "price": [10.0, 10.1, 10.2, 10.3, 10.4],
            "size": [100, 200, 300, 400, 500],
            "conditions": None,
            "tape": "A",
            "source": "test",
        },
        what="test trades",
    )
    upsert_trades(conn, trades)
    assert compress_day(conn, "market.trades", "2004-06-01")
    trades.loc[2, "price"] = 99.0
    upsert_trades(conn, trades)
    prices = conn.execute("SELECT price FROM market.trades WHERE symbol = %s ORDER BY ts", (symbol,)).fetchall()
    assert [p[0] for p in prices] == [10.0, 10.1, 99.0, 10.3, 10.4]


def test_the_compression_policy_compresses_what_is_older_than_its_age_and_leaves_recent_chunks_hot(
    stack, conn, symbols
) -> None:
    symbol = symbols()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    after = stack.storage.data_lake.compression_after_days
    old_day, recent_day = now - pd.Timedelta(days=after + 3), now - pd.Timedelta(hours=1)
    rows = {
        "symbol": symbol,
        "ts": [old_day, recent_day],
        "exchange": "N",
        "trade_id": ["1", "2"],
        "price": [10.0, 11.0],
        "size": [100, 200],
        "conditions": None,
        "tape": "A",
        "source": "test",
    }
    upsert_trades(conn, frame(TRADES, rows, what="test trades"))
    row = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_compression' AND hypertable_name = 'trades'"
    ).fetchone()
    assert row is not None

    # What the scheduler runs on its schedule, run now. Sent without parameters (the simple query
    # protocol), as psql sends it: a CALL of a committing procedure through the extended protocol
    # fails in PostgreSQL 15.20 ("cannot drop portal ... being set up").
    conn.execute(f"CALL run_job({int(row[0])})")

    states = (
        conn.execute(
            "SELECT c.is_compressed FROM timescaledb_information.chunks c"
            " WHERE c.hypertable_name = 'trades' AND c.range_start <= %s AND c.range_end > %s",
            (old_day, old_day),
        ).fetchall()
        + conn.execute(
            "SELECT c.is_compressed FROM timescaledb_information.chunks c"
            " WHERE c.hypertable_name = 'trades' AND c.range_start <= %s AND c.range_end > %s",
            (recent_day, recent_day),
        ).fetchall()
    )
    assert [s[0] for s in states] == [True, False]
    stats = conn.execute(
        "SELECT last_run_status, total_failures FROM timescaledb_information.job_stats WHERE job_id = %s", (row[0],)
    ).fetchone()
    assert stats is not None and stats[1] == 0
    prices = conn.execute("SELECT price FROM market.trades WHERE symbol = %s ORDER BY ts", (symbol,)).fetchall()
    assert [p[0] for p in prices] == [10.0, 11.0]


def test_writing_new_minutes_decompresses_nothing_when_older_chunks_are_compressed(conn, symbols) -> None:
    symbol = symbols()
    upsert_bars(conn, bars(symbol, n=30, start="2004-07-01 14:30"))
    assert compress_day(conn, "market.bars_intraday_store", "2004-07-01")
    # TimescaleDB counts the tuples a transaction's DML decompresses; allow none for this session
    conn.execute("SET timescaledb.max_tuples_decompressed_per_dml_transaction = 1")
    try:
        result = upsert_bars(conn, bars(symbol, n=30, start="2004-07-02 14:30"))  # a new, uncompressed day
        again = upsert_bars(conn, bars(symbol, n=30, start="2004-07-02 14:30"))
    finally:
        conn.execute("RESET timescaledb.max_tuples_decompressed_per_dml_transaction")
    assert (result.inserted, again.unchanged) == (30, 30)
    assert len(stored(conn, symbol)) == 60
