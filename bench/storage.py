"""Storage benchmark: SQL scanner latencies, tiering throughput, lake vs hot bytes, cold vs hot reads.

Runs against the running stack (``marketpipe up``) on synthetic 1-minute bars (default 5,000 symbols
x 20 NYSE sessions, about 39M rows), daily bars aggregated from them and one daily RSI per bar, in
a throwaway database (``bench_storage``, on the stack's PostgreSQL) migrated by the real migrator
(:func:`db.migrate.migrate`: every migration, then every routine): the same tables, hypertables,
chunk intervals, indexes, triggers and scanner functions as the real ones, and the real database is
never touched. Lake objects go under ``cold/bench-storage-<run tag>/`` (their manifest rows of
dataset ``bench_storage_bars`` in the throwaway database); both are deleted at the end, like the
database.

Parts, in order, each measured in this run:

- ``load``: the first session by ``INSERT .. SELECT generate_series`` (server side), the second by
  the hot writer's binary COPY (:func:`storage.hot.upsert_frame`); the faster loads the rest.
  A third session is COPYed with the latest-bar triggers disabled: their cost to writers.
- ``scanners``: p50/p95 over repeated calls of every ``scan.*`` function, end to end (every row
  fetched into Python, what a scanner process sees) and server-side (``count(*)`` over the call);
  for the latest bar per symbol also two references without ``market.latest_bars``: a LATERAL
  probe per symbol and ``DISTINCT ON`` over the last session.
- ``hot read`` then ``cold read``: one symbol over every session (a symbol-month) from the
  hypertable, then from the lake with pyarrow.dataset (filter pushed down to row-group statistics).
- ``tiering``: every intraday chunk through :func:`storage.tiering.tier_chunk`, the function
  ``marketpipe lake tier`` runs (export to Parquet sorted by symbol and ts in the Hive layout, read
  back and verify, manifest row, drop the chunk); MB/s of Parquet written and verified, and lake
  bytes / hot bytes (``hypertable_size`` before tiering) for the same rows.

The scanners that migration 0012 rewrote (top movers over minutes, volume spikes, opening gaps) are
also measured in their 0011 definitions (``*_0011_ref``, frozen in ``bench/scanners_0011.sql`` and
created in schema ``scan_0011`` by :func:`create_reference_scanners`), same calls, same data, same run.

Targets: latest bar per symbol p95 < 50 ms, top movers over 15 minutes p95 < 200 ms. Usage:
``marketpipe bench storage [--symbols N] [--sessions N] [--json] [--skip-tiering] [--keep] [--reuse]``:
``--skip-tiering`` leaves out tiering and the cold read (the ~5 minutes of tiering at full size),
``--keep`` leaves the database for a later ``--reuse``, which measures the scanners again on them
without loading anything. Not part of the test suite
(``tests/performance/test_bench_storage.py`` runs it small, marked slow).
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from psycopg import sql

from core.errors import RequestError
from core.settings import Settings

T = TypeVar("T")

PREFIX = "bench_storage"
DATABASE = PREFIX  # the throwaway database the benchmark migrates and measures
# Scanners that 0012 (and 0014) replaced: their 0011 definitions are measured beside them, in REF_SCHEMA.
REPLACED = ("top_movers_minutes", "volume_spikes", "opening_gaps")
REFERENCE_SCANNERS = Path(__file__).with_name("scanners_0011.sql")
REF_SCHEMA = "scan_0011"
LAST_DAY = date(2024, 11, 29)  # the synthetic market ends on this session (includes a half day)
TARGET_LATEST_BAR_MS = 50.0
TARGET_TOP_MOVERS_MS = 200.0
LAKE_PREFIX = "bench-storage"


# ---------------------------------------------------------------------------------------------
# Pure helpers


def percentiles(samples_s: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds; p95 by linear interpolation between order statistics."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def session_days(sessions: int, last_day: date = LAST_DAY) -> list[tuple[datetime, datetime]]:
    """(open, close) in UTC of the ``sessions`` NYSE sessions ending on ``last_day``."""
    from core.calendar import nyse_sessions

    schedule = nyse_sessions(last_day - timedelta(days=2 * sessions + 14), last_day)
    if len(schedule) < sessions:
        raise ValueError(f"only {len(schedule)} sessions before {last_day}")
    opens = pd.to_datetime(schedule.open_ns[-sessions:], utc=True)
    closes = pd.to_datetime(schedule.close_ns[-sessions:], utc=True)
    return [(o.to_pydatetime(), c.to_pydatetime()) for o, c in zip(opens, closes, strict=True)]


def symbol_names(count: int) -> list[str]:
    return [f"S{i:05d}" for i in range(count)]


def synthetic_session(
    symbols: int, session: int, open_utc: datetime, close_utc: datetime, seed: int = 0
) -> pd.DataFrame:
    """One session of 1-minute bars for ``symbols`` symbols (numpy, the COPY path's input): the same
    price model as :data:`GENERATE_SQL` (a slow sine per symbol, a per-session level and noise)."""
    from core.model import BARS, frame

    minutes = int((close_utc - open_utc).total_seconds() // 60)
    k = np.repeat(np.arange(symbols), minutes)
    i = np.tile(np.arange(minutes), symbols)
    rng = np.random.default_rng(seed + session)
    g = session * 390 + i
    base = 20.0 + (k % 500)
    level = 1 + 0.03 * np.sin(k * 7.0 + session * 3.0)
    close = base * level * (1 + 0.05 * np.sin(g / 50.0 + k) + 0.002 * (rng.random(len(k)) - 0.5))
    open_ = close * (1 + 0.001 * (rng.random(len(k)) - 0.5))
    volume = (1000 + 5000 * rng.random(len(k))).astype(np.int64) * np.where(rng.random(len(k)) < 0.001, 20, 1)
    ts = pd.DatetimeIndex(np.datetime64(open_utc.replace(tzinfo=None), "ns") + i.astype("timedelta64[m]"))
    return frame(
        BARS,
        {
            "symbol": np.array(symbol_names(symbols), dtype=object)[k],
            "ts": ts.tz_localize("UTC"),
            "timeframe": "1min",
            "open": open_,
            "high": np.maximum(open_, close) * (1 + 0.0005 * rng.random(len(k))),
            "low": np.minimum(open_, close) * (1 - 0.0005 * rng.random(len(k))),
            "close": close,
            "volume": volume,
            "vwap": (open_ + close) / 2,
            "trade_count": volume // 100,
            "source": "bench",
        },
        what="synthetic bars",
    )


GENERATE_SQL = """
INSERT INTO market.bars_intraday (symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count,
                               source, quality_flags)
SELECT 'S' || lpad(k::text, 5, '0'), '1min', %(open)s::timestamptz + make_interval(mins => i),
       o, greatest(o, c) * (1 + 0.0005 * random()), least(o, c) * (1 - 0.0005 * random()), c,
       v, (o + c) / 2, v / 100, 'bench', 0
  FROM generate_series(0, %(symbols)s - 1) AS k
 CROSS JOIN generate_series(0, %(minutes)s - 1) AS i
 CROSS JOIN LATERAL (
       SELECT (20.0 + k %% 500) * (1 + 0.03 * sin(k * 7.0 + %(session)s * 3.0))
              * (1 + 0.05 * sin((%(session)s * 390 + i) / 50.0 + k) + 0.002 * (random() - 0.5)) AS c0,
              ((1000 + 5000 * random())::bigint * CASE WHEN random() < 0.001 THEN 20 ELSE 1 END) AS v0) p
 CROSS JOIN LATERAL (SELECT p.c0 * (1 + 0.001 * (random() - 0.5)) AS o, p.c0 AS c, p.v0 AS v) q
"""

DAILY_SQL = """
INSERT INTO market.bars_daily (symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count,
                            source, quality_flags)
SELECT symbol, '1day', (%(day)s::date::timestamp AT TIME ZONE 'America/New_York'),
       first(open, ts), max(high), min(low), last(close, ts), sum(volume)::bigint,
       sum(vwap * volume) / sum(volume), sum(trade_count)::bigint, 'bench', 0
  FROM market.bars_intraday
 WHERE timeframe = '1min' AND ts >= %(open)s AND ts < %(close)s
 GROUP BY symbol
"""


@dataclass(frozen=True)
class Scanner:
    """One measured query: its name in the report and its SQL."""

    name: str
    sql: str
    repeats: int = 10


def scanners(sessions: int) -> list[Scanner]:
    days = max(1, min(52, sessions - 2))
    return [
        Scanner("latest_bar", "SELECT * FROM scan.latest('1min')", repeats=30),
        Scanner("top_movers", "SELECT * FROM scan.top_movers_minutes(15)", repeats=30),
        Scanner("top_movers_sessions", f"SELECT * FROM scan.top_movers_sessions({max(1, min(5, sessions - 1))})"),
        Scanner("volume_spikes", "SELECT * FROM scan.volume_spikes(20, 3, '1min')"),
        Scanner("opening_gaps", "SELECT * FROM scan.opening_gaps(2, 'both', '1min')"),
        Scanner("new_highs_lows", f"SELECT * FROM scan.new_highs_lows({days})"),
        Scanner("rsi_extremes", "SELECT * FROM scan.rsi_extremes(70, 30, '1day')"),
        # the 0011 definitions that 0012 replaced, same calls
        Scanner("top_movers_0011_ref", f"SELECT * FROM {REF_SCHEMA}.top_movers_minutes(15)", repeats=10),
        Scanner("volume_spikes_0011_ref", f"SELECT * FROM {REF_SCHEMA}.volume_spikes(20, 3, '1min')", repeats=5),
        Scanner("opening_gaps_0011_ref", f"SELECT * FROM {REF_SCHEMA}.opening_gaps(2, 'both', '1min')", repeats=5),
        # references for the latest bar per symbol without market.latest_bars
        Scanner(
            "latest_bar_lateral_ref",
            "SELECT b.* FROM (SELECT symbol FROM market.latest_bars WHERE timeframe = '1min') s"
            " CROSS JOIN LATERAL (SELECT * FROM market.bars_intraday x WHERE x.symbol = s.symbol"
            " AND x.timeframe = '1min' ORDER BY x.ts DESC LIMIT 1) b",
            repeats=5,
        ),
        Scanner(
            "latest_bar_distinct_on_ref",
            "SELECT DISTINCT ON (symbol) * FROM market.bars_intraday WHERE timeframe = '1min'"
            " AND ts >= (SELECT max(ts) FROM market.bars_intraday) - interval '1 day'"
            " ORDER BY symbol, ts DESC",
            repeats=3,
        ),
    ]


def summarize(parts: dict[str, Any]) -> dict[str, Any]:
    """The report: the required keys first, then the details."""
    lat = parts["latencies_ms"]
    tiered = parts["tiering"]
    report = {
        "latest_bar_p50_ms": round(lat["latest_bar"][0], 2),
        "latest_bar_p95_ms": round(lat["latest_bar"][1], 2),
        "top_movers_p50_ms": round(lat["top_movers"][0], 2),
        "top_movers_p95_ms": round(lat["top_movers"][1], 2),
        "tiering_mb_per_s": (
            round(tiered["bytes"] / 1e6 / tiered["seconds"], 2) if tiered and tiered["seconds"] > 0 else None
        ),
        "lake_to_hot_bytes_ratio": round(tiered["bytes"] / parts["hot_bytes"], 4) if tiered else None,
        "symbols": parts["symbols"],
        "sessions": parts["sessions"],
        "rows": parts["rows"],
        "scanner_latency_ms": {k: {"p50": round(v[0], 2), "p95": round(v[1], 2)} for k, v in lat.items()},
        "scanner_server_latency_ms": {
            k: {"p50": round(v[0], 2), "p95": round(v[1], 2)} for k, v in parts["server_latencies_ms"].items()
        },
        "scanner_rows": parts["scanner_rows"],
        "load": parts["load"],
        "tiering": {
            "via": tiered["via"],
            "chunks": tiered["chunks"],
            "rows": tiered["rows"],
            "parquet_bytes": tiered["bytes"],
            "seconds": round(tiered["seconds"], 3),
            "rows_per_s": round(tiered["rows"] / tiered["seconds"]) if tiered["seconds"] > 0 else None,
            "compression": tiered["compression"],
        }
        if tiered
        else None,
        "hot_bytes": parts["hot_bytes"],
        "symbol_month_read": parts["symbol_month_read"],
        "cpus": parts["cpus"],
        "load_average_1min": parts["load_average_1min"],
    }
    met = {
        "latest_bar_p95_ms": report["latest_bar_p95_ms"] < TARGET_LATEST_BAR_MS,
        "top_movers_p95_ms": report["top_movers_p95_ms"] < TARGET_TOP_MOVERS_MS,
    }
    report["targets"] = {
        "latest_bar_p95_ms": {"target": f"< {TARGET_LATEST_BAR_MS:g}", "met": met["latest_bar_p95_ms"]},
        "top_movers_p95_ms": {"target": f"< {TARGET_TOP_MOVERS_MS:g}", "met": met["top_movers_p95_ms"]},
    }
    report["targets_met"] = all(met.values())
    return report


def _num(value: float | None, spec: str = ",") -> str:
    return "n/a" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    """The human-readable form: one line per measure."""
    rows = [("measure", "p50", "p95", "server p50", "server p95", "rows", "target")]
    targets = {"latest_bar": "latest_bar_p95_ms", "top_movers": "top_movers_p95_ms"}
    for name, lat in report["scanner_latency_ms"].items():
        srv = report["scanner_server_latency_ms"][name]
        target = report["targets"].get(targets.get(name, ""), None)
        mark = f"p95 {target['target']} ms: {'met' if target['met'] else 'NOT met'}" if target else ""
        rows.append(
            (
                name,
                f"{lat['p50']:.1f} ms",
                f"{lat['p95']:.1f} ms",
                f"{srv['p50']:.1f} ms",
                f"{srv['p95']:.1f} ms",
                f"{report['scanner_rows'][name]:,}",
                mark,
            )
        )
    read = report["symbol_month_read"]
    rows.append(("symbol-month read, hot", f"{read['hot_ms']:.1f} ms", "", "", "", f"{read['rows']:,}", ""))
    if read["cold_ms"] is not None:
        ratio = f"{read['cold_ms'] / read['hot_ms']:.1f}x hot" if read["hot_ms"] else ""
        rows.append(("symbol-month read, cold", f"{read['cold_ms']:.1f} ms", "", "", "", f"{read['rows']:,}", ratio))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    tier, load = report["tiering"], report["load"]
    lines.append("")
    if tier:
        lines.append(
            f"tiering ({tier['via']}): {_num(report['tiering_mb_per_s'])} MB/s of Parquet written and verified "
            f"({tier['rows']:,} rows in {tier['chunks']} chunks, {tier['parquet_bytes']:,} B {tier['compression']}, "
            f"{tier['seconds']} s); lake/hot bytes {report['lake_to_hot_bytes_ratio']} (hot {report['hot_bytes']:,} B)"
        )
    else:
        lines.append("tiering: skipped (--skip-tiering or --reuse)")
    if load:
        lines.append(
            f"load: generate_series {_num(load['generate_series_rows_per_s'])} rows/s, binary COPY (hot writer) "
            f"{_num(load['copy_rows_per_s'])} rows/s, the rest by {load['bulk_method']}; latest-bar trigger cost "
            f"{_num(load['trigger_overhead_fraction'], '.1%')} of a session's load"
        )
    else:
        lines.append("load: none (--reuse: the bars of a --keep run)")
    lines += [
        f"{report['rows']:,} rows ({report['symbols']} symbols x {report['sessions']} sessions of 1-minute bars), "
        f"{report['cpus']} CPUs, 1-min load average {report['load_average_1min']} when the scanners ran",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The measured parts (I/O)


def _timed(action: Callable[[], T]) -> tuple[float, T]:
    began = time.perf_counter()
    value = action()
    return time.perf_counter() - began, value


def create_reference_scanners(conn: psycopg.Connection, schema: str = REF_SCHEMA) -> None:
    """The frozen 0011 definitions of the :data:`REPLACED` scanners in ``schema`` (created here): the
    file's names are unqualified, so they land first on the search_path, set for this one transaction."""
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(REFERENCE_SCANNERS.read_text())  # type: ignore[arg-type]  # project file


def create_database(settings: Settings) -> None:
    """Drop and recreate the bench database: TimescaleDB, the project's schema as ``marketpipe db
    migrate`` builds it (every migration, then every routine), and the 0011 reference scanners."""
    from db.connect import database_connection
    from db.migrate import migrate
    from stack.scratch import create_database as create

    create(settings, DATABASE)
    with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
        migrate(conn)
        create_reference_scanners(conn)


def drop_database(settings: Settings) -> None:
    from stack.scratch import drop_database as drop

    drop(settings, DATABASE)


def _set_insert_trigger(conn: psycopg.Connection, enabled: bool) -> None:
    """Drop or recreate the latest-bar INSERT trigger (TimescaleDB refuses ALTER TABLE .. DISABLE TRIGGER)."""
    if enabled:
        conn.execute(
            "CREATE TRIGGER latest_bars_on_insert AFTER INSERT ON market.bars_intraday"
            " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.latest_bars_upsert()"
        )
    else:
        conn.execute("DROP TRIGGER latest_bars_on_insert ON market.bars_intraday")


def load(conn: psycopg.Connection, symbols: int, days: list[tuple[datetime, datetime]]) -> dict[str, Any]:
    """Every session of 1-minute bars, then daily bars and RSI features; returns the load figures."""
    from storage.hot import BARS_INTRADAY, upsert_frame

    def generate(session: int) -> int:
        open_utc, close_utc = days[session]
        minutes = int((close_utc - open_utc).total_seconds() // 60)
        with conn.transaction():
            conn.execute(
                GENERATE_SQL,  # type: ignore[arg-type]
                {"open": open_utc, "symbols": symbols, "minutes": minutes, "session": session},
            )
        return symbols * minutes

    def copy(session: int) -> int:
        bars = synthetic_session(symbols, session, *days[session])
        return upsert_frame(conn, bars, BARS_INTRADAY).inserted

    timings: dict[str, tuple[float, int]] = {}
    timings["generate_series"] = _timed(lambda: generate(0))
    if len(days) > 1:
        timings["copy"] = _timed(lambda: copy(1))
    fastest = min(timings, key=lambda k: timings[k][0] / max(1, timings[k][1]))
    bulk = generate if fastest == "generate_series" else copy
    untriggered: tuple[float, int] | None = None
    for session in range(len(timings), len(days)):
        if session == 2 and len(days) > 3:  # one session without the latest-bar triggers (not the last)
            _set_insert_trigger(conn, False)
            try:
                untriggered = _timed(lambda s=session: bulk(s))
            finally:
                _set_insert_trigger(conn, True)
        else:
            bulk(session)
    for open_utc, close_utc in days:
        day = pd.Timestamp(open_utc).tz_convert("America/New_York").date()
        conn.execute(DAILY_SQL, {"day": day, "open": open_utc, "close": close_utc})  # type: ignore[arg-type]
    conn.execute(
        "INSERT INTO features.bar_features (symbol, timeframe, ts, feature_set, rsi)"
        " SELECT symbol, timeframe, ts, 'bench', 100 * random() FROM market.bars_daily"
    )
    for table in ("market.bars_intraday", "market.bars_daily", "market.latest_bars", "features.bar_features"):
        conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]
    rate = {k: round(n / s) for k, (s, n) in timings.items()}
    reference = timings[fastest]
    overhead = None
    if untriggered is not None:
        with_trigger = reference[0] / reference[1]
        overhead = max(0.0, (with_trigger - untriggered[0] / untriggered[1]) / with_trigger)
    return {
        "generate_series_rows_per_s": rate.get("generate_series"),
        "copy_rows_per_s": rate.get("copy"),
        "bulk_method": fastest,
        "trigger_overhead_fraction": round(overhead, 4) if overhead is not None else None,
    }


def _fetch(conn: psycopg.Connection, query: str) -> list:
    """Every row, in the binary protocol as :func:`storage.scanners.run_scan` fetches them."""
    with conn.cursor(binary=True) as cur:
        cur.execute(query)  # type: ignore[arg-type]  # built from constants
        return cur.fetchall()


def measure_scanners(
    conn: psycopg.Connection, sessions: int, repeats: int | None = None
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]], dict[str, int]]:
    """Per scanner, after two warm-up calls: p50/p95 end to end (the call and every row fetched into
    Python in the binary protocol, what a scanner process sees) and server-side (``SELECT count(*)``
    over the same call, no rows sent), and its row count."""
    latencies: dict[str, tuple[float, float]] = {}
    server: dict[str, tuple[float, float]] = {}
    counts: dict[str, int] = {}
    for scanner in scanners(sessions):
        query = scanner.sql
        counted = f"SELECT count(*) FROM ({query}) AS q"
        times = repeats or scanner.repeats
        for _ in range(2):
            counts[scanner.name] = len(_fetch(conn, query))
        latencies[scanner.name] = percentiles([_timed(lambda q=query: _fetch(conn, q))[0] for _ in range(times)])
        server[scanner.name] = percentiles(
            [_timed(lambda q=counted: conn.execute(q).fetchone())[0] for _ in range(times)]  # type: ignore[misc]
        )
    return latencies, server, counts


def hot_read(
    conn: psycopg.Connection, symbol: str, start: datetime, end: datetime, repeats: int = 5
) -> tuple[float, int]:
    """Median ms and rows of one symbol's 1-minute bars over [start, end) from the hypertable."""
    query = (
        "SELECT symbol, ts, open, high, low, close, volume, vwap, trade_count FROM "
        "market.bars_intraday WHERE symbol = %s AND timeframe = '1min'"
        " AND ts >= %s AND ts < %s ORDER BY ts"
    )
    samples, rows = [], 0
    for _ in range(repeats):
        seconds, fetched = _timed(lambda: conn.execute(query, (symbol, start, end)).fetchall())  # type: ignore[arg-type]
        samples.append(seconds)
        rows = len(fetched)
    return statistics.median(samples) * 1000, rows


def cold_read(
    settings: Settings, prefix: str, symbol: str, start: datetime, end: datetime, repeats: int = 5
) -> tuple[float, int]:
    """Median ms and rows of the same read from the lake: a fresh pyarrow dataset each time (no
    cached footers), filters pushed down to partitions and row-group statistics."""
    from storage.lake import Lake

    lake = Lake.from_settings(settings.lake)
    filesystem = lake.filesystem()
    samples, rows = [], 0
    for _ in range(repeats):

        def read() -> pa.Table:
            dataset = pads.dataset(
                f"{lake.bucket}/{prefix}", filesystem=filesystem, format="parquet", partitioning="hive"
            )
            condition = (
                (pc.field("timeframe") == "1min")
                & (pc.field("symbol") == symbol)
                & (pc.field("ts") >= pa.scalar(start, pa.timestamp("us", "UTC")))
                & (pc.field("ts") < pa.scalar(end, pa.timestamp("us", "UTC")))
            )
            return dataset.to_table(filter=condition).sort_by("ts")

        seconds, table = _timed(read)
        samples.append(seconds)
        rows = table.num_rows
    return statistics.median(samples) * 1000, rows


def tier(conn: psycopg.Connection, settings: Settings, tag: str) -> tuple[dict[str, Any], str]:
    """Every chunk of the bench's 1-minute bars through :func:`storage.tiering.tier_chunk` (export,
    read back and verify, manifest row, drop), as ``marketpipe lake tier`` does for the real tables.
    Returns the tiering figures and the lake prefix the objects went to."""
    from storage.hot import BARS_INTRADAY
    from storage.lake import Lake
    from storage.tiering import TierDataset, list_chunks, tier_chunk

    dataset = TierDataset(f"{PREFIX}_bars", BARS_INTRADAY, f"{LAKE_PREFIX}-{tag}")
    lake = Lake.from_settings(settings.lake)
    chunks = list_chunks(conn, dataset, datetime(9999, 1, 1, tzinfo=UTC))
    began = time.perf_counter()
    results = [tier_chunk(conn, lake, settings, dataset, chunk) for chunk in chunks]
    seconds = time.perf_counter() - began
    figures = {
        "via": "storage.tiering.tier_chunk",
        "chunks": len(results),
        "rows": sum(r.rows for r in results),
        "bytes": sum(r.bytes_written for r in results),
        "seconds": seconds,
        "compression": settings.storage.data_lake.compression,
    }
    return figures, dataset.prefix.rstrip("/")


def forget_lake_objects(settings: Settings, prefix: str) -> None:
    """Delete the run's lake objects (their manifest rows go with the bench database)."""
    from storage.lake import Lake

    lake = Lake.from_settings(settings.lake)
    for obj in list(lake.list(prefix + "/")):
        lake.delete(obj.key)


def run(
    settings: Settings,
    symbols: int = 5000,
    sessions: int = 20,
    *,
    repeats: int | None = None,
    keep: bool = False,
    skip_tiering: bool = False,
    reuse: bool = False,
) -> dict[str, Any]:
    """The whole benchmark on the running stack; drops its database and lake objects unless ``keep``.
    ``repeats`` overrides every scanner's number of timed calls (tiny test runs).
    ``skip_tiering``: no tiering and no cold read (the scanners' figures in minutes instead of
    ~15 at full size; the bars stay hot, so ``keep`` leaves them for another run). ``reuse``:
    measure the scanners on the bars a ``keep`` run left (no load; ``symbols``/``sessions`` must
    match that run) and tier nothing; with ``keep`` again they stay for the next ``reuse``."""
    from db.connect import database_connection

    if symbols < 1 or sessions < 2:
        raise ValueError(f"need at least 1 symbol and 2 sessions, got {symbols} and {sessions}")
    days = session_days(sessions)
    tag = secrets.token_hex(4)
    prefix = ""
    tiered: dict[str, Any] | None = None
    cold_ms: float | None = None
    load_figures: dict[str, Any] = {}
    if reuse:
        check_reusable(settings, symbols)
    try:
        if not reuse:
            create_database(settings)
        with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            if not reuse:
                load_figures = load(conn, symbols, days)
            rows = conn.execute("SELECT count(*) FROM market.bars_intraday").fetchone()[0]  # type: ignore[index]
            hot_bytes = conn.execute("SELECT hypertable_size('market.bars_intraday')").fetchone()[0]  # type: ignore[index]
            load_avg = os.getloadavg()[0]
            latencies, server, counts = measure_scanners(conn, sessions, repeats)
            symbol = symbol_names(symbols)[symbols // 2]
            start, end = days[0][0] - timedelta(hours=1), days[-1][1] + timedelta(hours=1)
            hot_ms, hot_rows = hot_read(conn, symbol, start, end)
            if not (skip_tiering or reuse):
                tiered, prefix = tier(conn, settings, tag)
                cold_ms, cold_rows = cold_read(settings, prefix, symbol, start, end)
                if cold_rows != hot_rows:
                    raise RuntimeError(f"cold read returned {cold_rows} rows of {symbol}, hot {hot_rows}")
    finally:
        if not keep:
            drop_database(settings)
            if prefix:
                forget_lake_objects(settings, prefix)
    return summarize(
        {
            "latencies_ms": latencies,
            "server_latencies_ms": server,
            "scanner_rows": counts,
            "load": load_figures,
            "symbols": symbols,
            "sessions": sessions,
            "rows": rows,
            "hot_bytes": hot_bytes,
            "tiering": tiered,
            "symbol_month_read": {
                "symbol": symbol,
                "rows": hot_rows,
                "hot_ms": round(hot_ms, 2),
                "cold_ms": None if cold_ms is None else round(cold_ms, 2),
            },
            "cpus": os.cpu_count(),
            "load_average_1min": round(load_avg, 2),
        }
    )


def check_reusable(settings: Settings, symbols: int) -> None:
    """Refuse ``reuse`` unless a kept run's bars of ``symbols`` symbols are there."""
    from db.connect import database_connection
    from stack.scratch import database_exists

    if not database_exists(settings, DATABASE):
        raise RequestError(f"no kept benchmark data (database {DATABASE} is missing): run once with --keep first")
    with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
        count = conn.execute("SELECT count(*) FROM market.latest_bars WHERE timeframe = '1min'").fetchone()
    if count is None or count[0] != symbols:
        raise RequestError(
            f"the kept benchmark data has {count and count[0]} symbols, not {symbols}: "
            "pass the --symbols and --sessions of the --keep run"
        )
