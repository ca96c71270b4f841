"""Hot-writer benchmark: the writer's rows/s against ``psql \\copy`` of the same rows.

Both load the same synthetic 1-minute bars (default 100 symbols x 20 sessions x 390 minutes =
780,000 rows) into fresh hypertables of the same shape as ``market.bars_intraday`` (same columns,
primary key and 1-day chunks) in a scratch schema, in the same run on the same server:

- ``writer``: :func:`storage.hot.upsert_frame` from the pandas frame, committed. A fresh
  range takes the writer's direct binary COPY path (what incremental runs and backfills hit);
- ``psql_copy``: ``psql -c "\\copy ... FROM file.csv (FORMAT csv)"``, committed (the reference);
- ``merge`` (extra): the writer forced through staging + ``INSERT ... ON CONFLICT`` into another
  fresh table (the path for batches overlapping stored data);
- ``rerun`` (extra): the same rows written again through the writer (all unchanged).

Target: ``ratio = writer / psql_copy >= 0.8``. Usage: ``python -m bench.hot_writer [--rows N]``;
prints one JSON object. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core.model import BARS, frame
from core.settings import Settings, load_settings
from db.connect import database_connection
from storage.hot import BARS_INTRADAY, PRICE_SCALE, UpsertResult, upsert_frame

SCHEMA = "bench_hot_writer"
MINUTES_PER_SESSION = 390
TARGET_RATIO = 0.8


def synthetic_bars(rows: int = 780_000, symbols: int = 100, seed: int = 0) -> pd.DataFrame:
    """``rows`` 1-minute bars (``symbols`` x whole sessions, truncated to ``rows``), built in bulk."""
    sessions = max(1, -(-rows // (symbols * MINUTES_PER_SESSION)))
    days = pd.bdate_range("2024-01-02", periods=sessions).to_numpy().astype("datetime64[ns]")
    opens = days + np.timedelta64(14 * 60 + 30, "m")  # 09:30 New York in winter
    minutes = (opens[:, None] + np.arange(MINUTES_PER_SESSION)[None, :] * np.timedelta64(1, "m")).ravel()
    names = np.array([f"SYM{i:04d}" for i in range(symbols)])
    ts = np.tile(minutes, symbols)[:rows]
    symbol = np.repeat(names, len(minutes))[:rows]
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, rows)))
    spread = np.abs(rng.normal(0, 5e-4, rows)) * close
    return frame(
        BARS,
        {
            "symbol": symbol,
            "ts": pd.Series(ts).dt.tz_localize("UTC"),
            "timeframe": "1min",
            "open": close - spread / 2,
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(100, 50_000, rows),
            "vwap": close,
            "trade_count": rng.integers(1, 500, rows),
            "source": "bench",
        },
        what="synthetic bars",
    )


def run(
    settings: Settings,
    rows: int = 780_000,
    symbols: int = 100,
    cpu_probe: Callable[[], dict[str, float]] | None = None,
) -> dict:
    """Measure writer and ``psql \\copy`` into fresh hypertables; returns the figures as a dict.

    With ``cpu_probe`` (CPU seconds so far per process, e.g. :func:`bench.ingest.component_cpu_seconds`)
    the CPU the writer's part cost this process and the database is reported too
    (``writer_cpu_seconds``)."""
    bars = BARS_INTRADAY.complete(synthetic_bars(rows, symbols))
    columns = ", ".join(BARS_INTRADAY.column_names)
    with database_connection(settings, autocommit=True) as conn, tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "bars.csv"
        # psql loads the same rows as the store holds them: prices in ticks of 1/10,000 dollar
        prices = [c.name for c in BARS_INTRADAY.columns if c.pg_type == "price"]
        in_ticks = bars.assign(**{c: np.rint(bars[c] * PRICE_SCALE).astype("Int64") for c in prices})
        in_ticks[list(BARS_INTRADAY.column_names)].to_csv(csv_path, index=False, header=False)
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        try:
            for table in ("writer_bars", "psql_bars", "merge_bars"):
                conn.execute(f"CREATE TABLE {SCHEMA}.{table} (LIKE market.bars_intraday_store INCLUDING ALL)")
                conn.execute(f"SELECT create_hypertable('{SCHEMA}.{table}', by_range('ts', INTERVAL '1 day'))")
            cpu_before = cpu_probe() if cpu_probe else {}
            writer_s, written = _timed(lambda: upsert_frame(conn, bars, BARS_INTRADAY.at(f"{SCHEMA}.writer_bars")))
            cpu_after = cpu_probe() if cpu_probe else {}
            psql_s, _ = _timed(lambda: _psql_copy(settings, f"{SCHEMA}.psql_bars ({columns})", csv_path))
            merge_s, merged = _timed(
                lambda: upsert_frame(conn, bars, BARS_INTRADAY.at(f"{SCHEMA}.merge_bars"), method="merge")
            )
            rerun_s, rerun = _timed(lambda: upsert_frame(conn, bars, BARS_INTRADAY.at(f"{SCHEMA}.writer_bars")))
            counts = {
                table: conn.execute(f"SELECT count(*) FROM {SCHEMA}.{table}").fetchone()[0]
                for table in ("writer_bars", "psql_bars", "merge_bars")
            }
            cpus = os.cpu_count()
        finally:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    if len(set(counts.values())) != 1 or counts["writer_bars"] != len(bars):
        raise RuntimeError(f"benchmark tables disagree: {counts} for {len(bars)} rows")
    assert isinstance(written, UpsertResult) and isinstance(merged, UpsertResult) and isinstance(rerun, UpsertResult)
    n = len(bars)
    result = {
        "rows": n,
        "writer_rows_per_s": round(n / writer_s),
        "psql_copy_rows_per_s": round(n / psql_s),
        "ratio": round(psql_s / writer_s, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": psql_s / writer_s >= TARGET_RATIO,
        "writer_seconds": round(writer_s, 3),
        "psql_copy_seconds": round(psql_s, 3),
        "merge_rows_per_s": round(n / merge_s),
        "merge_ratio": round(psql_s / merge_s, 3),
        "rerun_rows_per_s": round(n / rerun_s),
        "rerun_unchanged": rerun.unchanged,
        "cpus": cpus,
    }
    if cpu_probe:
        spent = {name: max(0.0, cpu_after[name] - cpu_before.get(name, 0.0)) for name in cpu_after}
        result["writer_cpu_seconds"] = round(sum(spent.values()), 3)
        result["writer_cpu_by_process"] = {name: round(value, 3) for name, value in spent.items()}
    return result


def _timed(action):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def _psql_copy(settings: Settings, target: str, csv_path: Path) -> None:
    db = settings.database
    env = {**os.environ, "PGPASSWORD": db.password.get_secret_value() if db.password else ""}
    subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            db.host,
            "-p",
            str(db.port),
            "-U",
            db.user,
            "-d",
            db.name,
            "-c",
            f"\\copy {target} FROM '{csv_path}' (FORMAT csv)",
        ],
        env=env,
        check=True,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_writer", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=780_000, help="bars to write (default 780000)")
    parser.add_argument("--symbols", type=int, default=100, help="distinct symbols (default 100)")
    args = parser.parse_args(argv)
    print(json.dumps(run(load_settings(), rows=args.rows, symbols=args.symbols), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
