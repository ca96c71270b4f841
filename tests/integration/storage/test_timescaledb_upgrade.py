"""A state dir created on the Apache build (TimescaleDB 2.19.3) is updated in place to the full
edition by `marketpipe up`: every row and every scanner result the same before and after, then the
full edition's routines apply and compressing every chunk changes no answer either."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import psycopg
import pytest

from core.settings import Settings
from db.connect import database_connection
from db.migrate import FULL_EDITION, migrate, running_edition
from stack.scratch import create_database, drop_database
from storage.hot import upsert_bars
from storage.scanners import (
    latest_bars,
    new_highs_lows,
    opening_gaps,
    rsi_extremes,
    run_scan,
    top_movers,
    volume_spikes,
)
from tests.support.cli import run_cli
from tests.support.scanners import (
    MINUTES_PER_DAY,
    STALE_MINUTES,
    daily_bars,
    feature_rows,
    intraday_bars,
    unique_symbols,
    write_features,
)

PREVIOUS = "2.19.3"  # Debian's Apache build, installed beside the full edition by scripts/install-system.sh
TABLES = {
    "market.bars_intraday": "symbol, timeframe, ts",
    "market.bars_daily": "symbol, timeframe, ts",
    "market.latest_bars": "timeframe, symbol",
    "features.bar_features": "symbol, timeframe, ts, feature_set",
}
SCANS = {
    "latest 1min": latest_bars("1min"),
    "latest 1day": latest_bars("1day"),
    "movers 15 min": top_movers(minutes=15, limit=1000),
    "movers 5 sessions": top_movers(sessions=5, limit=1000),
    "volume spikes": volume_spikes(lookback=20, min_z=2.0, limit=1000),
    "gaps": opening_gaps(min_pct=0.5, limit=1000),
    "highs/lows": new_highs_lows(days=20),
    "rsi": rsi_extremes(above=60, below=40),
}


def snapshot(conn: psycopg.Connection) -> dict[str, pd.DataFrame]:
    """Every row of the tables and every scanner's answer, in a stable order."""
    out: dict[str, pd.DataFrame] = {}
    for table, order in TABLES.items():
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {table} ORDER BY {order}")
            out[table] = pd.DataFrame.from_records(cur.fetchall(), columns=[d.name for d in cur.description or []])
    for name, query in SCANS.items():
        frame = run_scan(conn, query)
        out[name] = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
    return out


def assert_same(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> None:
    assert before.keys() == after.keys()
    for name in before:
        pd.testing.assert_frame_equal(after[name], before[name], check_exact=True, obj=name)


def extension_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
def old_database(stack: Settings):
    name = f"upgrade_{uuid.uuid4().hex[:8]}"
    try:
        create_database(stack, name, timescaledb_version=PREVIOUS)
    except psycopg.Error as exc:
        pytest.fail(f"TimescaleDB {PREVIOUS} is not installed beside the full edition ({exc}); run `make install`")
    yield name
    drop_database(stack, name)


def test_a_populated_apache_database_is_updated_in_place_and_every_row_and_scan_is_unchanged(
    stack: Settings, old_database: str
) -> None:
    rng = np.random.default_rng(13)
    symbols = unique_symbols(6)
    daily = daily_bars(symbols, rng)
    with database_connection(stack, dbname=old_database, autocommit=True) as conn:
        assert extension_version(conn) == PREVIOUS
        assert running_edition(conn) == "apache"
        applied = migrate(conn)
        assert "60_columnstore.sql" in [r.filename for r in applied.skipped]  # pending until the full edition
        upsert_bars(conn, intraday_bars(symbols, rng))
        upsert_bars(conn, daily)
        write_features(conn, feature_rows(daily, rng))
        before = snapshot(conn)
    assert (
        len(before["market.bars_intraday"]) == 6 * 2 * MINUTES_PER_DAY - STALE_MINUTES
        and len(before["movers 15 min"]) == 6
    )

    up = run_cli("up")

    assert up.returncode == 0, up.stderr[-3000:]
    installed = f"{old_database}: {PREVIOUS} -> "
    assert installed in up.stdout
    with database_connection(stack, dbname=old_database, autocommit=True) as conn:
        assert extension_version(conn) != PREVIOUS
        assert running_edition(conn) == FULL_EDITION
        assert_same(before, snapshot(conn))

        applied = migrate(conn)  # the full edition's routines now apply
        assert "60_columnstore.sql" in [r.filename for r in applied.routines] and not applied.skipped
        compressed = conn.execute(
            "SELECT count(compress_chunk(c)) FROM (SELECT show_chunks(h) AS c FROM unnest(%s::regclass[]) h) s",
            (["market.bars_intraday_store", "market.bars_daily_store", "features.bar_features"],),
        ).fetchone()
        assert compressed is not None and compressed[0] >= 3
        assert_same(before, snapshot(conn))
