"""Replica benchmark: the scanners on the read replica beside the same scanners on the primary, idle
and while the primary ingests a live stream at 20,000 messages/s.

Needs the stack with its read replica (``marketpipe up --replica``). Synthetic 1-minute bars (default
1,000 symbols x 5 NYSE sessions), their daily bars and one daily RSI per bar are loaded into a
throwaway database (``bench_replica`` on the primary, migrated by the real migrator, loaded by
:func:`bench.storage.load`), which the standby replicates like any other; the benchmark waits until
the replica has replayed it (``catch_up_s``). The stream goes into a second throwaway database
(``bench_replica_stream``): the product's stream service (:class:`streaming.service.StreamService`,
run in a child process so its CPU is not this process's) consumes the Polygon trades of a sandbox
of its own paced at ``rate=20000`` (bench.stream's sandbox), so the primary writes, and the standby
replays, the WAL of 20k trades/s while the scanners run; the scanned tables themselves keep the
synthetic market, so both sides answer the same questions throughout.

Per scanner (the product's ``scan.*`` calls of the storage benchmark, :func:`bench.storage.scanners`
without its references), after two warm-up calls on each side, ``repeats`` calls alternate between
the primary and the replica (primary first on even rounds, replica first on odd ones), each timed
end to end with every row fetched in the binary protocol; p50/p95 per side, idle and under the
stream. The replica's replay lag is sampled every 0.25 s during the loaded phase (max and p95), the
stream's achieved rate is the trades committed during it over its wall time, and the 1/5/15-minute
load averages are reported at each phase. Usage: ``marketpipe bench replica [--symbols N]
[--sessions N] [--repeats N] [--keep] [--json]``; ``tests/integration/replica/test_bench_replica.py``
runs it tiny.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from pydantic import SecretStr

from core.errors import RequestError
from core.settings import Settings

DATABASE = "bench_replica"  # the scanned synthetic market
STREAM_DATABASE = "bench_replica_stream"  # where the stream's trades and bars go
SOURCE = "polygon"
RATE = 20_000  # messages/s the sandbox paces the stream at
STREAM_SESSIONS = 3  # ~3M trades a session in the sandbox: 7+ minutes of stream at RATE
LAG_SAMPLE_S = 0.25
CATCH_UP_TIMEOUT_S = 600.0
STREAM_START_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------------------------------
# Pure helpers


def alternating(rounds: int) -> list[tuple[str, str]]:
    """The order of the two sides in each timed round: primary first on even rounds."""
    return [("primary", "replica") if i % 2 == 0 else ("replica", "primary") for i in range(rounds)]


def side_figures(samples_s: Sequence[float]) -> dict[str, float]:
    from bench.storage import percentiles

    p50, p95 = percentiles(samples_s)
    return {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}


def lag_figures(samples_s: Sequence[float | None]) -> dict[str, Any]:
    known = np.asarray([s for s in samples_s if s is not None], dtype=np.float64)
    if not len(known):
        return {"samples": len(samples_s), "max_s": None, "p95_s": None, "unknown": len(samples_s)}
    return {
        "samples": len(samples_s),
        "max_s": round(float(known.max()), 3),
        "p95_s": round(float(np.percentile(known, 95)), 3),
        "unknown": len(samples_s) - len(known),
    }


def summarize(parts: dict[str, Any]) -> dict[str, Any]:
    """The report: per scanner and phase each side's p50/p95 and the replica/primary ratio of p95."""
    scanners: dict[str, Any] = {}
    for phase in ("idle", "loaded"):
        for name, sides in parts[phase].items():
            entry = scanners.setdefault(name, {})
            primary, replica = sides["primary"]["p95_ms"], sides["replica"]["p95_ms"]
            entry[phase] = {**sides, "replica_over_primary_p95": round(replica / primary, 3) if primary else None}
    loaded = [s["loaded"]["replica"]["p95_ms"] for s in scanners.values()]
    loaded_primary = [s["loaded"]["primary"]["p95_ms"] for s in scanners.values()]
    return {
        **{k: v for k, v in parts.items() if k not in ("idle", "loaded")},
        "scanners": scanners,
        "worst_p95_ms": {
            "replica_loaded": max(loaded) if loaded else None,
            "primary_loaded": max(loaded_primary) if loaded_primary else None,
        },
    }


def render_table(report: dict[str, Any]) -> str:
    stream, lag = report["stream"], report["replica_lag"]
    lines = [
        f"scanners on the read replica vs the primary: {report['symbols']:,} symbols x {report['sessions']} "
        f"sessions of 1-minute bars, {report['repeats']} calls per side (alternating)",
        f"stream during 'loaded': {stream['msgs_per_s']:,.0f} trades/s committed on the primary "
        f"(sandbox paced at {stream['rate']:,}/s) over {stream['seconds']:.1f} s",
        f"replica lag during 'loaded': max {lag['max_s']} s, p95 {lag['p95_s']} s ({lag['samples']} samples)",
        f"replica caught up with the loaded market in {report['catch_up_s']:.1f} s",
        "",
        f"{'scanner':<22} {'idle primary':>13} {'idle replica':>13} {'load primary':>13} {'load replica':>13} "
        f"{'ratio':>6}   (p95 ms; ratio = replica / primary under load)",
    ]
    for name, phases in report["scanners"].items():
        idle, loaded = phases["idle"], phases["loaded"]
        lines.append(
            f"{name:<22} {idle['primary']['p95_ms']:>13,.1f} {idle['replica']['p95_ms']:>13,.1f} "
            f"{loaded['primary']['p95_ms']:>13,.1f} {loaded['replica']['p95_ms']:>13,.1f} "
            f"{loaded['replica_over_primary_p95'] or float('nan'):>6.2f}"
        )
    load = report["load_average"]
    lines += ["", "load average (1/5/15 min): " + "; ".join(f"{k} {v}" for k, v in load.items())]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The edges


def _bench_settings(settings: Settings, dbname: str, key: str | None = None) -> Settings:
    database = settings.database.model_copy(update={"name": dbname})
    update: dict[str, Any] = {"database": database}
    if key is not None:
        vendors = dict(settings.vendors)
        vendors[SOURCE] = vendors[SOURCE].model_copy(update={"api_key": SecretStr(key)})
        update["vendors"] = vendors
    return settings.model_copy(update=update)


def check_replica(settings: Settings) -> None:
    """Refuse to run without a read replica that answers as a standby, saying how to start one."""
    from core.errors import MarketpipeError
    from db.replica import replica_connection, replica_state

    replica = settings.database.read_replica
    try:
        with replica_connection(settings, autocommit=True) as conn:
            standby = replica_state(conn).in_recovery
    except MarketpipeError as exc:
        raise RequestError(
            f"the replica benchmark needs the read replica at {replica.host}:{replica.port}: {exc}; "
            "start it with `marketpipe up --replica`"
        ) from exc
    if not standby:
        raise RequestError(
            f"{replica.host}:{replica.port} (database.read_replica) is not a standby: point the setting at the replica"
        )


def _create(settings: Settings, name: str) -> None:
    from db.connect import database_connection
    from db.migrate import migrate
    from stack.scratch import create_database

    create_database(settings, name)
    with database_connection(settings, dbname=name, autocommit=True) as conn:
        migrate(conn)


def _drop(settings: Settings) -> None:
    from stack.scratch import drop_database

    for name in (DATABASE, STREAM_DATABASE):
        drop_database(settings, name)


def wait_replayed(settings: Settings, timeout_s: float = CATCH_UP_TIMEOUT_S) -> float:
    """Seconds until the replica replayed the primary's current WAL position."""
    from db.connect import database_connection
    from db.replica import primary_lsn, replica_connection, replica_state

    began = time.monotonic()
    with database_connection(settings, autocommit=True) as conn:
        lsn = primary_lsn(conn)
    with replica_connection(settings, autocommit=True) as replica:
        while not replica_state(replica, lsn).min_lsn_replayed:
            if time.monotonic() - began > timeout_s:
                raise RuntimeError(f"the read replica did not replay {lsn} within {timeout_s:.0f} s")
            time.sleep(0.1)
    return time.monotonic() - began


def _fetch(conn: psycopg.Connection, query: Any) -> int:
    with conn.cursor(binary=True) as cur:
        cur.execute(query)
        return len(cur.fetchall())


def measure(
    connections: dict[str, psycopg.Connection], sessions: int, repeats: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scanner, p50/p95 and rows on each side, the sides' calls alternating (:func:`alternating`)."""
    from bench.storage import scanners

    result: dict[str, dict[str, dict[str, Any]]] = {}
    for scanner in scanners(sessions):
        if scanner.reference:
            continue
        rows = {}
        for side, conn in connections.items():
            for _ in range(2):
                rows[side] = _fetch(conn, scanner.sql)
        samples: dict[str, list[float]] = {side: [] for side in connections}
        for order in alternating(repeats):
            for side in order:
                began = time.perf_counter()
                _fetch(connections[side], scanner.sql)
                samples[side].append(time.perf_counter() - began)
        result[scanner.name] = {side: {**side_figures(samples[side]), "rows": rows[side]} for side in connections}
    return result


def _stream_child(settings: Settings, url: str, stop: Any, started: Any, out: Any) -> None:
    """The child process: the stream service until ``stop`` is set; its counters to ``out``."""
    from streaming.service import StreamPlan, StreamService

    async def main() -> dict[str, Any]:
        halt = asyncio.Event()

        def heartbeat(report: Any) -> None:
            started.set()
            if stop.is_set():
                halt.set()

        service = StreamService(settings, StreamPlan.of(SOURCE, ["*"], ("trades",), url=url), heartbeat=heartbeat)
        watcher = asyncio.get_running_loop().run_in_executor(None, stop.wait)
        watcher.add_done_callback(lambda _: halt.set())
        report = await service.run(halt)
        return dict(report.as_dict())

    try:
        out.put({"report": asyncio.run(main())})
    except Exception as exc:  # reported to the parent, which raises it
        out.put({"error": f"{type(exc).__name__}: {exc}"})
        started.set()


class LagSampler:
    """A thread sampling the replica's replay lag every LAG_SAMPLE_S on its own connection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.samples: list[float | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from db.replica import replica_connection, replica_state

        with replica_connection(self.settings, autocommit=True) as conn:
            while not self._stop.is_set():
                self.samples.append(replica_state(conn).lag_seconds)
                self._stop.wait(LAG_SAMPLE_S)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _wait_flowing(settings: Settings, started: Any, child: Any) -> None:
    """Until the stream's first trades are committed (the loaded phase starts under load)."""
    deadline = time.monotonic() + STREAM_START_TIMEOUT_S
    started.wait(STREAM_START_TIMEOUT_S)
    while _trades(settings) == 0:
        if time.monotonic() > deadline or not child.is_alive():
            raise RuntimeError(f"the stream committed no trade within {STREAM_START_TIMEOUT_S:.0f} s")
        time.sleep(0.1)


def _trades(settings: Settings) -> int:
    from db.connect import database_connection

    with database_connection(settings, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM market.trades").fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------------------------
# The run


def run(
    settings: Settings,
    *,
    symbols: int = 1000,
    sessions: int = 5,
    repeats: int = 30,
    keep: bool = False,
) -> dict[str, Any]:
    """Load, wait for the replica, measure idle, then under the stream; the databases are dropped
    unless ``keep``."""
    from bench.stream import sandbox_process

    if symbols < 1 or sessions < 3 or repeats < 2:
        raise RequestError("--symbols must be >= 1, --sessions >= 3 and --repeats >= 2")
    check_replica(settings)
    with sandbox_process(settings.sandbox.seed) as (base_url, _pid):
        try:
            return _measure(settings, base_url, symbols, sessions, repeats)
        finally:
            if not keep:
                _drop(settings)


def _measure(settings: Settings, base_url: str, symbols: int, sessions: int, repeats: int) -> dict[str, Any]:
    from bench.storage import load, session_days
    from bench.stream import machine, stream_url
    from db.connect import database_connection
    from db.replica import replica_connection

    loads: dict[str, list[float]] = {"start": _load_average()}
    market, key = _bench_settings(settings, DATABASE), f"benchreplica{secrets.token_hex(6)}"
    streamed = _bench_settings(settings, STREAM_DATABASE, key)
    _create(settings, DATABASE)
    _create(settings, STREAM_DATABASE)
    with database_connection(market, autocommit=True) as conn:
        loaded = load(conn, symbols, session_days(sessions))
    catch_up_s = wait_replayed(settings)
    parts: dict[str, Any] = {
        "machine": machine(),
        "symbols": symbols,
        "sessions": sessions,
        "repeats": repeats,
        "load": loaded,
        "catch_up_s": round(catch_up_s, 2),
        "replica": f"{settings.database.read_replica.host}:{settings.database.read_replica.port}",
        "load_average": loads,
    }
    with (
        database_connection(market, autocommit=True) as primary,
        replica_connection(market, autocommit=True) as replica,
    ):
        connections = {"primary": primary, "replica": replica}
        loads["idle"] = _load_average()
        parts["idle"] = measure(connections, sessions, repeats)
        context = multiprocessing.get_context("spawn")
        stop, started, out = context.Event(), context.Event(), context.Queue()
        url = stream_url(base_url, rate=RATE, sessions=STREAM_SESSIONS)
        child = context.Process(target=_stream_child, args=(streamed, url, stop, started, out), daemon=True)
        child.start()
        try:
            _wait_flowing(streamed, started, child)
            before, began = _trades(streamed), time.monotonic()
            with LagSampler(settings) as lag:
                loads["loaded"] = _load_average()
                parts["loaded"] = measure(connections, sessions, repeats)
            seconds, committed = time.monotonic() - began, _trades(streamed) - before
        finally:
            stop.set()
            child.join(60)
            if child.is_alive():
                child.kill()
        try:
            outcome: dict[str, Any] = out.get(timeout=10)
        except queue.Empty:
            outcome = {"error": f"the stream child reported nothing (exit code {child.exitcode})"}
        if "error" in outcome:
            raise RuntimeError(f"the benchmark's stream failed: {outcome['error']}")
    loads["end"] = _load_average()
    parts["stream"] = {
        "rate": RATE,
        "seconds": round(seconds, 2),
        "trades_committed": committed,
        "msgs_per_s": round(committed / seconds, 1) if seconds else 0.0,
        "report": {k: outcome["report"].get(k) for k in ("messages", "trades", "batches", "spilled", "dropped")},
    }
    parts["replica_lag"] = lag_figures(lag.samples)
    return summarize(parts)


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
