"""Option chain snapshots tier to cold/option_quotes/date=... like the other hypertables: whole
chunks, verified, manifest rows ranged by underlying, gone from the hot store."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq

from features.option_chains import price_chain
from storage.options import write_option_chain
from storage.tiering import manifest_files, table_checksum, tier_chunks
from tests.support.option_snapshots import snapshot_frame, snapshot_row

UNDERLYINGS = ("OTIERA", "OTIERB")


def old_chain(underlying: str, day: str) -> pd.DataFrame:
    ts = pd.Timestamp(f"{day}T20:00:00Z")
    rows = [
        snapshot_row(
            underlying=underlying,
            contract=f"O:{underlying}840720{right[0].upper()}{strike * 1000:08d}",
            contract_type=right,
            expiration=pd.Timestamp("1984-07-20", tz="UTC"),
            strike=float(strike),
            ts=ts,
            quote_ts=ts,
        )
        for strike in (95, 100, 105)
        for right in ("call", "put")
    ]
    curve = pd.DataFrame({"tenor_days": [0], "rate": [0.09]})
    return price_chain(snapshot_frame(*rows), curve=curve, dividend_yields={}, stale_after=pd.Timedelta(minutes=30))


def hot_rows(conn, day: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM market.option_quotes WHERE underlying = ANY(%s) AND ts::date = %s",
        (list(UNDERLYINGS), day),
    ).fetchone()[0]


def test_option_snapshots_move_to_the_lake_verified(conn, lake, stack):
    for day in ("1984-06-04", "1984-06-05"):
        for underlying in UNDERLYINGS:
            with conn.transaction():
                write_option_chain(conn, old_chain(underlying, day))
    try:
        report = tier_chunks(
            conn,
            lake,
            stack,
            dataset="option_quotes",
            older_than=datetime(1984, 6, 5, tzinfo=UTC),
            newer_than=datetime(1984, 6, 1, tzinfo=UTC),
        )
        assert report.rows == 2 * 6 and hot_rows(conn, "1984-06-04") == 0 and hot_rows(conn, "1984-06-05") == 12
        files = manifest_files(
            conn,
            dataset="option_quotes",
            symbols=list(UNDERLYINGS),
            start=datetime(1984, 6, 1, tzinfo=UTC),
            end=datetime(1984, 6, 30, tzinfo=UTC),
        )
        assert [f.key.split("/")[:3] for f in files] == [["cold", "option_quotes", "date=1984-06-04"]]
        (file,) = files
        assert (file.min_symbol, file.max_symbol) == UNDERLYINGS
        stored = pq.read_table(f"{lake.bucket}/{file.key}", filesystem=lake.filesystem())
        assert stored.num_rows == file.row_count == 12 and table_checksum(stored) == file.checksum
        assert stored["underlying"].to_pylist() == sorted(stored["underlying"].to_pylist())
        assert set(stored.column_names) >= {"contract", "iv", "iv_reason", "quote_flags", "vendor_iv"}
    finally:
        conn.execute("DELETE FROM market.option_quotes WHERE underlying = ANY(%s)", (list(UNDERLYINGS),))
        conn.execute("DELETE FROM market.option_contracts WHERE underlying = ANY(%s)", (list(UNDERLYINGS),))
        conn.execute("DELETE FROM ops.watermarks WHERE symbol = ANY(%s)", (list(UNDERLYINGS),))
