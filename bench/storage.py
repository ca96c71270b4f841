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
- ``compressed`` (TimescaleDB's full edition only; on the Apache edition this part says
  "not available on the apache edition"): every chunk of the hypertables the scanners read through
  ``compress_chunk`` (layout: ``db/routines/60_columnstore.sql``), ``compression_ratio`` =
  ``hypertable_size`` of the 1-minute bars before / after (``hypertable_compression_stats`` beside
  it); the product's scanners again on the compressed chunks, each result compared with the
  uncompressed one by digest; the symbol-month read from compressed chunks; then a day of 1-minute
  bars of every symbol through the hot writer with a compression policy vs without
  (:func:`ingest_with_and_without_policy`: four days, off/on/on/off, the policy's job compressing a
  day's chunk during each run with it).
- ``tiering``: every intraday chunk through :func:`storage.tiering.tier_chunk`, the function
  ``marketpipe lake tier`` runs (export to Parquet sorted by symbol and ts in the Hive layout, read
  back and verify, manifest row, drop the chunk); MB/s of Parquet written and verified, and lake
  bytes / hot bytes (``hypertable_size`` before tiering) for the same rows.

The scanners that migration 0012 rewrote (top movers over minutes, volume spikes, opening gaps) are
also measured in their 0011 definitions (``*_0011_ref``, frozen in ``bench/scanners_0011.sql`` and
created in schema ``scan_0011`` by :func:`create_reference_scanners`), same calls, same data, same run.

Targets: latest bar per symbol p95 < 50 ms, top movers over 15 minutes p95 < 200 ms, both on
uncompressed and on compressed chunks; compression ratio >= 10; ingest with a compression policy at
least 0.9x the rate without. The report carries the TimescaleDB version and edition and the 1/5/15-
minute load averages at the start of each part (other work on the machine shows there). Usage:
``marketpipe bench storage [--symbols N] [--sessions N] [--json] [--skip-tiering] [--skip-compression]
[--keep] [--reuse]``: ``--skip-tiering`` leaves out tiering and the cold read (the ~5 minutes of
tiering at full size; with compression, tiering reads compressed chunks), ``--skip-compression``
the compressed part,
``--keep`` leaves the database for a later ``--reuse``, which measures the scanners again on them
without loading anything (chunks it left compressed are decompressed first). Not part of the test
suite (``tests/integration/bench/test_bench_storage.py`` runs it small, marked slow;
``tests/integration/scanners/test_bench_storage_tiny.py`` tiny, in the normal suite).
"""

from __future__ import annotations

import hashlib
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
TARGET_COMPRESSION_RATIO = 10.0  # uncompressed / compressed bytes of the 1-minute bars
TARGET_INGEST_RATIO = 0.9  # ingest with a compression policy at least 90 % of the rate without
# Native compression (the columnstore) needs TimescaleDB's full edition; these hypertables are the
# ones the scanners read, laid out for compression by db/routines/60_columnstore.sql.
COMPRESSED_TABLES = ("market.bars_intraday_store", "market.bars_daily_store", "features.bar_features")
NOT_AVAILABLE = "not available on the {edition} edition"  # the compression parts without the full edition
FULL_SESSION = timedelta(minutes=390)
INGEST_ORDER = (False, True, True, False)  # policy off/on/on/off: a drift of the machine's load cancels out
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


def base_prices(symbols: int) -> np.ndarray:
    """Each symbol's price level: lognormal around $40 (sigma 1, clipped to 3 sigma: $2 to $800), like
    the prices of US listed stocks, from a closed form of the symbol's number so :data:`GENERATE_SQL`
    computes the same levels."""
    k = np.arange(symbols, dtype=np.float64)
    u1 = np.maximum((k * 0.6180339887 + 0.1) % 1.0, 1e-9)
    u2 = (k * 0.7548776662 + 0.3) % 1.0
    z = np.clip(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2), -3.0, 3.0)
    return 40.0 * np.exp(z)


def to_ticks(dollars: np.ndarray) -> np.ndarray:
    """Prices on the US equity tick grid, in ticks of 1/10,000 dollar: whole cents from $1 up,
    1/10,000 below (Rule 612), as the vendors send them."""
    return np.where(dollars >= 1.0, np.rint(dollars * 100.0) * 100.0, np.rint(dollars * 10_000.0))


def synthetic_session(
    symbols: int, session: int, open_utc: datetime, close_utc: datetime, seed: int = 0
) -> pd.DataFrame:
    """One session of 1-minute bars for ``symbols`` symbols (numpy, the COPY path's input): the same
    price model as :data:`GENERATE_SQL`. A symbol's close wanders around its level (:func:`base_prices`)
    by a slow sine and noise, about 0.06 % a minute; open, high and low around it; every price on the
    tick grid and vwap the bar's mean price rounded to 1/10,000 as the vendors round it; volumes
    uniform with a 20x spike one minute in a thousand."""
    from core.model import BARS, frame

    minutes = int((close_utc - open_utc).total_seconds() // 60)
    k = np.repeat(np.arange(symbols), minutes)
    i = np.tile(np.arange(minutes), symbols)
    rng = np.random.default_rng(seed + session)
    g = session * 390 + i
    base = base_prices(symbols)[k]
    level = 1 + 0.03 * np.sin(k * 7.0 + session * 3.0)
    drift = base * level * (1 + 0.02 * np.sin(g / 50.0 + k) + 0.0012 * (rng.random(len(k)) - 0.5))
    close = to_ticks(drift)
    open_ = to_ticks(drift * (1 + 0.0006 * (rng.random(len(k)) - 0.5)))
    high = to_ticks(np.maximum(open_, close) / 10_000 * (1 + 0.0004 * rng.random(len(k))))
    low = to_ticks(np.minimum(open_, close) / 10_000 * (1 - 0.0004 * rng.random(len(k))))
    high, low = np.maximum(high, np.maximum(open_, close)), np.minimum(low, np.minimum(open_, close))
    volume = (1000 + 5000 * rng.random(len(k))).astype(np.int64) * np.where(rng.random(len(k)) < 0.001, 20, 1)
    ts = pd.DatetimeIndex(np.datetime64(open_utc.replace(tzinfo=None), "ns") + i.astype("timedelta64[m]"))
    return frame(
        BARS,
        {
            "symbol": np.array(symbol_names(symbols), dtype=object)[k],
            "ts": ts.tz_localize("UTC"),
            "timeframe": "1min",
            "open": open_ / 10_000,
            "high": high / 10_000,
            "low": low / 10_000,
            "close": close / 10_000,
            "volume": volume,
            "vwap": np.rint((open_ + high + low + close) / 4.0) / 10_000,
            "trade_count": volume // 100,
            "source": "bench",
        },
        what="synthetic bars",
    )


def rows_digest(rows: Sequence[Sequence[Any]]) -> str:
    """A digest of a result's rows, independent of their order (ties may come back in any order):
    two scans with the same digest returned the same rows, every value exact."""
    digest = hashlib.sha256()
    for line in sorted(repr(tuple(row)) for row in rows):
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def future_sessions(count: int, today: date) -> list[tuple[datetime, datetime]]:
    """(open, close) in UTC of the first ``count`` full (390-minute) NYSE sessions a week after
    ``today``: days no compression policy (``compress_after`` of at least a day) would compress
    while they are written, like today's bars in production."""
    from core.calendar import nyse_sessions

    first = today + timedelta(days=7)
    schedule = nyse_sessions(first, first + timedelta(days=2 * count + 14))
    opens = pd.to_datetime(schedule.open_ns, utc=True)
    closes = pd.to_datetime(schedule.close_ns, utc=True)
    full = [(o.to_pydatetime(), c.to_pydatetime()) for o, c in zip(opens, closes, strict=True) if c - o == FULL_SESSION]
    if len(full) < count:
        raise ValueError(f"only {len(full)} full sessions after {first}")
    return full[:count]


def ingest_comparison(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rows/s with and without the compression policy (each over its runs together) and their ratio."""
    rates: dict[bool, float | None] = {}
    for policy in (False, True):
        mine = [r for r in runs if r["policy"] is policy]
        seconds = sum(r["seconds"] for r in mine)
        rates[policy] = sum(r["rows"] for r in mine) / seconds if mine and seconds > 0 else None
    without, with_policy = rates[False], rates[True]
    ratio = with_policy / without if with_policy is not None and without else None
    return {
        "without_policy_rows_per_s": None if without is None else round(without),
        "with_policy_rows_per_s": None if with_policy is None else round(with_policy),
        "with_to_without_ratio": None if ratio is None else round(ratio, 4),
        "runs": [{**r, "seconds": round(r["seconds"], 3)} for r in runs],
    }


# Prices in ticks of 1/10,000 dollar straight into the store (db/migrations/0023_bar_price_ticks.sql);
# pg_temp.bench_ticks is to_ticks (:data:`TICKS_FUNCTION`, created by :func:`load` for its session).
GENERATE_SQL = """
INSERT INTO market.bars_intraday_store (symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count,
                                        source, quality_flags)
SELECT 'S' || lpad(k::text, 5, '0'), '1min', %(open)s::timestamptz + make_interval(mins => i),
       o, h, l, c, v, round((o + h + l + c) / 4.0)::bigint, v / 100, 'bench', 0
  FROM generate_series(0, %(symbols)s - 1) AS k
 CROSS JOIN LATERAL (
       SELECT 40 * exp(greatest(-3.0, least(3.0, sqrt(-2 * ln(greatest(u1 - floor(u1), 1e-9)))
                                                  * cos(2 * pi() * (u2 - floor(u2)))))) AS base
         FROM (SELECT k * 0.6180339887 + 0.1 AS u1, k * 0.7548776662 + 0.3 AS u2) u) b
 CROSS JOIN generate_series(0, %(minutes)s - 1) AS i
 CROSS JOIN LATERAL (
       SELECT b.base * (1 + 0.03 * sin(k * 7.0 + %(session)s * 3.0))
              * (1 + 0.02 * sin((%(session)s * 390 + i) / 50.0 + k) + 0.0012 * (random() - 0.5)) AS drift,
              ((1000 + 5000 * random())::bigint * CASE WHEN random() < 0.001 THEN 20 ELSE 1 END) AS v) p
 CROSS JOIN LATERAL (
       SELECT pg_temp.bench_ticks(p.drift) AS c0,
              pg_temp.bench_ticks(p.drift * (1 + 0.0006 * (random() - 0.5))) AS o0) q
 CROSS JOIN LATERAL (
       SELECT q.o0 AS o, q.c0 AS c,
              greatest(pg_temp.bench_ticks(greatest(q.o0, q.c0) / 10000.0 * (1 + 0.0004 * random())),
                       greatest(q.o0, q.c0)) AS h,
              least(pg_temp.bench_ticks(least(q.o0, q.c0) / 10000.0 * (1 - 0.0004 * random())),
                    least(q.o0, q.c0)) AS l) r
"""

TICKS_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.bench_ticks(p double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p >= 1 THEN round(p * 100)::bigint * 100 ELSE round(p * 10000)::bigint END
$$
"""

DAILY_SQL = """
INSERT INTO market.bars_daily_store (symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count,
                                     source, quality_flags)
SELECT symbol, '1day', (%(day)s::date::timestamp AT TIME ZONE 'America/New_York'),
       first(open, ts), max(high), min(low), last(close, ts), sum(volume)::bigint,
       round(sum(vwap::numeric * volume) / sum(volume))::bigint, sum(trade_count)::bigint, 'bench', 0
  FROM market.bars_intraday_store
 WHERE timeframe = '1min' AND ts >= %(open)s AND ts < %(close)s
 GROUP BY symbol
"""


@dataclass(frozen=True)
class Scanner:
    """One measured query: its name in the report and its SQL."""

    name: str
    sql: str
    repeats: int = 10
    reference: bool = False  # a reference for comparison, not a product scanner (not run on compressed chunks)


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
        Scanner("top_movers_0011_ref", f"SELECT * FROM {REF_SCHEMA}.top_movers_minutes(15)", 10, reference=True),
        Scanner(
            "volume_spikes_0011_ref", f"SELECT * FROM {REF_SCHEMA}.volume_spikes(20, 3, '1min')", 5, reference=True
        ),
        Scanner(
            "opening_gaps_0011_ref", f"SELECT * FROM {REF_SCHEMA}.opening_gaps(2, 'both', '1min')", 5, reference=True
        ),
        # references for the latest bar per symbol without market.latest_bars
        Scanner(
            "latest_bar_lateral_ref",
            "SELECT b.* FROM (SELECT symbol FROM market.latest_bars WHERE timeframe = '1min') s"
            " CROSS JOIN LATERAL (SELECT * FROM market.bars_intraday x WHERE x.symbol = s.symbol"
            " AND x.timeframe = '1min' ORDER BY x.ts DESC LIMIT 1) b",
            repeats=5,
            reference=True,
        ),
        Scanner(
            "latest_bar_distinct_on_ref",
            "SELECT DISTINCT ON (symbol) * FROM market.bars_intraday WHERE timeframe = '1min'"
            " AND ts >= (SELECT max(ts) FROM market.bars_intraday) - interval '1 day'"
            " ORDER BY symbol, ts DESC",
            repeats=3,
            reference=True,
        ),
    ]


def _p(pair: tuple[float, float]) -> dict[str, float]:
    return {"p50": round(pair[0], 2), "p95": round(pair[1], 2)}


def compressed_summary(compressed: dict[str, Any], uncompressed_digests: dict[str, str]) -> dict[str, Any]:
    """The full edition's part of the report; on the Apache edition (or with ``--skip-compression``)
    only why it is not there."""
    if not compressed.get("available"):
        return {"available": False, "reason": compressed["reason"]}
    bars = compressed["tables"]["market.bars_intraday_store"]
    return {
        "available": True,
        "compression_ratio": bars["ratio"],
        "tables": compressed["tables"],
        "scanner_latency_ms": {k: _p(v) for k, v in compressed["latencies_ms"].items()},
        "scanner_server_latency_ms": {k: _p(v) for k, v in compressed["server_latencies_ms"].items()},
        "scanner_rows": compressed["rows"],
        "results_identical": {k: v == uncompressed_digests.get(k) for k, v in compressed["digests"].items()},
        "ingest": compressed["ingest"],
    }


def summarize(parts: dict[str, Any]) -> dict[str, Any]:
    """The report: the required keys first, then the details."""
    lat = parts["latencies_ms"]
    tiered = parts["tiering"]
    compressed = compressed_summary(
        parts.get("compressed") or {"reason": "not measured"}, parts.get("scanner_digests", {})
    )
    available = compressed["available"]
    compressed_lat = compressed["scanner_latency_ms"] if available else {}
    ingest = compressed["ingest"] if available else {}

    def compressed_ms(name: str, which: str) -> float | None:
        return compressed_lat[name][which] if name in compressed_lat else None

    report = {
        "latest_bar_p50_ms": round(lat["latest_bar"][0], 2),
        "latest_bar_p95_ms": round(lat["latest_bar"][1], 2),
        "top_movers_p50_ms": round(lat["top_movers"][0], 2),
        "top_movers_p95_ms": round(lat["top_movers"][1], 2),
        "tiering_mb_per_s": (
            round(tiered["bytes"] / 1e6 / tiered["seconds"], 2) if tiered and tiered["seconds"] > 0 else None
        ),
        "lake_to_hot_bytes_ratio": round(tiered["bytes"] / parts["hot_bytes"], 4) if tiered else None,
        "compression_ratio": compressed["compression_ratio"] if available else None,
        "compressed_latest_bar_p50_ms": compressed_ms("latest_bar", "p50"),
        "compressed_latest_bar_p95_ms": compressed_ms("latest_bar", "p95"),
        "compressed_top_movers_p50_ms": compressed_ms("top_movers", "p50"),
        "compressed_top_movers_p95_ms": compressed_ms("top_movers", "p95"),
        "ingest_without_policy_rows_per_s": ingest.get("without_policy_rows_per_s"),
        "ingest_with_policy_rows_per_s": ingest.get("with_policy_rows_per_s"),
        "ingest_policy_ratio": ingest.get("with_to_without_ratio"),
        "timescaledb": parts.get("timescaledb"),
        "symbols": parts["symbols"],
        "sessions": parts["sessions"],
        "rows": parts["rows"],
        "scanner_latency_ms": {k: _p(v) for k, v in lat.items()},
        "scanner_server_latency_ms": {k: _p(v) for k, v in parts["server_latencies_ms"].items()},
        "scanner_rows": parts["scanner_rows"],
        "compressed": compressed,
        "load": parts["load"],
        "tiering": {
            "via": tiered["via"],
            "chunks": tiered["chunks"],
            "rows": tiered["rows"],
            "parquet_bytes": tiered["bytes"],
            "seconds": round(tiered["seconds"], 3),
            "rows_per_s": round(tiered["rows"] / tiered["seconds"]) if tiered["seconds"] > 0 else None,
            "compression": tiered["compression"],
            "read_compressed_chunks": tiered.get("read_compressed_chunks", False),
        }
        if tiered
        else None,
        "hot_bytes": parts["hot_bytes"],
        "symbol_month_read": parts["symbol_month_read"],
        "cpus": parts["cpus"],
        "load_average_1min": parts["load_average_1min"],
        "load_averages": parts.get("load_averages", {}),
    }
    targets = {  # key: (bound, whether it is an upper bound); met is None where this run did not measure it
        "latest_bar_p95_ms": (TARGET_LATEST_BAR_MS, True),
        "top_movers_p95_ms": (TARGET_TOP_MOVERS_MS, True),
        "compression_ratio": (TARGET_COMPRESSION_RATIO, False),
        "compressed_latest_bar_p95_ms": (TARGET_LATEST_BAR_MS, True),
        "compressed_top_movers_p95_ms": (TARGET_TOP_MOVERS_MS, True),
        "ingest_policy_ratio": (TARGET_INGEST_RATIO, False),
    }
    report["targets"] = {
        key: {
            "target": f"< {bound:g}" if upper else f">= {bound:g}",
            "met": None if report[key] is None else (report[key] < bound if upper else report[key] >= bound),
        }
        for key, (bound, upper) in targets.items()
    }
    report["targets_met"] = all(t["met"] for t in report["targets"].values() if t["met"] is not None)
    return report


def _num(value: float | None, spec: str = ",") -> str:
    return "n/a" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    """The human-readable form: one line per measure."""
    rows = [("measure", "p50", "p95", "server p50", "server p95", "rows", "compressed p50/p95", "same", "target")]
    targets = {"latest_bar": "latest_bar_p95_ms", "top_movers": "top_movers_p95_ms"}
    compressed = report["compressed"]
    on_compressed = compressed["scanner_latency_ms"] if compressed["available"] else {}
    for name, lat in report["scanner_latency_ms"].items():
        srv = report["scanner_server_latency_ms"][name]
        marks = []
        for key in (targets.get(name, ""), f"compressed_{targets.get(name, '')}"):
            target = report["targets"].get(key)
            if target and target["met"] is not None:
                marks.append(f"{'met' if target['met'] else 'NOT met'}")
        mark = f"p95 {report['targets'][targets[name]]['target']} ms: {' / '.join(marks)}" if marks else ""
        comp = on_compressed.get(name)
        rows.append(
            (
                name,
                f"{lat['p50']:.1f} ms",
                f"{lat['p95']:.1f} ms",
                f"{srv['p50']:.1f} ms",
                f"{srv['p95']:.1f} ms",
                f"{report['scanner_rows'][name]:,}",
                f"{comp['p50']:.1f} / {comp['p95']:.1f} ms" if comp else "",
                ("yes" if compressed["results_identical"][name] else "NO") if comp else "",
                mark,
            )
        )
    read = report["symbol_month_read"]
    rows.append(("symbol-month read, hot", f"{read['hot_ms']:.1f} ms", "", "", "", f"{read['rows']:,}", "", "", ""))
    if read.get("compressed_ms") is not None:
        rows.append(
            (
                "symbol-month read, compressed",
                f"{read['compressed_ms']:.1f} ms",
                "",
                "",
                "",
                f"{read['rows']:,}",
                "",
                "",
                "",
            )
        )
    if read["cold_ms"] is not None:
        ratio = f"{read['cold_ms'] / read['hot_ms']:.1f}x hot" if read["hot_ms"] else ""
        rows.append(
            ("symbol-month read, cold", f"{read['cold_ms']:.1f} ms", "", "", "", f"{read['rows']:,}", "", "", ratio)
        )
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
    lines += _compression_lines(report)
    timescale = report["timescaledb"] or {}
    lines += [
        f"{report['rows']:,} rows ({report['symbols']} symbols x {report['sessions']} sessions of 1-minute bars), "
        f"TimescaleDB {timescale.get('version')} ({timescale.get('edition')} edition), {report['cpus']} CPUs, "
        f"1-min load average {report['load_average_1min']} when the scanners ran; 1/5/15-min load averages by part: "
        + ", ".join(f"{part} {'/'.join(map(str, values))}" for part, values in report["load_averages"].items()),
    ]
    return "\n".join(lines)


def _compression_lines(report: dict[str, Any]) -> list[str]:
    compressed = report["compressed"]
    if not compressed["available"]:
        return [f"native compression: {compressed['reason']}"]
    target = report["targets"]["compression_ratio"]
    lines = []
    for table, t in compressed["tables"].items():
        lines.append(
            f"compressed {table}: {t['hypertable_bytes_before']:,} B -> {t['hypertable_bytes_after']:,} B "
            f"(hypertable_size) = {_num(t['ratio'])}x; chunks' own bytes {_num(t['chunk_ratio'])}x; "
            f"{t['compressed_chunks']}/{t['chunks']} chunks in {t['seconds']} s ({_num(t['rows_per_s'])} rows/s)"
            + (
                f"; target {target['target']}: {'met' if target['met'] else 'NOT met'}"
                if table.endswith("intraday")
                else ""
            )
        )
    ingest, ratio_target = compressed["ingest"], report["targets"]["ingest_policy_ratio"]
    jobs = [r["policy_job"] for r in ingest["runs"] if "policy_job" in r]
    overlap = ", ".join(f"{j['done_after_s']} s" if j["finished"] else "not finished" for j in jobs)
    lines.append(
        f"ingest of a day through {ingest['via']}: without a compression policy "
        f"{_num(ingest['without_policy_rows_per_s'])} rows/s, with one {_num(ingest['with_policy_rows_per_s'])} "
        f"rows/s: {_num(ingest['with_to_without_ratio'])} "
        f"(target {ratio_target['target']}: {'met' if ratio_target['met'] else 'NOT met'}); the policy's job "
        f"compressing a day's chunk meanwhile was done after: {overlap or 'n/a'}"
    )
    return lines


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
            "CREATE TRIGGER latest_bars_on_insert AFTER INSERT ON market.bars_intraday_store"
            " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.latest_bars_upsert()"
        )
    else:
        conn.execute("DROP TRIGGER latest_bars_on_insert ON market.bars_intraday_store")


def load(conn: psycopg.Connection, symbols: int, days: list[tuple[datetime, datetime]]) -> dict[str, Any]:
    """Every session of 1-minute bars, then daily bars and RSI features; returns the load figures."""
    from storage.hot import BARS_INTRADAY, upsert_frame

    conn.execute(TICKS_FUNCTION)  # type: ignore[arg-type]  # a constant

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
    for table in (
        "market.bars_intraday_store",
        "market.bars_daily_store",
        "market.latest_bars",
        "features.bar_features",
    ):
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


@dataclass(frozen=True)
class ScannerRun:
    """One pass over the scanners: p50/p95 end to end and server-side, rows, and a digest of the rows."""

    latencies_ms: dict[str, tuple[float, float]]
    server_latencies_ms: dict[str, tuple[float, float]]
    rows: dict[str, int]
    digests: dict[str, str]


def measure_scanners(
    conn: psycopg.Connection, sessions: int, repeats: int | None = None, *, references: bool = True
) -> ScannerRun:
    """Per scanner, after two warm-up calls: p50/p95 end to end (the call and every row fetched into
    Python in the binary protocol, what a scanner process sees) and server-side (``SELECT count(*)``
    over the same call, no rows sent), its row count and :func:`rows_digest`. ``references=False``
    measures the product's scanners only."""
    latencies: dict[str, tuple[float, float]] = {}
    server: dict[str, tuple[float, float]] = {}
    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    for scanner in scanners(sessions):
        if scanner.reference and not references:
            continue
        query = scanner.sql
        counted = f"SELECT count(*) FROM ({query}) AS q"
        times = repeats or scanner.repeats
        for _ in range(2):
            fetched = _fetch(conn, query)
        counts[scanner.name], digests[scanner.name] = len(fetched), rows_digest(fetched)
        latencies[scanner.name] = percentiles([_timed(lambda q=query: _fetch(conn, q))[0] for _ in range(times)])
        server[scanner.name] = percentiles(
            [_timed(lambda q=counted: conn.execute(q).fetchone())[0] for _ in range(times)]  # type: ignore[misc]
        )
    return ScannerRun(latencies, server, counts, digests)


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


def timescale_info(conn: psycopg.Connection) -> dict[str, str | None]:
    """The TimescaleDB version of the bench database and its edition (``SHOW timescaledb.license``)."""
    from db.migrate import running_edition

    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return {"version": row[0] if row else None, "edition": running_edition(conn)}


def _one(conn: psycopg.Connection, query: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]  # built from constants
    assert row is not None
    return row[0]


def _chunks(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT c::text FROM show_chunks(%s::regclass) c ORDER BY 1", (table,))]


def compress_tables(conn: psycopg.Connection, tables: Sequence[str] = COMPRESSED_TABLES) -> dict[str, dict[str, Any]]:
    """Every chunk of each hypertable through ``compress_chunk`` (what the policy's job calls), one
    chunk at a time as the job does, then ANALYZE (as autovacuum would). Per table: bytes before and
    after by ``hypertable_size`` (rows, indexes, TOAST: what the table occupies) and by
    ``hypertable_compression_stats`` (the chunks' own bytes as TimescaleDB counts them), seconds, and
    the row count before and after, which must agree."""
    figures: dict[str, dict[str, Any]] = {}
    for table in tables:
        rows_before = _one(conn, f"SELECT count(*) FROM {table}")
        bytes_before = _one(conn, "SELECT hypertable_size(%s::regclass)", (table,))
        chunk_seconds = [
            _timed(
                lambda c=chunk: conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (c,))
            )[0]
            for chunk in _chunks(conn, table)
        ]
        conn.execute(f"ANALYZE {table}")  # type: ignore[arg-type]  # a constant
        rows_after = _one(conn, f"SELECT count(*) FROM {table}")
        if rows_after != rows_before:
            raise RuntimeError(f"{table} has {rows_after} rows after compression, {rows_before} before")
        bytes_after = _one(conn, "SELECT hypertable_size(%s::regclass)", (table,))
        stats = conn.execute(
            "SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes,"
            " after_compression_total_bytes FROM hypertable_compression_stats(%s::regclass)",
            (table,),
        ).fetchone()
        assert stats is not None
        seconds = sum(chunk_seconds)
        figures[table] = {
            "rows": rows_after,
            "chunks": stats[0],
            "compressed_chunks": stats[1],
            "hypertable_bytes_before": bytes_before,
            "hypertable_bytes_after": bytes_after,
            "ratio": round(bytes_before / bytes_after, 2) if bytes_after else None,
            "chunk_bytes_before": stats[2],
            "chunk_bytes_after": stats[3],
            "chunk_ratio": round(stats[2] / stats[3], 2) if stats[2] and stats[3] else None,
            "seconds": round(seconds, 3),
            "rows_per_s": round(rows_after / seconds) if seconds > 0 else None,
            "seconds_per_chunk_p50": round(statistics.median(chunk_seconds), 3) if chunk_seconds else None,
        }
    return figures


def decompress_tables(conn: psycopg.Connection, tables: Sequence[str] = COMPRESSED_TABLES) -> int:
    """Decompress what a ``--keep`` run left compressed, so ``--reuse`` measures uncompressed chunks
    first again; returns the number of chunks decompressed."""
    done = 0
    for table in tables:
        schema, name = table.split(".")
        done += _one(
            conn,
            "SELECT count(decompress_chunk(format('%%I.%%I', chunk_schema, chunk_name)::regclass))"
            " FROM timescaledb_information.chunks"
            " WHERE hypertable_schema = %s AND hypertable_name = %s AND is_compressed",
            (schema, name),
        )
        conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]  # a constant
    return done


def ingest_with_and_without_policy(
    conn: psycopg.Connection, settings: Settings, symbols: int, first_session: int, job_timeout_s: float = 300.0
) -> dict[str, Any]:
    """A day of 1-minute bars of every symbol through the hot writer (:func:`storage.hot.upsert_frame`,
    what the ingest flow calls) into ``market.bars_intraday``, four times: without a compression
    policy, with one (``add_compression_policy`` after ``storage.data_lake.compression_after_days``,
    as the product sets it), with, without (:data:`INGEST_ORDER`). Only the upsert is timed.

    Each day is a future session (:func:`future_sessions`), so the policy never compresses the chunk
    being written, as in production. What the policy does in production is compress one day's chunk
    a day, at a time of its own: the worst case for ingest is that run landing during the day's
    ingest. So before each run with the policy the oldest chunk is decompressed (untimed) and the
    job is started (``alter_job(next_start => now())``): its compression of that chunk overlaps the
    timed ingest; the bench waits for the job to finish before going on and reports when it did.
    Afterwards the days' chunks are dropped and ``market.latest_bars`` restored, so the bench's table
    holds the same bars as before (every old chunk compressed again)."""
    from storage.hot import BARS_INTRADAY, upsert_frame

    table = BARS_INTRADAY.name
    after_days = settings.storage.data_lake.compression_after_days
    days = future_sessions(len(INGEST_ORDER), datetime.now(UTC).date())
    oldest = _one(
        conn,
        "SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
        " WHERE format('%%I.%%I', hypertable_schema, hypertable_name) = %s ORDER BY range_start LIMIT 1",
        (table,),
    )
    conn.execute("CREATE TEMP TABLE bench_latest_bars AS SELECT * FROM market.latest_bars")
    runs: list[dict[str, Any]] = []
    job: int | None = None
    try:
        for i, (policy, (open_utc, close_utc)) in enumerate(zip(INGEST_ORDER, days, strict=True)):
            bars = synthetic_session(symbols, first_session + i, open_utc, close_utc)
            runs_before = 0
            if policy:
                conn.execute("SELECT decompress_chunk(%s::regclass, if_compressed => true)", (oldest,))
                if job is None:
                    job = _one(
                        conn,
                        "SELECT add_compression_policy(%s::regclass, compress_after => make_interval(days => %s))",
                        (table, after_days),
                    )
                runs_before = (_policy_job_stats(conn, job) or {}).get("runs") or 0
                conn.execute("SELECT alter_job(%s, next_start => now())", (job,))
            elif job is not None:
                conn.execute("SELECT remove_compression_policy(%s::regclass)", (table,))
                job = None
            began = time.perf_counter()
            result = upsert_frame(conn, bars, BARS_INTRADAY)
            run: dict[str, Any] = {
                "policy": policy,
                "rows": result.inserted,
                "seconds": time.perf_counter() - began,
                "day": open_utc.date(),
            }
            if job is not None:
                stats = _wait_for_job(conn, job, runs_before, began, job_timeout_s)
                # A run that met the ingest's lock on the hypertable skips the chunk (TimescaleDB's
                # policy does not wait for locks); the next run compresses it: started at once here,
                # untimed, and reported (`reruns`).
                stats["reruns"] = 0
                while stats["finished"] and not _is_compressed(conn, oldest) and stats["reruns"] < 2:
                    runs_now = stats.get("runs") or 0
                    conn.execute("SELECT alter_job(%s, next_start => now())", (job,))
                    stats = {**_wait_for_job(conn, job, runs_now, began, job_timeout_s), "reruns": stats["reruns"] + 1}
                run["policy_job"] = stats
                run["policy_job"]["compressed_oldest_chunk"] = _is_compressed(conn, oldest)
            runs.append(run)
    finally:
        if job is not None:
            conn.execute("SELECT remove_compression_policy(%s::regclass, if_exists => true)", (table,))
        if not _is_compressed(conn, oldest):  # the job did not get to it (or failed before)
            conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (oldest,))
        conn.execute("SELECT drop_chunks(%s::regclass, newer_than => %s::timestamptz)", (table, days[0][0].date()))
        with conn.transaction():
            conn.execute("DELETE FROM market.latest_bars")
            conn.execute("INSERT INTO market.latest_bars SELECT * FROM bench_latest_bars")
        conn.execute("DROP TABLE bench_latest_bars")
    return {**ingest_comparison(runs), "via": "storage.hot.upsert_frame", "compress_after_days": after_days}


def _is_compressed(conn: psycopg.Connection, chunk: str) -> bool:
    return bool(
        _one(
            conn,
            "SELECT is_compressed FROM timescaledb_information.chunks"
            " WHERE format('%%I.%%I', chunk_schema, chunk_name) = %s",
            (chunk,),
        )
    )


def _wait_for_job(
    conn: psycopg.Connection, job: int, runs_before: int, began: float, timeout_s: float
) -> dict[str, Any]:
    """Wait until the job has run once more than ``runs_before``; its stats and when it was done,
    in seconds after ``began`` (``time.perf_counter()``), or ``finished: False`` after ``timeout_s``."""
    deadline = time.perf_counter() + timeout_s
    stats = _policy_job_stats(conn, job) or {}
    while (stats.get("runs") or 0) <= runs_before and time.perf_counter() < deadline:
        time.sleep(0.25)
        stats = _policy_job_stats(conn, job) or {}
    finished = (stats.get("runs") or 0) > runs_before
    return {**stats, "finished": finished, "done_after_s": round(time.perf_counter() - began, 1) if finished else None}


def _policy_job_stats(conn: psycopg.Connection, job: int) -> dict[str, Any] | None:
    """What the policy's job did so far (``timescaledb_information.job_stats``) and its last error."""
    row = conn.execute(
        "SELECT total_runs, total_successes, total_failures, extract(epoch FROM last_run_duration),"
        " (SELECT err_message FROM timescaledb_information.job_errors e WHERE e.job_id = s.job_id"
        "   ORDER BY finish_time DESC LIMIT 1)"
        " FROM timescaledb_information.job_stats s WHERE job_id = %s",
        (job,),
    ).fetchone()
    if row is None:
        return None
    return {
        "job_id": job,
        "runs": row[0],
        "successes": row[1],
        "failures": row[2],
        "last_run_seconds": None if row[3] is None else round(float(row[3]), 3),
        "last_error": row[4],
    }


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
    skip_compression: bool = False,
    reuse: bool = False,
) -> dict[str, Any]:
    """The whole benchmark on the running stack; drops its database and lake objects unless ``keep``.
    ``repeats`` overrides every scanner's number of timed calls (tiny test runs).
    ``skip_tiering``: no tiering and no cold read (the scanners' figures in minutes instead of
    ~15 at full size; the bars stay in the database, so ``keep`` leaves them for another run).
    ``skip_compression``: no native compression, no scanners on compressed chunks, no ingest with a
    policy (on the Apache edition these parts report :data:`NOT_AVAILABLE` instead). ``reuse``:
    measure on the bars a ``keep`` run left (no load; ``symbols``/``sessions`` must match that run;
    chunks it left compressed are decompressed first) and tier nothing; with ``keep`` again they
    stay for the next ``reuse``."""
    from db.connect import database_connection
    from db.migrate import FULL_EDITION

    if symbols < 1 or sessions < 2:
        raise ValueError(f"need at least 1 symbol and 2 sessions, got {symbols} and {sessions}")
    days = session_days(sessions)
    tag = secrets.token_hex(4)
    prefix = ""
    tiered: dict[str, Any] | None = None
    cold_ms: float | None = None
    load_figures: dict[str, Any] = {}
    compressed: dict[str, Any] | None = None
    load_averages: dict[str, list[float]] = {}
    if reuse:
        check_reusable(settings, symbols)
    try:
        if not reuse:
            create_database(settings)
        with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            timescale = timescale_info(conn)
            full_edition = timescale["edition"] == FULL_EDITION
            load_averages["start"] = _load_average()
            if not reuse:
                load_figures = load(conn, symbols, days)
            elif full_edition:
                decompress_tables(conn)
            rows = _one(conn, "SELECT count(*) FROM market.bars_intraday")
            hot_bytes = _one(conn, "SELECT hypertable_size('market.bars_intraday_store')")
            load_averages["scanners"] = _load_average()
            uncompressed = measure_scanners(conn, sessions, repeats)
            symbol = symbol_names(symbols)[symbols // 2]
            start, end = days[0][0] - timedelta(hours=1), days[-1][1] + timedelta(hours=1)
            hot_ms, hot_rows = hot_read(conn, symbol, start, end)
            if full_edition and not skip_compression:
                compressed = compressed_parts(conn, settings, symbols, sessions, repeats, symbol, start, end)
                load_averages.update(compressed.pop("load_averages"))
                if compressed["symbol_month_rows"] != hot_rows:
                    raise RuntimeError(
                        f"compressed read returned {compressed['symbol_month_rows']} rows, hot {hot_rows}"
                    )
            if not (skip_tiering or reuse):
                load_averages["tiering"] = _load_average()
                tiered, prefix = tier(conn, settings, tag)
                tiered["read_compressed_chunks"] = compressed is not None
                cold_ms, cold_rows = cold_read(settings, prefix, symbol, start, end)
                if cold_rows != hot_rows:
                    raise RuntimeError(f"cold read returned {cold_rows} rows of {symbol}, hot {hot_rows}")
            load_averages["end"] = _load_average()
    finally:
        if not keep:
            drop_database(settings)
            if prefix:
                forget_lake_objects(settings, prefix)
    if compressed is None:
        why = "skipped (--skip-compression)" if full_edition else NOT_AVAILABLE.format(edition=timescale["edition"])
        compressed = {"available": False, "reason": why}
    return summarize(
        {
            "latencies_ms": uncompressed.latencies_ms,
            "server_latencies_ms": uncompressed.server_latencies_ms,
            "scanner_rows": uncompressed.rows,
            "scanner_digests": uncompressed.digests,
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
                "compressed_ms": compressed.get("symbol_month_ms"),
                "cold_ms": None if cold_ms is None else round(cold_ms, 2),
            },
            "compressed": compressed,
            "timescaledb": timescale,
            "cpus": os.cpu_count(),
            "load_average_1min": load_averages["scanners"][0],
            "load_averages": load_averages,
        }
    )


def _load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages now (other work on the machine shows here)."""
    return [round(x, 2) for x in os.getloadavg()]


def compressed_parts(
    conn: psycopg.Connection,
    settings: Settings,
    symbols: int,
    sessions: int,
    repeats: int | None,
    symbol: str,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """The full edition's parts, after the uncompressed ones: compress every chunk the scanners read,
    the scanners again on compressed chunks (the product's, not the references), the symbol-month
    read from compressed chunks, then ingest with and without a compression policy."""
    load_averages = {"compression": _load_average()}
    tables = compress_tables(conn)
    load_averages["compressed_scanners"] = _load_average()
    scans = measure_scanners(conn, sessions, repeats, references=False)
    compressed_ms, compressed_rows = hot_read(conn, symbol, start, end)
    load_averages["ingest"] = _load_average()
    ingest = ingest_with_and_without_policy(conn, settings, symbols, sessions)
    return {
        "available": True,
        "tables": tables,
        "latencies_ms": scans.latencies_ms,
        "server_latencies_ms": scans.server_latencies_ms,
        "rows": scans.rows,
        "digests": scans.digests,
        "symbol_month_ms": round(compressed_ms, 2),
        "symbol_month_rows": compressed_rows,
        "ingest": ingest,
        "load_averages": load_averages,
    }


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
