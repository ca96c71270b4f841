"""Migration 0023 on a populated database: bars stored as double precision (some chunks compressed,
the continuous aggregates materialized, another vendor's row kept apart) become ticks of 1/10,000
dollar, and every reader sees exactly what it saw before.

The database is first built as main was before 0023 (its migrations, and its routines as git holds
them at BEFORE), populated through that layout's own tables, then migrated by today's migrator."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.settings import Settings
from db.connect import database_connection
from db.migrate import MIGRATIONS_DIR, migrate
from stack.scratch import create_database, drop_database

BEFORE = "16cc561971dde03a957159ff747d6882bcea0ec0"  # main just before 0023_bar_price_ticks.sql
REPO = Path(__file__).resolve().parents[3]
NAME = "price_ticks_scratch"

BARS = """
INSERT INTO market.bars_intraday (symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source)
SELECT s.symbol, '1min', d.day + make_interval(mins => m),
       round(s.base + m * 0.01, 4)::float8, round(s.base + m * 0.01 + 0.05, 4)::float8,
       round(s.base + m * 0.01 - 0.03, 4)::float8, round(s.base + m * 0.01 + 0.02, 4)::float8,
       1000 + m, round(s.base + m * 0.01 + 0.011, 4)::float8, 10 + m, 'polygon'
  FROM (VALUES ('TKA', 150.23::numeric), ('TKB', 0.5123::numeric)) AS s(symbol, base)
 CROSS JOIN (VALUES (timestamptz '2025-03-03 14:30+00'), (timestamptz '2025-03-04 14:30+00')) AS d(day)
 CROSS JOIN generate_series(0, 59) AS m
"""
DAILY = """
INSERT INTO market.bars_daily (symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source)
VALUES ('TKA', '1day', '2025-03-03 05:00+00', 150.23, 151.07, 149.99, 150.85, 63000, 150.5123, 1200, 'polygon'),
       ('TKA', '1day', '2025-03-04 05:00+00', 150.85, 152.0, 150.01, 151.44, 64000, NULL, 1300, 'polygon')
"""
VENDOR = """
INSERT INTO market.vendor_bars_intraday (symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count,
                                         source)
VALUES ('TKA', '1min', '2025-03-03 14:30+00', 150.24, 150.3, 150.2, 150.26, 990, 150.2501, 9, 'alpaca')
"""
READS = {
    "bars": "SELECT * FROM market.bars WHERE symbol LIKE 'TK%' ORDER BY symbol, timeframe, ts",
    "latest": "SELECT * FROM market.latest_bars WHERE symbol LIKE 'TK%' ORDER BY symbol, timeframe",
    "vendor": "SELECT * FROM market.vendor_bars WHERE symbol LIKE 'TK%' ORDER BY symbol, timeframe, ts, source",
    # vwap to 9 decimals: a bucket's sum(vwap * volume) is summed in another order when it is computed
    # at read time instead of materialized (the migration re-creates the aggregates empty)
    **{
        timeframe: "SELECT symbol, timeframe, ts, open, high, low, close, volume, round(vwap::numeric, 9),"
        f" trade_count, source, minutes FROM market.aggregated_bars(ARRAY['TKA', 'TKB'], '2025-03-01',"
        f" '2025-03-05', '{timeframe}')"
        for timeframe in ("5min", "1day")
    },
    "movers": "SELECT * FROM scan.top_movers_minutes(15, 100) WHERE symbol LIKE 'TK%' ORDER BY symbol",
}


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def layout_before(tmp_path: Path) -> tuple[Path, Path]:
    """The migrations before 0023 and the routines as they were at BEFORE."""
    migrations, routines = tmp_path / "migrations", tmp_path / "routines"
    migrations.mkdir()
    routines.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0023":
            (migrations / path.name).write_text(path.read_text())
    for name in _git("ls-tree", "--name-only", f"{BEFORE}:db/routines").split():
        (routines / name).write_text(_git("show", f"{BEFORE}:db/routines/{name}"))
    return migrations, routines


@pytest.fixture
def scratch(stack: Settings) -> Iterator[psycopg.Connection]:
    create_database(stack, NAME)
    with database_connection(stack, dbname=NAME, autocommit=True) as conn:
        yield conn
    drop_database(stack, NAME)


def read_all(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {name: conn.execute(query).fetchall() for name, query in READS.items()}  # type: ignore[call-overload]


def test_populated_float_bars_become_ticks_and_every_read_is_unchanged(
    scratch: psycopg.Connection, layout_before: tuple[Path, Path]
) -> None:
    conn = scratch
    migrate(conn, *layout_before)
    for statement in (BARS, DAILY, VENDOR):
        conn.execute(statement)  # type: ignore[call-overload]
    conn.execute("CALL refresh_continuous_aggregate('market.bars_agg_5min', '2025-03-03', '2025-03-04')")
    compressed = conn.execute(
        "SELECT count(compress_chunk(c)) FROM show_chunks('market.bars_intraday', older_than => timestamptz"
        " '2025-03-04') c"
    ).fetchone()
    assert compressed == (1,)
    before = read_all(conn)
    assert len(before["bars"]) == 242 and len(before["vendor"]) == 243 and before["5min"] and before["movers"]

    applied = migrate(conn)

    assert applied.migrations[0].filename == "0023_bar_price_ticks.sql"
    assert read_all(conn) == before  # every value exactly: the views read ticks back as the same doubles
    stored = conn.execute(
        "SELECT open, close, vwap FROM market.bars_intraday_store WHERE symbol = 'TKB' ORDER BY ts LIMIT 1"
    ).fetchone()
    assert stored == (5123, 5323, 5233)  # $0.5123, $0.5323 and vwap $0.5233 as whole ticks
    types = dict(
        conn.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'market' AND column_name = 'close'"
            " AND table_name IN ('bars_intraday_store', 'bars_daily_store', 'bars_intraday', 'vendor_bars_intraday')"
        ).fetchall()
    )
    assert types == {
        "bars_intraday_store.close": "bigint",
        "bars_daily_store.close": "bigint",
        "bars_intraday.close": "double precision",
        "vendor_bars_intraday.close": "double precision",
    }
    # the migrated store compresses again, and the readers still see the same rows
    assert conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('market.bars_intraday_store') c").fetchone()
    assert read_all(conn) == before
