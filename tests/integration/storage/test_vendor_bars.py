"""Several vendors' bars of the same keys (issue 18): every vendor's rows are kept, the
consolidated bars follow storage.source_precedence, and disagreements are reported."""

from __future__ import annotations

import pandas as pd
import psycopg

from storage.hot import upsert_bars, write_bars
from storage.streams import PROVISIONAL, commit_stream_batch
from storage.vendors import read_vendor_disagreements
from storage.watermarks import read_watermarks
from tests.support.storage import bars

PRECEDENCE = ("polygon", "alpaca", "yahoo")


def consolidated(conn: psycopg.Connection, symbol: str) -> pd.DataFrame:
    rows = conn.execute("SELECT ts, close, source FROM market.bars WHERE symbol = %s ORDER BY ts", (symbol,))
    return pd.DataFrame(rows.fetchall(), columns=["ts", "close", "source"])


def per_vendor(conn: psycopg.Connection, symbol: str) -> dict[str, list[float]]:
    rows = conn.execute(
        "SELECT source, array_agg(close ORDER BY ts) FROM market.vendor_bars WHERE symbol = %s GROUP BY 1",
        (symbol,),
    ).fetchall()
    return {str(source): list(closes) for source, closes in rows}


def clean(conn: psycopg.Connection, symbol: str) -> None:
    conn.execute("DELETE FROM market.vendor_bars_intraday WHERE symbol = %s", (symbol,))
    conn.execute("DELETE FROM market.vendor_bars_daily WHERE symbol = %s", (symbol,))


def test_a_worse_vendor_never_overwrites_a_better_one(conn, symbols):
    symbol = symbols()
    try:
        write_bars(conn, bars(symbol, n=3, close=100.0, source="polygon"), precedence=PRECEDENCE)
        refused = upsert_bars(conn, bars(symbol, n=3, close=200.0, source="yahoo"), precedence=PRECEDENCE)
        assert (refused.inserted, refused.updated, refused.refused) == (0, 0, 3)
        assert consolidated(conn, symbol)["source"].tolist() == ["polygon"] * 3
        assert consolidated(conn, symbol)["close"].tolist() == [100.0, 101.0, 102.0]
        assert per_vendor(conn, symbol) == {"polygon": [100.0, 101.0, 102.0], "yahoo": [200.0, 201.0, 202.0]}
        again = upsert_bars(conn, bars(symbol, n=3, close=200.0, source="yahoo"), precedence=PRECEDENCE)
        assert (again.inserted, again.updated, again.refused) == (0, 0, 3)  # idempotent: nothing rewritten
    finally:
        clean(conn, symbol)


def test_a_better_vendor_displaces_a_worse_one_whose_rows_are_kept(conn, symbols):
    symbol = symbols()
    try:
        upsert_bars(conn, bars(symbol, n=2, close=50.0, source="yahoo"), precedence=PRECEDENCE)
        upsert_bars(conn, bars(symbol, n=3, close=60.0, source="alpaca"), precedence=PRECEDENCE)
        assert consolidated(conn, symbol)["source"].tolist() == ["alpaca"] * 3
        upsert_bars(conn, bars(symbol, n=2, close=70.0, source="polygon"), precedence=PRECEDENCE)
        assert consolidated(conn, symbol)["source"].tolist() == ["polygon", "polygon", "alpaca"]
        assert per_vendor(conn, symbol) == {
            "yahoo": [50.0, 51.0],
            "alpaca": [60.0, 61.0, 62.0],
            "polygon": [70.0, 71.0],
        }
        latest = conn.execute(
            "SELECT source, close FROM market.latest_bars WHERE symbol = %s AND timeframe = '1min'", (symbol,)
        ).fetchone()
        assert latest == ("alpaca", 62.0)
    finally:
        clean(conn, symbol)


def test_the_precedence_is_a_setting(conn, symbols):
    symbol = symbols()
    try:
        upsert_bars(conn, bars(symbol, n=2, close=10.0, source="polygon"), precedence=("yahoo", "polygon"))
        upsert_bars(conn, bars(symbol, n=2, close=20.0, source="yahoo"), precedence=("yahoo", "polygon"))
        assert consolidated(conn, symbol)["source"].tolist() == ["yahoo", "yahoo"]
        # an unlisted source (a plugin) ranks after every listed one
        upsert_bars(conn, bars(symbol, n=2, close=30.0, source="myfeed"), precedence=("yahoo", "polygon"))
        assert consolidated(conn, symbol)["source"].tolist() == ["yahoo", "yahoo"]
        assert per_vendor(conn, symbol)["myfeed"] == [30.0, 31.0]
    finally:
        clean(conn, symbol)


def test_disagreements_beyond_the_tolerance_are_reported(conn, symbols):
    symbol = symbols()
    try:
        upsert_bars(conn, bars(symbol, n=3, timeframe="1day", start="2024-03-04 05:00", source="polygon"))
        close = [100.0, 101.0, 102.0 * 1.02]  # 2 % off on the third day
        planted = bars(symbol, n=3, timeframe="1day", start="2024-03-04 05:00", source="yahoo")
        upsert_bars(conn, planted.assign(close=close))
        near = bars(symbol, n=3, timeframe="1day", start="2024-03-04 05:00", source="alpaca")
        upsert_bars(conn, near.assign(close=near["close"] * 1.001))  # within 0.5 %
        report = read_vendor_disagreements(conn, [symbol], "2024-03-01", "2024-03-10", "1day", tolerance=0.005)
        assert report[["session_date", "source_a", "source_b", "field"]].astype(str).values.tolist() == [
            ["2024-03-06", "alpaca", "yahoo", "close"],
            ["2024-03-06", "polygon", "yahoo", "close"],
        ]
        assert report["relative_difference"].between(0.018, 0.02).all()
    finally:
        clean(conn, symbol)


def test_the_stream_writer_keeps_a_worse_vendors_bar_apart_and_deletes_it_when_cancelled(conn, symbols):
    symbol = symbols()
    try:
        upsert_bars(conn, bars(symbol, n=2, close=100.0, source="polygon"), precedence=PRECEDENCE)
        stream = bars(symbol, n=2, close=100.0, source="alpaca").assign(close=[100.0, 250.0], high=[101.0, 251.0])
        commit = commit_stream_batch(conn, final_bars=stream, precedence=PRECEDENCE)
        assert commit.final_bars.refused == 2
        assert consolidated(conn, symbol)["source"].tolist() == ["polygon", "polygon"]
        assert per_vendor(conn, symbol)["alpaca"] == [100.0, 250.0]
        commit_stream_batch(conn, removed_bars=stream.iloc[1:], precedence=PRECEDENCE)  # its trades cancelled
        assert per_vendor(conn, symbol) == {"polygon": [100.0, 101.0], "alpaca": [100.0]}
    finally:
        clean(conn, symbol)


def kept_apart(conn: psycopg.Connection, symbol: str) -> list[tuple[str, pd.Timestamp]]:
    rows = conn.execute(
        "SELECT source, ts FROM market.vendor_bars_intraday WHERE symbol = %s ORDER BY source, ts", (symbol,)
    ).fetchall()
    return [(str(source), pd.Timestamp(ts)) for source, ts in rows]


def changes_since(conn: psycopg.Connection, symbol: str, seq: int) -> list[tuple[str, pd.Timestamp, bool]]:
    rows = conn.execute(
        "SELECT source, ts, removed FROM ops.bar_changes WHERE symbol = %s AND seq > %s ORDER BY seq", (symbol, seq)
    ).fetchall()
    return [(str(source), pd.Timestamp(ts), bool(removed)) for source, ts, removed in rows]


def last_change(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM ops.bar_changes").fetchone()
    assert row is not None
    return int(row[0])


def test_a_deleted_stream_bar_gives_its_key_to_the_best_vendor_row_kept_apart(conn, symbols):
    """The stream's bar was served, two other vendors' rows of its key kept apart; its trades are
    cancelled: the better of the two is served in its place (moved out of the vendor table), the
    bar is logged and announced as changed to that vendor's, not removed, and no watermark moves."""
    symbol = symbols()
    try:
        upsert_bars(conn, bars(symbol, n=2, close=50.0, source="yahoo"), precedence=PRECEDENCE)
        upsert_bars(conn, bars(symbol, n=2, close=60.0, source="alpaca"), precedence=PRECEDENCE)
        stream = bars(symbol, n=2, close=70.0, source="polygon")
        commit_stream_batch(conn, final_bars=stream, precedence=PRECEDENCE)
        assert consolidated(conn, symbol)["source"].tolist() == ["polygon", "polygon"]
        marks = read_watermarks(conn, symbols=[symbol])
        assert marks  # the stream's final bars moved its watermark: the removal must leave it
        before = last_change(conn)

        commit = commit_stream_batch(conn, removed_bars=stream.iloc[1:], precedence=PRECEDENCE)

        t0, t1 = (pd.Timestamp(ts) for ts in stream["ts"])
        assert consolidated(conn, symbol).values.tolist() == [[t0, 70.0, "polygon"], [t1, 61.0, "alpaca"]]
        assert kept_apart(conn, symbol) == [("alpaca", t0), ("yahoo", t0), ("yahoo", t1)]
        assert per_vendor(conn, symbol) == {"polygon": [70.0], "alpaca": [60.0, 61.0], "yahoo": [50.0, 51.0]}
        latest = conn.execute(
            "SELECT source, close FROM market.latest_bars WHERE symbol = %s AND timeframe = '1min'", (symbol,)
        ).fetchone()
        assert latest == ("alpaca", 61.0)
        assert changes_since(conn, symbol, before) == [("alpaca", t1, False)]
        assert [(note.source, note.start, note.symbols) for note in commit.announcements] == [("alpaca", t1, (symbol,))]
        assert read_watermarks(conn, symbols=[symbol]) == marks
    finally:
        clean(conn, symbol)


def test_a_deleted_stream_bar_whose_key_only_a_forming_bar_holds_is_announced_as_removed(conn, symbols):
    """The row kept apart is another stream's provisional (forming) bar: it is served in the deleted
    bar's place, but no closed bar is, so a listener is told the closed bar is gone."""
    symbol = symbols()
    try:
        forming = bars(symbol, n=1, close=60.0, source="alpaca")
        commit_stream_batch(conn, provisional_bars=forming, precedence=PRECEDENCE)
        stream = bars(symbol, n=1, close=70.0, source="polygon")
        commit_stream_batch(conn, final_bars=stream, precedence=PRECEDENCE)
        before = last_change(conn)

        commit_stream_batch(conn, removed_bars=stream, precedence=PRECEDENCE)

        t0 = pd.Timestamp(stream["ts"].iloc[0])
        served = conn.execute(
            "SELECT source, close, quality_flags FROM market.bars WHERE symbol = %s", (symbol,)
        ).fetchall()
        assert served == [("alpaca", 60.0, PROVISIONAL)]
        assert kept_apart(conn, symbol) == []
        assert changes_since(conn, symbol, before) == [("polygon", t0, True)]
    finally:
        clean(conn, symbol)


def test_a_deleted_stream_bar_with_no_other_vendor_leaves_its_key_empty(conn, symbols):
    symbol = symbols()
    try:
        stream = bars(symbol, n=2, close=70.0, source="polygon")
        commit_stream_batch(conn, final_bars=stream, precedence=PRECEDENCE)
        before = last_change(conn)

        commit_stream_batch(conn, removed_bars=stream.iloc[1:], precedence=PRECEDENCE)

        assert consolidated(conn, symbol)["close"].tolist() == [70.0]
        assert changes_since(conn, symbol, before) == [("polygon", pd.Timestamp(stream["ts"].iloc[1]), True)]
    finally:
        clean(conn, symbol)
