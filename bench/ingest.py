"""Ingest benchmark: end-to-end bars/s through the pipeline against its references, in one run.

Measured on the running stack (``marketpipe up``), on the same machine, one part after another:

- ``end_to_end``: ``symbols`` x ``sessions`` of 1-minute bars (default 100 x 20, about 780k bars)
  from the market sandbox through :func:`flows.ingestion.ingest_flow` with ``incremental=False``:
  fetch through the Polygon adapter, raw zone, manifest, standardize, validate, hot store. The
  CPU time every process of the stack spent meanwhile (this one, sandbox, database, lake,
  Prefect server; from /proc) gives the best ratio that work allows on this machine's cores
  (``upper_bound_ratio``, see :func:`cpu_bounds`). The Prefect server records the run's events
  after the flow returned: the bench waits for it to go quiet (``prefect_settle_seconds``),
  counts that work as the run's CPU, and only then measures the plain path.
- ``plain``: the same work on other fresh symbols by calling the plain functions the flow wraps
  (``collect_symbol``, ``process_symbol_pending``) with the same parallelism and no
  Prefect at all (in-process rate limiter, no tasks, artifacts or API calls). Prefect's overhead is
  ``(flow_s_per_bar - plain_s_per_bar) / flow_s_per_bar``, floored at 0, each path's quicker of two
  interleaved rounds (flow, plain, flow, plain; one run of either moved by more than Prefect costs).
- ``writer`` vs ``psql_copy``: :func:`bench.hot_writer.run` with the same number of rows.
- ``naive``: the vendor SDK (``massive.RESTClient.list_aggs``) in a loop, a pandas frame per symbol
  and ``DataFrame.to_sql(if_exists="append")`` through SQLAlchemy into a scratch table, on a subset
  of symbols, per bar.

Every part uses symbols never stored before (a random run tag in the name) and deletes what it
stored afterwards: bars, raw-page manifest rows, watermarks, dead letters, raw-zone objects.

- ``latency``: a vendor as users meet it. The sandbox's network model is turned on for Polygon
  (:data:`VENDOR_LATENCY`: log-normal latency, 80 ms median, a 2 % tail 1 s slower; and the plan's
  rate limit, ``rate_limits.polygon``, enforced with 429s), then ``latency_symbols`` fresh symbols
  of ``latency_sessions`` sessions each (one page per symbol) go through the flow, and the naive
  loop runs under the same latency. ``rate_limit_utilization`` is the requests the sandbox served
  over the seconds from the run's first request to its last, against the limit;
  ``end_to_end_vs_naive_latency`` the bars/s ratio. With ``latency_workers`` N > 1 the flow part
  is N flows in processes of their own, each a shard of the symbols, sharing the rate limit through
  the Prefect server as the workers of a process pool do (``refused_429`` shows whether the shared
  limit held).

CPU: ``cpu_vs_writer`` is the whole stack's CPU per bar in the end-to-end run over the hot
writer's alone (this process + the database) storing as many rows into ``market.bars_intraday``
(its triggers and the continuous aggregates' invalidation included: what storing costs; the least
of three rounds, see :func:`writer_reference`);
``cpu_vs_writer_without_vendor`` leaves the sandbox's CPU out (the vendor's, elsewhere in production);
``cpu_vs_bare_writer`` the same against the writer into a bare copy of the table (no trigger, no
aggregate: the writer-vs-psql tables), for comparison. ``prefect_cpu_fraction`` is the Prefect
server's and its database's share of the end-to-end run's CPU. The end-to-end run is the
process's second: a 2-symbol run first pays a flow-run process's one-time costs (imports, Prefect's
client, first connections, numba's cached code: ``start_up``), as the writer's reference is
measured warm; ``cpu_vs_writer_cold`` counts them in.

Targets: writer >= 0.8x psql copy; Prefect overhead < 10 % of the wall time and < 10 % of the CPU;
rate-limit utilization >= 90 %; end-to-end >= 10x naive under latency; CPU per bar <= 3x the
writer's. No target counts as met when the 1-minute load average before the run was above
:data:`IDLE_LOAD` (the figures are then not evidence: another job shared the cores). Usage:
``python -m bench.ingest [--symbols N] [--sessions N] [--json]``. Not part of the test suite
(``tests/performance/test_bench_ingest.py`` runs it small).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import secrets
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core.heap import frozen_heap
from core.settings import Settings, load_settings

T = TypeVar("T")

TIMEFRAME = "1min"
SOURCE = "polygon"
FIRST_DAY = date(2024, 3, 1)  # inside every sandbox market (as_of is today unless pinned)
NAIVE_TABLE = "bench_naive_bars"
TARGET_WRITER_VS_PSQL = 0.8
TARGET_PREFECT_OVERHEAD = 0.10
TARGET_PREFECT_CPU_FRACTION = 0.10
TARGET_RATE_LIMIT_UTILIZATION = 0.90
TARGET_END_TO_END_VS_NAIVE_LATENCY = 10.0
TARGET_CPU_VS_WRITER = 3.0
#: The 1-minute load average (on this machine's cores) above which a run is not an idle-machine run.
IDLE_LOAD = 1.0
#: The sandbox's network model during the latency part (see sandbox.latency).
VENDOR_LATENCY: dict[str, Any] = {"median_ms": 80.0, "sigma": 0.5, "tail_fraction": 0.02, "tail_ms": 1000.0, "seed": 7}
_TAG_ALPHABET = string.ascii_uppercase + string.digits


# ---------------------------------------------------------------------------------------------
# Pure helpers


def bench_symbols(prefix: str, tag: str, count: int) -> list[str]:
    """``count`` symbols ``{prefix}{tag}{index}``, valid for the pipeline (at most 6 characters)."""
    width = max(2, len(str(count - 1)))
    names = [f"{prefix}{tag}{i:0{width}d}" for i in range(count)]
    if len(names[-1]) > 6:
        raise ValueError(f"{count} symbols with prefix {prefix!r} and tag {tag!r} do not fit in 6 characters")
    return names


def session_range(sessions: int, first_day: date = FIRST_DAY) -> tuple[date, date]:
    """The first and last day of ``sessions`` NYSE sessions starting at ``first_day``."""
    from core.calendar import nyse_sessions

    schedule = nyse_sessions(first_day, first_day + timedelta(days=2 * sessions + 14))
    days = schedule.dates.astype("datetime64[D]").astype(object).tolist()
    if len(days) < sessions:
        raise ValueError(f"the calendar has only {len(days)} sessions after {first_day}")
    return days[0], days[sessions - 1]


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def overhead_fraction(flow_s: float, flow_bars: int, plain_s: float, plain_bars: int) -> float:
    """Prefect's share of the flow's wall time, per bar: ``max(0, (flow - plain) / flow)``."""
    flow_per_bar, plain_per_bar = flow_s / flow_bars, plain_s / plain_bars
    return max(0.0, (flow_per_bar - plain_per_bar) / flow_per_bar)


def cpu_bounds(bars: int, cpu_seconds: dict[str, float], cores: int, naive_bars_per_s: float) -> dict[str, Any]:
    """What the end-to-end run's CPU work allows at best on ``cores`` cores.

    ``cpu_seconds`` is the CPU each process spent during the run (this process, the sandbox, the
    database, the lake, the Prefect server and its database backends). Even with every core busy all the time, the run
    cannot take less than their sum divided by the cores: ``upper_bound_ratio`` is the ratio to
    the naive baseline at that speed. ``vendor_and_store_bound_ratio`` counts only the sandbox
    serving the pages and the database storing the rows: the ratio if everything of ours
    (parsing, raw zone, validation, Prefect) cost nothing.
    """
    total = sum(cpu_seconds.values())
    floor = cpu_seconds.get("sandbox", 0.0) + cpu_seconds.get("postgres", 0.0)

    def ratio(cpu: float) -> float | None:
        return round(per_second(bars, cpu / cores) / naive_bars_per_s, 2) if cpu > 0 and naive_bars_per_s else None

    return {
        "end_to_end_cpu_seconds": {name: round(value, 2) for name, value in cpu_seconds.items()},
        "end_to_end_cpu_seconds_total": round(total, 2),
        "cpu_bound_bars_per_s": round(per_second(bars, total / cores)) if total > 0 else None,
        "upper_bound_ratio": ratio(total),
        "vendor_and_store_bound_ratio": ratio(floor),
    }


def utilization(before: dict[str, int], after: dict[str, int], limit: float) -> dict[str, Any]:
    """Requests a vendor served between two of the sandbox's per-second counts, against ``limit``.

    ``utilization`` is the rate sustained over the run: the requests of the whole seconds between
    the first request's second and the last's, which are partial (a run starts and ends somewhere
    inside them; with them, 400 requests at exactly the limit would read 89 %).
    ``utilization_with_edges`` counts both edge seconds as whole ones. Runs of under three
    seconds have no interior: both are then the edge-inclusive figure."""
    served = {int(second): count - before.get(second, 0) for second, count in after.items()}
    busy = sorted(second for second, count in served.items() if count > 0)
    if not busy:
        return {"requests": 0, "seconds": 0, "requests_per_second": 0.0, "utilization": 0.0}
    span = busy[-1] - busy[0] + 1
    requests = sum(served[second] for second in busy)
    with_edges = requests / (span * limit)
    interior = range(busy[0] + 1, busy[-1])
    sustained = sum(served.get(second, 0) for second in interior) / (len(interior) * limit) if len(interior) else None
    return {
        "requests": requests,
        "seconds": span,
        "per_second": [served.get(second, 0) for second in range(busy[0], busy[-1] + 1)],
        "requests_per_second": round(requests / span, 2),
        "sustained_requests_per_second": round(sustained * limit, 2) if sustained is not None else None,
        "utilization": round(sustained if sustained is not None else with_edges, 4),
        "utilization_with_edges": round(with_edges, 4),
    }


def summarize(parts: dict[str, Any], cpus: int | None) -> dict[str, Any]:
    """The report: rates, ratios, targets and whether each is met (never on a busy machine)."""
    e2e = per_second(parts["end_to_end_bars"], parts["end_to_end_seconds"])
    naive = per_second(parts["naive_bars"], parts["naive_seconds"])
    writer, psql = parts["writer_rows_per_s"], parts["psql_copy_rows_per_s"]
    rounds = parts.get("overhead_rounds") or [
        (parts["end_to_end_seconds"], parts["end_to_end_bars"], parts["plain_seconds"], parts["plain_bars"])
    ]
    # each path's quickest round (seconds per bar) against the other's
    flow_best = min(rounds, key=lambda r: r[0] / r[1])
    plain_best = min(rounds, key=lambda r: r[2] / r[3])
    overhead = overhead_fraction(flow_best[0], flow_best[1], plain_best[2], plain_best[3])
    cpu = parts.get("end_to_end_cpu", {})
    cpu_total = sum(cpu.values())
    prefect_cpu = (cpu.get("prefect", 0.0) + cpu.get("prefect_db", 0.0)) / cpu_total if cpu_total else None
    per_bar = cpu_total / parts["end_to_end_bars"] if cpu_total else None
    hot_writer = parts.get("hot_store_writer", {})
    writer_cpu = hot_writer.get("cpu_seconds")
    bare_cpu = parts.get("writer_cpu_seconds")
    cpu_vs_writer = per_bar / (writer_cpu / hot_writer["rows"]) if per_bar and writer_cpu else None
    cpu_vs_bare_writer = per_bar / (bare_cpu / parts["writer_rows"]) if per_bar and bare_cpu else None
    # the same without the sandbox: the vendor's CPU, not on the pipeline's machine in production
    without_vendor = (cpu_total - cpu.get("sandbox", 0.0)) / parts["end_to_end_bars"] if cpu_total else None
    cpu_vs_writer_without_vendor = (
        without_vendor / (writer_cpu / hot_writer["rows"]) if without_vendor and writer_cpu else None
    )
    # the same with the start-up run's CPU and bars counted in (one process doing both runs, cold)
    start = parts.get("start_up") or {}
    cold_bars = parts["end_to_end_bars"] + start.get("bars", 0)
    cold_per_bar = (cpu_total + sum(start.get("cpu_seconds", {}).values())) / cold_bars if cpu_total else None
    cpu_vs_writer_cold = cold_per_bar / (writer_cpu / hot_writer["rows"]) if cold_per_bar and writer_cpu else None
    latency = parts.get("latency", {})
    lat_e2e = per_second(latency.get("bars", 0), latency.get("flow_seconds", 0.0)) if latency else None
    lat_naive = per_second(latency.get("naive_bars", 0), latency.get("naive_seconds", 0.0)) if latency else None
    vs_naive_latency = lat_e2e / lat_naive if lat_e2e and lat_naive else None
    rate_use = latency.get("utilization")
    values: dict[str, float | None] = {
        "writer_vs_psql": writer / psql,
        "prefect_overhead_fraction": overhead,
        "prefect_cpu_fraction": prefect_cpu,
        "rate_limit_utilization": rate_use,
        "end_to_end_vs_naive_latency": vs_naive_latency,
        "cpu_vs_writer": cpu_vs_writer,
    }
    goals = {
        "writer_vs_psql": (">=", TARGET_WRITER_VS_PSQL),
        "prefect_overhead_fraction": ("<", TARGET_PREFECT_OVERHEAD),
        "prefect_cpu_fraction": ("<", TARGET_PREFECT_CPU_FRACTION),
        "rate_limit_utilization": (">=", TARGET_RATE_LIMIT_UTILIZATION),
        "end_to_end_vs_naive_latency": (">=", TARGET_END_TO_END_VS_NAIVE_LATENCY),
        "cpu_vs_writer": ("<=", TARGET_CPU_VS_WRITER),
    }
    load = parts.get("load_average", {})
    idle = load.get("before", [0.0])[0] <= IDLE_LOAD

    def met(name: str) -> bool:
        value = values[name]
        op, goal = goals[name]
        if value is None:
            return False
        return value >= goal if op == ">=" else value < goal if op == "<" else value <= goal

    targets = {
        name: {"target": f"{op} {goal}", "value": _rounded(values[name]), "met": met(name) and idle}
        for name, (op, goal) in goals.items()
    }
    return {
        "bars": parts["end_to_end_bars"],
        "symbols": parts["symbols"],
        "sessions": parts["sessions"],
        "run_tag": parts["run_tag"],
        "end_to_end_bars_per_s": round(e2e),
        "end_to_end_seconds": round(parts["end_to_end_seconds"], 3),
        "plain_bars": parts["plain_bars"],
        "plain_bars_per_s": round(per_second(parts["plain_bars"], parts["plain_seconds"])),
        "plain_seconds": round(parts["plain_seconds"], 3),
        "overhead_rounds": [
            {"flow_seconds": round(f, 3), "flow_bars": fb, "plain_seconds": round(p, 3), "plain_bars": pb}
            for f, fb, p, pb in rounds
        ],
        "plain_collect_seconds": round(parts["plain_collect_seconds"], 3),
        "plain_process_seconds": round(parts["plain_process_seconds"], 3),
        "plain_processing_batches": parts.get("plain_processing_batches"),
        "prefect_overhead_fraction": round(overhead, 4),
        "prefect_cpu_fraction": _rounded(prefect_cpu),
        "writer_rows": parts["writer_rows"],
        "writer_rows_per_s": writer,
        "psql_copy_rows_per_s": psql,
        "writer_seconds": parts["writer_seconds"],
        "psql_copy_seconds": parts["psql_copy_seconds"],
        "writer_vs_psql": round(writer / psql, 3),
        # the hot writer alone on as many rows, into market.bars_intraday (triggers, aggregates' invalidation)
        "hot_store_writer": hot_writer,
        "writer_cpu_us_per_bar": round(1e6 * writer_cpu / hot_writer["rows"], 2) if writer_cpu else None,
        "end_to_end_cpu_us_per_bar": round(1e6 * per_bar, 2) if per_bar else None,
        "cpu_vs_writer": _rounded(cpu_vs_writer),
        # ... and into a bare copy of the table (the writer-vs-psql tables: no trigger, no aggregate)
        "bare_writer_cpu_us_per_bar": round(1e6 * bare_cpu / parts["writer_rows"], 2) if bare_cpu else None,
        "cpu_vs_bare_writer": _rounded(cpu_vs_bare_writer),
        "cpu_vs_writer_without_vendor": _rounded(cpu_vs_writer_without_vendor),
        # a process's one-time costs, measured on the start-up run (see start_up), and the ratio
        # with them counted as the end-to-end run's
        "start_up": start or None,
        "cpu_vs_writer_cold": _rounded(cpu_vs_writer_cold),
        "naive_bars": parts["naive_bars"],
        "naive_symbols": parts["naive_symbols"],
        "naive_bars_per_s": round(naive),
        "naive_seconds": round(parts["naive_seconds"], 3),
        # on loopback (no latency): both CPU-bound, no target (see end_to_end_vs_naive_latency)
        "end_to_end_vs_naive": round(e2e / naive, 2),
        # the hot writer alone, on as many rows: no end-to-end run can store faster than it writes
        "writer_bound_ratio": round(writer / naive, 2),
        "prefect_settle_seconds": round(parts.get("prefect_settle_seconds", 0.0), 1),
        "postgres_settle_seconds": round(parts.get("postgres_settle_seconds", 0.0), 1),
        "vacuum_seconds": round(parts.get("vacuum_seconds", 0.0), 2),
        **cpu_bounds(parts["end_to_end_bars"], cpu, cpus or 1, naive),
        "latency": {
            **latency,
            "bars_per_s": round(lat_e2e) if lat_e2e else None,
            "naive_bars_per_s": round(lat_naive) if lat_naive else None,
        },
        "rate_limit_utilization": rate_use,
        "end_to_end_vs_naive_latency": _rounded(vs_naive_latency, 2),
        "load_average": {**load, "idle_limit": IDLE_LOAD, "idle": idle},
        "cpus": cpus,
        "targets": targets,
        "targets_met": all(t["met"] for t in targets.values()),
    }


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def render_table(report: dict[str, Any]) -> str:
    """The human-readable form: one line per measure, its reference and whether the target is met."""
    targets = report["targets"]

    def met(name: str) -> str:
        return "met" if targets[name]["met"] else "NOT met"

    latency = report["latency"]

    def judged(name: str, shown: str) -> str:
        return f"{targets[name]['target']}: {met(name)} ({shown})"

    rows = [
        ("measure", "result", "reference / ratio", "target"),
        (
            f"rate limit, under latency ({latency.get('workers', 1)} worker(s))",
            f"{latency.get('requests_per_second', 0)} req/s, {latency.get('refused_429', 0)} refused",
            f"limit {latency.get('rate_limit')} req/s",
            judged("rate_limit_utilization", f"{100 * (report['rate_limit_utilization'] or 0):.1f} %"),
        ),
        (
            "end-to-end, under latency",
            f"{latency.get('bars_per_s') or 0:,} bars/s",
            f"naive {latency.get('naive_bars_per_s') or 0:,} bars/s",
            judged("end_to_end_vs_naive_latency", f"{report['end_to_end_vs_naive_latency']}x"),
        ),
        (
            "CPU per bar (whole stack)",
            f"{report['end_to_end_cpu_us_per_bar']} us",
            f"hot writer alone {report['writer_cpu_us_per_bar']} us"
            f" (bare table {report['bare_writer_cpu_us_per_bar']} us)",
            judged("cpu_vs_writer", f"{report['cpu_vs_writer']}x"),
        ),
        (
            "Prefect overhead",
            f"{100 * report['prefect_overhead_fraction']:.1f} % of flow time",
            f"plain functions {report['plain_bars_per_s']:,} bars/s",
            judged("prefect_overhead_fraction", f"{100 * report['prefect_overhead_fraction']:.1f} %"),
        ),
        (
            "Prefect CPU",
            f"{100 * (report['prefect_cpu_fraction'] or 0):.1f} % of the run's CPU",
            "server + its database",
            judged("prefect_cpu_fraction", f"{100 * (report['prefect_cpu_fraction'] or 0):.1f} %"),
        ),
        (
            "hot writer",
            f"{report['writer_rows_per_s']:,} rows/s",
            f"psql \\copy {report['psql_copy_rows_per_s']:,} rows/s",
            judged("writer_vs_psql", f"{report['writer_vs_psql']}x"),
        ),
        (
            "end-to-end, loopback",
            f"{report['end_to_end_bars_per_s']:,} bars/s",
            f"naive {report['naive_bars_per_s']:,} bars/s -> {report['end_to_end_vs_naive']}x",
            "no target (both CPU-bound)",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        f"{report['bars']:,} bars ({report['symbols']} symbols x {report['sessions']} sessions of 1-minute "
        f"bars) in {report['end_to_end_seconds']} s; plain path {report['plain_bars']:,} bars in "
        f"{report['plain_seconds']} s; naive {report['naive_bars']:,} bars ({report['naive_symbols']} "
        f"symbols) in {report['naive_seconds']} s; writer {report['writer_seconds']} s vs psql "
        f"{report['psql_copy_seconds']} s; {report['cpus']} CPUs"
    )
    load = report["load_average"]
    lines.append(
        f"load average before the run {load.get('before')}, after {load.get('after')}: "
        + ("idle" if load["idle"] else f"NOT idle (> {load['idle_limit']}): no target counts as met")
    )
    if report.get("upper_bound_ratio") is not None:
        cpu = ", ".join(f"{name} {value} s" for name, value in report["end_to_end_cpu_seconds"].items())
        lines.append(
            f"end-to-end CPU: {cpu} (total {report['end_to_end_cpu_seconds_total']} s): at best "
            f"{report['cpu_bound_bars_per_s']:,} bars/s on {report['cpus']} cores -> at most "
            f"{report['upper_bound_ratio']}x naive; the sandbox and the database alone allow "
            f"{report['vendor_and_store_bound_ratio']}x; the hot writer alone "
            f"{report['writer_bound_ratio']}x"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The measured parts (I/O)


def _timed(action: Callable[[], T]) -> tuple[float, T]:
    began = time.perf_counter()
    value = action()
    return time.perf_counter() - began, value


def _unused_tag(settings: Settings, prefixes: Sequence[str]) -> str:
    """A two-character run tag no stored symbol of these prefixes uses yet."""
    from db.connect import database_connection

    with database_connection(settings) as conn:
        for _ in range(50):
            tag = "".join(secrets.choice(_TAG_ALPHABET) for _ in range(2))
            patterns = [f"{p}{tag}%" for p in prefixes]
            used = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM ops.raw_pages WHERE symbol LIKE ANY(%(p)s)) "
                "OR EXISTS (SELECT 1 FROM ops.watermarks WHERE symbol LIKE ANY(%(p)s))",
                {"p": patterns},
            ).fetchone()[0]
            if not used:
                return tag
    raise RuntimeError("no unused benchmark run tag found; delete old benchmark symbols")


def stored_bars(settings: Settings, symbols: Sequence[str]) -> int:
    from db.connect import database_connection

    with database_connection(settings) as conn:
        return conn.execute(
            "SELECT count(*) FROM market.bars_intraday WHERE symbol = ANY(%s) AND timeframe = %s",
            (list(symbols), TIMEFRAME),
        ).fetchone()[0]


def delete_symbols(settings: Settings, symbols: Sequence[str]) -> None:
    """Remove everything the benchmark stored for ``symbols`` (hot store, manifests, lake)."""
    from db.connect import database_connection
    from storage.lake import Lake
    from storage.raw import RAW_PREFIX

    names = list(symbols)
    with database_connection(settings) as conn, conn.transaction():
        conn.execute("DELETE FROM market.bars_intraday WHERE symbol = ANY(%s)", (names,))
        conn.execute("DELETE FROM ops.raw_pages WHERE symbol = ANY(%s)", (names,))
        conn.execute("DELETE FROM ops.watermarks WHERE symbol = ANY(%s)", (names,))
        conn.execute("DELETE FROM ops.dead_letters WHERE request->'context'->>'symbol' = ANY(%s)", (names,))
    lake = Lake.from_settings(settings.lake)
    for symbol in names:
        for obj in list(lake.list(f"{RAW_PREFIX}/source={SOURCE}/dataset=bars/symbol={symbol}/")):
            lake.delete(obj.key)


#: What :func:`delete_symbols` deletes from (market.bars_intraday is a view on the store's hypertable),
#: and the table the bars' trigger keeps.
BENCH_TABLES = (
    "market.bars_intraday_store",
    "market.latest_bars",
    "ops.raw_pages",
    "ops.watermarks",
    "ops.dead_letters",
)


def vacuum_deleted(settings: Settings) -> float:
    """``VACUUM (ANALYZE)`` the tables the earlier parts deleted their rows from; the seconds it
    took. Left to autovacuum, millions of dead rows are worked off whenever its launcher next looks
    (up to a minute later, seconds of CPU on every chunk): during the next part, at random."""
    from db.connect import database_connection

    began = time.perf_counter()
    with database_connection(settings, autocommit=True) as conn:
        for table in BENCH_TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    return time.perf_counter() - began


def _proc_cpu_ticks() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, CPU ticks of itself and of its reaped children)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        table[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))  # utime stime cutime cstime
    return table


def component_cpu_seconds(roots: dict[str, int], prefect_database: str | None = None) -> dict[str, float]:
    """CPU seconds used so far by this process and by each component's process tree (Linux /proc;
    empty elsewhere). A tree's reaped children count through their parent's cutime/cstime.

    ``client`` is this process with its own children (the processing's worker processes, live or
    reaped), not counting a component's tree should one be its child (a stack started here).
    Live PostgreSQL backends serving ``prefect_database`` (their process title names it) count as
    ``prefect_db``: the Prefect server's own storage, not the pipeline's."""
    if not os.path.isdir("/proc"):
        return {}
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    table = _proc_cpu_ticks()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    tick = os.sysconf("SC_CLK_TCK")

    def tree(root: int) -> list[int]:
        found, stack = [], [root]
        while stack:
            pid = stack.pop()
            found.append(pid)
            stack += children.get(pid, [])
        return found

    components = {name: tree(root) for name, root in roots.items()}
    skip = {pid for pids in components.values() for pid in pids}
    live = [pid for pid in tree(os.getpid())[1:] if pid not in skip]
    out = {
        "client": own.ru_utime
        + own.ru_stime
        + reaped.ru_utime
        + reaped.ru_stime
        + sum(table[pid][1] for pid in live if pid in table) / tick
    }
    for name, pids in components.items():
        for pid in pids:
            owner = "prefect_db" if name == "postgres" and _serves(pid, prefect_database) else name
            out[owner] = out.get(owner, 0.0) + table.get(pid, (0, 0))[1] / tick
    return out


def _serves(pid: int, database: str | None) -> bool:
    """Whether a PostgreSQL backend's process title (``postgres: user database host ...``) names ``database``."""
    if not database:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            title = cmdline.read().replace(b"\0", b" ").decode(errors="replace").split()
    except OSError:
        return False
    return len(title) >= 3 and title[0] == "postgres:" and title[2] == database


def stack_pids(settings: Settings) -> dict[str, int]:
    """The root process of each embedded component that runs here (none for external services)."""
    from stack.supervisor import Stack

    return {name: c.pid for name, c in Stack(settings).status().components.items() if c.pid is not None}


def wait_until_quiet(
    roots: dict[str, int], name: str = "prefect", *, busy_share: float = 0.1, max_seconds: float = 60.0
) -> float:
    """Wait while ``name``'s process tree works off what a run left it (the Prefect server records
    task-run events after the flow returned): until it uses under ``busy_share`` of a core over a
    second, at most ``max_seconds``. Returns the seconds waited."""
    if name not in roots:
        return 0.0
    began = time.perf_counter()
    last = component_cpu_seconds({name: roots[name]}).get(name, 0.0)
    while time.perf_counter() - began < max_seconds:
        time.sleep(1.0)
        now = component_cpu_seconds({name: roots[name]}).get(name, 0.0)
        if now - last < busy_share:
            break
        last = now
    return time.perf_counter() - began


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: max(0.0, after[name] - before.get(name, 0.0)) for name in after}


def end_to_end(
    settings: Settings, symbols: list[str], first: date, last: date, overrides: dict[str, Any] | None
) -> tuple[float, dict[str, Any]]:
    """The whole pipeline as a Prefect flow; returns (seconds, the flow's summary)."""
    from flows.ingestion import ingest_flow

    return _timed(
        lambda: asyncio.run(
            ingest_flow(
                symbols=symbols,
                start_date=first.isoformat(),
                end_date=f"{last.isoformat()}T23:59:59",
                timeframe=TIMEFRAME,
                source=SOURCE,
                incremental=False,
                overrides=overrides,
            )
        )
    )


def start_up(
    settings: Settings,
    symbols: list[str],
    first: date,
    last: date,
    overrides: dict[str, Any] | None,
    pids: dict[str, int],
) -> dict[str, Any]:
    """A small run of the flow first: a flow-run process's one-time costs (imports, Prefect's
    client, the first connections, numba's cached code) are paid once whatever the run's size, so
    they are measured here, reported apart, and left out of the end-to-end run's CPU per bar (the
    hot writer's reference is measured warm too). Its rows are deleted."""
    try:
        before = component_cpu_seconds(pids, settings.database.prefect_database)
        seconds, summary = end_to_end(settings, symbols, first, last, overrides)
        wait_until_quiet(pids)
        spent = cpu_delta(before, component_cpu_seconds(pids, settings.database.prefect_database))
        if summary["failed"]:
            raise RuntimeError(f"the benchmark's start-up run failed for {summary['failed']}")
        bars = stored_bars(settings, symbols)
    finally:
        delete_symbols(settings, symbols)
    return {
        "symbols": len(symbols),
        "bars": bars,
        "seconds": round(seconds, 3),
        "cpu_seconds": {name: round(value, 2) for name, value in spent.items() if value > 0},
    }


def shard_main(spec: str) -> None:
    """One worker of the sharded latency part, in a process of its own (see :func:`sharded_end_to_end`):
    its symbols through ``ingest_flow``; what it did is written to the spec's ``out`` file."""
    args = json.loads(spec)
    settings = load_settings(overrides=args["overrides"])
    os.environ.update(settings.prefect.client_environment())
    first, last = date.fromisoformat(args["first"]), date.fromisoformat(args["last"])
    seconds, summary = end_to_end(settings, args["symbols"], first, last, args["overrides"])
    Path(args["out"]).write_text(json.dumps({"seconds": seconds, "failed": summary["failed"]}))


def sharded_end_to_end(
    shards: list[list[str]], first: date, last: date, overrides: dict[str, Any], timeout: float = 900.0
) -> tuple[float, list[dict[str, Any]]]:
    """Each shard through ``ingest_flow`` in a Python process of its own, all at once: what N
    workers of a process work pool do with the ``pipeline/ingest-shard`` deployment (the rate
    limit is shared through the Prefect server). Returns the wall seconds from the first process
    started to the last finished (their start-up included, as a worker's flow-run process pays it),
    and each shard's outcome."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        started = []
        began = time.perf_counter()
        for index, shard in enumerate(shards):
            out, log = Path(tmp) / f"shard-{index}.json", Path(tmp) / f"shard-{index}.log"
            spec = {"symbols": shard, "first": first.isoformat(), "last": last.isoformat()}
            spec |= {"overrides": overrides, "out": str(out)}
            command = [sys.executable, "-c", "import sys; from bench.ingest import shard_main; shard_main(sys.argv[1])"]
            with log.open("wb") as sink:
                process = subprocess.Popen([*command, json.dumps(spec)], stdout=sink, stderr=subprocess.STDOUT)
            started.append((process, out, log))
        try:
            for process, _, _ in started:
                process.wait(timeout=max(1.0, timeout - (time.perf_counter() - began)))
        finally:
            for process, _, _ in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        seconds = time.perf_counter() - began
        outcomes = []
        for process, out, log in started:
            if process.returncode != 0 or not out.exists():
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"a shard of the latency part failed (exit {process.returncode}): {tail}")
            outcomes.append(json.loads(out.read_text()))
    return seconds, outcomes


async def _plain_pipeline(settings: Settings, symbols: list[str], first: date, last: date) -> dict[str, float]:
    """What ``ingest_flow(incremental=False)`` does, with the plain functions and no Prefect: in
    waves of ``batch_size``, ``max_parallel_symbols`` symbols at once, each collected and then its
    pending pages processed (batched with the symbols collected meanwhile, in threads, with the
    frames the collection parsed), then the aggregates' refresh of what processing recorded.
    Returns the seconds spent in each stage, summed over symbols (stages of different symbols
    overlap; processing counts its wait for a batch), and the number of processing batches."""
    from pipeline.request import parse_ingest_request
    from sources.factory import build_source, source_resilience
    from tasks.aggregates import refresh_recorded
    from tasks.ingestion import collect_one, pending_processor
    from tasks.pending import batch_quality
    from tasks.resources import RunResources

    request = parse_ingest_request(
        data_type="market_data",
        symbols=symbols,
        start_date=first.isoformat(),
        end_date=f"{last.isoformat()}T23:59:59",
        timeframe=TIMEFRAME,
        source=SOURCE,
    )
    collection = settings.collection
    gate = asyncio.Semaphore(collection.max_parallel_symbols)
    source = build_source(SOURCE, settings, resilience=source_resilience(SOURCE, settings, shared_rate_limit=False))
    run_id = f"bench-plain-{secrets.token_hex(4)}"
    stages = {"collect_seconds": 0.0, "process_seconds": 0.0}

    resources = RunResources.from_settings(settings)

    processor = pending_processor(resources, request)
    processor.expect(len(symbols))

    async def one(symbol: str) -> list:
        async with gate:
            began = time.perf_counter()
            outcome = await collect_one(
                resources, source, request, symbol, request.start, run_id, True, keep_parsed=True
            )
            if outcome.error:
                raise RuntimeError(f"plain collection of {symbol} failed: {outcome.error}")
            collected = time.perf_counter()
            queued = await processor.submit(symbol, outcome.parsed)
        results = [result for _, result in await queued]
        stages["collect_seconds"] += collected - began
        stages["process_seconds"] += time.perf_counter() - collected
        return results

    done: list = []
    try:
        names = list(request.symbols)
        with frozen_heap():  # as recorded_run does for the flow
            async with resources.pooled_async_connections():
                for offset in range(0, len(names), collection.batch_size):
                    waves = await asyncio.gather(*(one(s) for s in names[offset : offset + collection.batch_size]))
                    done += [r for results in waves for r in results]
        await asyncio.to_thread(refresh_recorded, resources)  # the flow's refresh-aggregates step
    finally:
        await source.aclose()
        resources.close()
    batch_quality([r for r in done if r is not None], settings.quality.min_quality_score)
    stages["processing_batches"] = len(processor.batches)
    return stages


def plain(settings: Settings, symbols: list[str], first: date, last: date) -> tuple[float, dict[str, float]]:
    return _timed(lambda: asyncio.run(_plain_pipeline(settings, symbols, first, last)))


def naive(settings: Settings, symbols: list[str], first: date, last: date) -> tuple[float, int]:
    """The vendor SDK in a loop plus ``DataFrame.to_sql``: the baseline most scripts start from."""
    import pandas as pd
    from massive import RESTClient
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import URL

    db = settings.database
    url = URL.create(
        "postgresql+psycopg",
        username=db.user,
        password=db.password.get_secret_value() if db.password else None,
        host=db.host,
        port=db.port,
        database=db.name,
    )
    engine = create_engine(url)
    client = RESTClient(api_key="sandbox", base=settings.sandbox.base_url, retries=3)
    table = f"{NAIVE_TABLE}_{secrets.token_hex(3)}"
    try:

        def load() -> int:
            rows = 0
            for symbol in symbols:
                aggs = client.list_aggs(
                    symbol, 1, "minute", first.isoformat(), last.isoformat(), adjusted=False, limit=50000
                )
                records = [
                    {
                        "symbol": symbol,
                        "ts": pd.Timestamp(a.timestamp, unit="ms", tz="UTC"),
                        "open": a.open,
                        "high": a.high,
                        "low": a.low,
                        "close": a.close,
                        "volume": a.volume,
                        "vwap": a.vwap,
                        "trade_count": a.transactions,
                    }
                    for a in aggs
                ]
                frame = pd.DataFrame(records)
                frame.to_sql(table, engine, if_exists="append", index=False)
                rows += len(frame)
            return rows

        seconds, rows = _timed(load)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()
    return seconds, rows


def writer_vs_psql(
    settings: Settings, rows: int, symbols: int, cpu_probe: Callable[[], dict[str, float]] | None = None
) -> dict[str, Any]:
    """:func:`bench.hot_writer.run` on ``rows`` bars."""
    from bench import hot_writer

    return hot_writer.run(settings, rows=rows, symbols=symbols, cpu_probe=cpu_probe)


def writer_into_hot_store(
    settings: Settings, rows: int, symbols: list[str], cpu_probe: Callable[[], dict[str, float]]
) -> dict[str, Any]:
    """The hot writer alone storing ``rows`` synthetic 1-minute bars of ``symbols`` (never stored
    before) into ``market.bars_intraday`` itself, with its triggers and continuous-aggregate
    invalidation: what storing the end-to-end run's rows costs with nothing else of the pipeline.
    Deleted afterwards."""
    from bench.hot_writer import synthetic_bars
    from db.connect import database_connection
    from storage.hot import BARS_INTRADAY, upsert_frame

    bars = synthetic_bars(rows, len(symbols))
    names = dict(zip(sorted(bars["symbol"].unique()), symbols, strict=False))
    bars["symbol"] = bars["symbol"].map(names)
    try:
        with database_connection(settings, autocommit=True) as conn:
            before = cpu_probe()
            seconds, _ = _timed(lambda: upsert_frame(conn, bars, BARS_INTRADAY))
            after = cpu_probe()
    finally:
        delete_symbols(settings, symbols)
    spent = cpu_delta(before, after)
    return {
        "rows": len(bars),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(sum(spent.values()), 3),
        "cpu_by_process": {name: round(value, 3) for name, value in spent.items() if value > 0},
    }


WRITER_ROUNDS = ("W", "X", "Y")  # symbol prefixes of the hot writer's rounds


def writer_reference(
    settings: Settings, rows: int, rounds: list[list[str]], cpu_probe: Callable[[], dict[str, float]]
) -> dict[str, Any]:
    """:func:`writer_into_hot_store` once per round of fresh symbols; the round that cost least
    CPU is the reference (one round's figure moved 3.3-5.1 µs a bar between runs; the least makes
    ``cpu_vs_writer`` no easier to meet), every round's CPU reported."""
    done = [writer_into_hot_store(settings, rows, symbols, cpu_probe) for symbols in rounds]
    return {**min(done, key=lambda r: r["cpu_seconds"]), "cpu_seconds_each_round": [r["cpu_seconds"] for r in done]}


def mean_latency_seconds(model: dict[str, Any] = VENDOR_LATENCY) -> float:
    """The expected delay of the sandbox's network model (see ``sandbox.latency``)."""
    body = model["median_ms"] * float(np.exp(model["sigma"] ** 2 / 2))
    return (body + model["tail_fraction"] * model["tail_ms"]) / 1000.0


def latency_collection(requests_per_second: float, symbols: int) -> dict[str, int]:
    """The collection settings a user gives a latency-bound vendor (README, "Ingest throughput"):
    enough symbols in flight to keep the plan's limit busy through the latency (twice the limit x
    the mean latency: a symbol also spends time being processed), and one wave for the whole
    universe (a wave ends with its slowest request, and a 1 s tail request in every wave of 50
    would idle the limit)."""
    return {
        "max_parallel_symbols": max(1, math.ceil(2 * requests_per_second * mean_latency_seconds())),
        "batch_size": symbols,
    }


def under_latency(
    settings: Settings,
    symbols: list[str],
    naive_symbols: list[str],
    first: date,
    last: date,
    overrides: dict[str, Any] | None,
    workers: int = 1,
) -> dict[str, Any]:
    """The flow and the naive loop against the sandbox with its network model and the plan's rate
    limit on (for :data:`SOURCE` only; turned off again whatever happens). With ``workers`` > 1
    the symbols are split into that many shards, each run by a flow in a process of its own
    (:func:`sharded_end_to_end`), sharing the rate limit."""
    import httpx

    limit = settings.rate_limits[SOURCE].requests_per_second
    shards = [symbols[index::workers] for index in range(workers)]
    collection = latency_collection(limit, len(shards[0]))
    overrides = {**(overrides or {}), "collection": {**(overrides or {}).get("collection", {}), **collection}}
    with httpx.Client(base_url=settings.sandbox.base_url, timeout=30.0) as control:
        model = {**VENDOR_LATENCY, "requests_per_second": limit, "vendors": [SOURCE]}
        control.post("/_sandbox/latency", json=model).raise_for_status()
        try:
            pids = stack_pids(settings)
            cpu_before = component_cpu_seconds(pids, settings.database.prefect_database)
            before = control.get("/_sandbox/stats").json()
            if workers == 1:
                seconds, summary = end_to_end(settings, symbols, first, last, overrides)
                failed = summary["failed"]
            else:
                seconds, outcomes = sharded_end_to_end(shards, first, last, overrides)
                failed = [symbol for outcome in outcomes for symbol in outcome["failed"]]
            after = control.get("/_sandbox/stats").json()
            cpu = cpu_delta(cpu_before, component_cpu_seconds(pids, settings.database.prefect_database))
            if failed:
                raise RuntimeError(f"the benchmark flow failed under latency for {failed}")
            naive_seconds, naive_bars = naive(settings, naive_symbols, first, last)
        finally:
            control.delete("/_sandbox/latency")
    counts = {
        name: {int(k): v for k, v in stats["vendors"].get(SOURCE, {}).get("per_second", {}).items()}
        for name, stats in (("before", before), ("after", after))
    }
    refused = sum(e.get("fault_plan_limit", 0) for e in after["endpoints"].values()) - sum(
        e.get("fault_plan_limit", 0) for e in before["endpoints"].values()
    )
    served = utilization(counts["before"], counts["after"], limit)
    return {
        "model": model,
        "collection": collection,
        "mean_latency_ms": round(1000 * mean_latency_seconds(), 1),
        "rate_limit": limit,
        "workers": workers,
        "symbols": len(symbols),
        "bars": stored_bars(settings, symbols),
        **served,  # its "seconds": from the first request the sandbox served to the last
        # the flows' wall time (with N workers, from the first process started to the last ended)
        "flow_seconds": round(seconds, 3),
        "refused_429": refused,
        # CPU-seconds of each stack process while the flow ran (the client's includes its children)
        "cpu_seconds": {name: round(seconds, 2) for name, seconds in cpu.items()},
        "naive_symbols": len(naive_symbols),
        "naive_bars": naive_bars,
        "naive_seconds": round(naive_seconds, 3),
    }


def run(
    settings: Settings,
    symbols: int = 100,
    sessions: int = 20,
    overrides: dict[str, Any] | None = None,
    *,
    plain_symbols: int | None = None,
    naive_symbols: int = 10,
    latency_symbols: int = 400,
    latency_sessions: int = 5,
    latency_naive_symbols: int = 20,
    latency_workers: int = 1,
) -> dict[str, Any]:
    """Measure every part on the running stack; returns the report (see :func:`summarize`).

    ``overrides`` go to the flow (and to the settings of the other parts), e.g.
    ``{"collection": {"max_parallel_symbols": 8}}``.
    """
    if not 1 <= latency_workers <= latency_symbols:
        raise ValueError(f"latency_workers={latency_workers}: give between 1 and latency_symbols ({latency_symbols})")
    if overrides:
        settings = load_settings(overrides=overrides)
    os.environ.update(settings.prefect.client_environment())  # before Prefect is imported
    first, last = session_range(sessions)
    tag = _unused_tag(settings, ("S", "B", "P", "C", "Q", "N", "L", "M", *WRITER_ROUNDS))
    flow_names = bench_symbols("B", tag, symbols)
    plain_names = bench_symbols("P", tag, plain_symbols or symbols)
    naive_names = bench_symbols("N", tag, min(naive_symbols, symbols))
    latency_names = bench_symbols("L", tag, latency_symbols)
    latency_naive_names = bench_symbols("M", tag, latency_naive_symbols)
    parts: dict[str, Any] = {
        "symbols": symbols,
        "sessions": sessions,
        "naive_symbols": len(naive_names),
        "run_tag": tag,
        "load_average": {"before": [round(x, 2) for x in os.getloadavg()]},
    }
    pids = stack_pids(settings)
    prefect_db = settings.database.prefect_database
    parts["start_up"] = start_up(settings, bench_symbols("S", tag, 2), first, last, overrides, pids)
    parts["vacuum_seconds"] = vacuum_deleted(settings)  # what an earlier run (and the start-up) deleted
    try:
        cpu_before = component_cpu_seconds(pids, prefect_db)
        parts["end_to_end_seconds"], summary = end_to_end(settings, flow_names, first, last, overrides)
        # The server's work on the run's events counts as the run's CPU, and must not slow the plain path.
        parts["prefect_settle_seconds"] = wait_until_quiet(pids)
        parts["end_to_end_cpu"] = cpu_delta(cpu_before, component_cpu_seconds(pids, prefect_db))
        if summary["failed"]:
            raise RuntimeError(f"the benchmark flow failed for {summary['failed']}")
        parts["end_to_end_bars"] = stored_bars(settings, flow_names)
        parts["plain_seconds"], stages = plain(settings, plain_names, first, last)
        parts["plain_bars"] = stored_bars(settings, plain_names)
        parts.update({f"plain_{name}": value for name, value in stages.items()})
        # A second round of each, interleaved: one run of either moves by more than Prefect costs.
        again_flow, again_plain = bench_symbols("C", tag, symbols), bench_symbols("Q", tag, plain_symbols or symbols)
        flow_names, plain_names = flow_names + again_flow, plain_names + again_plain
        flow_again_s, _ = end_to_end(settings, again_flow, first, last, overrides)
        wait_until_quiet(pids)
        plain_again_s, _ = plain(settings, again_plain, first, last)
        parts["overhead_rounds"] = [
            (parts["end_to_end_seconds"], parts["end_to_end_bars"], parts["plain_seconds"], parts["plain_bars"]),
            (flow_again_s, stored_bars(settings, again_flow), plain_again_s, stored_bars(settings, again_plain)),
        ]
    finally:
        delete_symbols(settings, flow_names + plain_names)
    writer = writer_vs_psql(
        settings, parts["end_to_end_bars"], symbols, cpu_probe=lambda: component_cpu_seconds(pids, prefect_db)
    )
    parts.update(
        writer_rows=writer["rows"],
        writer_rows_per_s=writer["writer_rows_per_s"],
        psql_copy_rows_per_s=writer["psql_copy_rows_per_s"],
        writer_seconds=writer["writer_seconds"],
        psql_copy_seconds=writer["psql_copy_seconds"],
        writer_cpu_seconds=writer.get("writer_cpu_seconds"),
    )
    probe = lambda: component_cpu_seconds(pids, prefect_db)  # noqa: E731
    parts["hot_store_writer"] = writer_reference(
        settings, parts["end_to_end_bars"], [bench_symbols(prefix, tag, symbols) for prefix in WRITER_ROUNDS], probe
    )
    parts["naive_seconds"], parts["naive_bars"] = naive(settings, naive_names, first, last)
    latency_first, latency_last = session_range(latency_sessions)
    # The parts before deleted what they stored: vacuumed now, not by autovacuum during this part.
    parts["vacuum_seconds"] += vacuum_deleted(settings)
    parts["postgres_settle_seconds"] = wait_until_quiet(pids, "postgres", busy_share=0.2)
    try:
        parts["latency"] = under_latency(
            settings, latency_names, latency_naive_names, latency_first, latency_last, overrides, latency_workers
        )
    finally:
        delete_symbols(settings, latency_names)
    parts["load_average"]["after"] = [round(x, 2) for x in os.getloadavg()]
    return summarize(parts, os.cpu_count())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100, help="symbols (default 100)")
    parser.add_argument("--sessions", type=int, default=20, help="sessions of 1-minute bars (default 20)")
    parser.add_argument(
        "--plain-symbols", type=int, default=None, help="symbols of the plain (no Prefect) path [default: --symbols]"
    )
    parser.add_argument("--naive-symbols", type=int, default=10, help="symbols of the naive baseline (default 10)")
    parser.add_argument("--latency-symbols", type=int, default=400, help="symbols of the latency part (default 400)")
    parser.add_argument(
        "--latency-sessions", type=int, default=5, help="sessions per symbol (one page) under latency (default 5)"
    )
    parser.add_argument(
        "--latency-workers", type=int, default=1, help="flow processes sharing the rate limit under latency (default 1)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    report = run(
        load_settings(),
        symbols=args.symbols,
        sessions=args.sessions,
        plain_symbols=args.plain_symbols,
        naive_symbols=args.naive_symbols,
        latency_symbols=args.latency_symbols,
        latency_sessions=args.latency_sessions,
        latency_workers=args.latency_workers,
    )
    print(json.dumps(report, indent=2) if args.json else render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
