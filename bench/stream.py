"""Stream benchmark: the product's stream path against a naive SDK consumer, measured in one run.

Starts its own market sandbox in a subprocess (``python -m sandbox`` on a free loopback port, the
stack's seed; stopped at the end): its CPU is never counted as the consumer's, its code is this
checkout's, and no client of the stack's sandbox shares its streams (``sandbox_url`` uses a running
one instead). Writes into a throwaway
database (``bench_stream`` on the stack's PostgreSQL, migrated by the real migrator), so the hot
store is never touched; the database is dropped at the end unless ``keep``. Every phase streams the
Polygon trades channel of the sandbox's default 20-symbol universe (``T.*``) of its last session,
bounded by the sandbox itself (``stall_after``: it sends that many messages, to the end of a frame,
then nothing) and by ``seconds``:

- ``sustained``: :class:`streaming.service.StreamService` (socket -> bounded buffer -> orjson parse ->
  bar windows -> binary COPY upsert, one transaction per micro-batch) over ``speed=0`` (the sandbox
  sends as fast as the consumer reads). Messages/s over wall time and per CPU-second of this
  process (``time.process_time``: every thread of the consumer, nothing of the sandbox or
  PostgreSQL, whose CPU is reported beside it), from the first micro-batch committed after
  ``warmup`` messages (connect, the sandbox's first minute and the windows' JIT are left out) to the
  last. Nothing lost: the rows in ``market.trades`` equal the messages the sandbox says it sent.
- ``latency``: the same service at a paced ``rate=20000`` with ``stamp=send`` (the sandbox rewrites
  ``t`` to the wall-clock instant it builds the frame, in ms). Every stored trade's transaction is
  known by its ``ingested_at`` (``now()``, one per transaction), the micro-batches in commit order
  match the service's heartbeats (called right after each commit), so each trade's latency is the
  wall instant its batch's commit returned minus its ``t``; p50/p99 over every trade.
- ``naive``: the vendor SDK (massive's ``WebSocketClient``, configured per key on the sandbox's
  control API since it cannot carry a query string) with an async callback that INSERTs each trade
  on an autocommit psycopg connection, as its README's example would grow into.

Targets: >= 100k msgs/s on one core (judged on msgs per consumer CPU-second: the sandbox and
PostgreSQL share this machine's cores during the run, see ``other_cpu_s``), p99 <= 250 ms at 20k
msgs/s, >= 20x the naive consumer's msgs/s. The 1/5/15-minute load averages are reported at the
start and end of each phase. Usage: ``marketpipe bench stream [--messages N] [--latency-messages N]
[--naive-messages N] [--seconds S] [--keep] [--json]``; ``tests/integration/bench/test_bench_stream.py``
runs it tiny.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
from pydantic import SecretStr

from core.errors import RequestError
from core.settings import Settings

DATABASE = "bench_stream"  # the throwaway database every phase writes into
SOURCE = "polygon"
CHANNELS = "T.*"
LATENCY_RATE = 20_000  # msgs/s of the latency phase
TARGET_MSGS_PER_CPU_S = 100_000.0
TARGET_P99_MS = 250.0
TARGET_RATIO = 20.0
WARMUP_FRACTION = 0.05
FROM_START = "service's start: too few commits past the warmup, connect and JIT included"
NAIVE_INSERT = (
    "INSERT INTO market.trades (symbol, ts, exchange, trade_id, price, size, conditions, tape, source)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


# ---------------------------------------------------------------------------------------------
# Pure helpers


@dataclass
class CommitLog:
    """What the stream service's heartbeat saw after each committed micro-batch: the wall instant,
    this process's CPU seconds and the cumulative messages and trades written. It sets ``stop``
    once ``target`` messages were committed."""

    target: int
    stop: asyncio.Event
    wall_ns: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    trades: list[int] = field(default_factory=list)

    def __call__(self, report: Any) -> None:
        self.wall_ns.append(time.time_ns())
        self.cpu_s.append(time.process_time())
        self.messages.append(report.messages)
        self.trades.append(report.trades)
        if report.messages >= self.target:
            self.stop.set()


def sustained_span(log: CommitLog, warmup: int, started_ns: int, started_cpu_s: float) -> dict[str, Any]:
    """Messages, wall and CPU seconds from the first commit at or past ``warmup`` messages to the last
    commit; from the service's start when fewer than two commits lie past the warmup (tiny runs)."""
    if not log.messages:
        return {"messages": 0, "wall_s": 0.0, "cpu_s": 0.0, "measured_from": "start"}
    first = next((i for i, m in enumerate(log.messages) if m >= warmup), len(log.messages) - 1)
    if first < len(log.messages) - 1:
        base_messages, base_ns, base_cpu, since = log.messages[first], log.wall_ns[first], log.cpu_s[first], "warmup"
    else:
        base_messages, base_ns, base_cpu, since = 0, started_ns, started_cpu_s, "start"
    return {
        "messages": log.messages[-1] - base_messages,
        "wall_s": (log.wall_ns[-1] - base_ns) / 1e9,
        "cpu_s": log.cpu_s[-1] - base_cpu,
        "measured_from": since,
    }


def commit_latencies_ms(log: CommitLog, tx_us: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """Per trade: the wall instant its micro-batch's commit returned minus its ``t``, in ms.

    ``tx_us``/``ts_ms`` are every stored trade's ``ingested_at`` (the transaction's start: one value
    per transaction) and time, ordered by ``ingested_at``. The transactions in that order are the
    heartbeats that wrote trades, in theirs; their sizes must agree, or the mapping is refused."""
    heartbeats = np.asarray(log.wall_ns, dtype=np.int64)
    written = np.diff(np.asarray(log.trades, dtype=np.int64), prepend=0)
    commits, sizes = heartbeats[written > 0], written[written > 0]
    _, counts = np.unique(tx_us, return_counts=True)
    if len(counts) != len(sizes) or not np.array_equal(counts, sizes):
        raise RuntimeError(
            f"the stored trades form {len(counts)} transactions of {counts[:5].tolist()}..., the service"
            f" committed {len(sizes)} batches of {sizes[:5].tolist()}...: cannot tell each trade's commit"
        )
    return (np.repeat(commits, counts) - ts_ms.astype(np.int64) * 1_000_000) / 1e6


def per_second(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def summarize(parts: dict[str, Any]) -> dict[str, Any]:
    """The report: rates, latencies, the naive ratio, counts, targets and whether each is met."""
    sustained, latency, naive = parts["sustained"], parts["latency"], parts["naive"]
    span = sustained["span"]
    msgs_per_s = per_second(span["messages"], span["wall_s"])
    msgs_per_cpu_s = per_second(span["messages"], span["cpu_s"])
    naive_rate = per_second(naive["messages"], naive["seconds"])
    ratio = msgs_per_s / naive_rate if msgs_per_s and naive_rate else None
    lat = np.asarray(latency["latencies_ms"], dtype=np.float64)
    p50 = float(np.percentile(lat, 50)) if len(lat) else None
    p99 = float(np.percentile(lat, 99)) if len(lat) else None
    targets = {
        "msgs_per_cpu_s": {
            "target": f">= {TARGET_MSGS_PER_CPU_S:,.0f} (one core)",
            "value": _round(msgs_per_cpu_s),
            "met": msgs_per_cpu_s is not None and msgs_per_cpu_s >= TARGET_MSGS_PER_CPU_S,
        },
        "p99_ms": {
            "target": f"<= {TARGET_P99_MS:g} at {LATENCY_RATE:,} msgs/s",
            "value": _round(p99, 1),
            "met": p99 is not None and p99 <= TARGET_P99_MS,
        },
        "ratio_vs_naive": {
            "target": f">= {TARGET_RATIO:g}",
            "value": _round(ratio, 1),
            "met": ratio is not None and ratio >= TARGET_RATIO,
        },
    }
    dropped = sum(p["connection"].get("dropped", 0) for p in (sustained, latency))
    spilled = sum(p["connection"].get("spilled", 0) for p in (sustained, latency))
    return {
        "source": SOURCE,
        "channels": CHANNELS,
        "sandbox": parts["sandbox"],
        "msgs_per_s": _round(msgs_per_s),
        "msgs_per_cpu_s": _round(msgs_per_cpu_s),
        "consumer_cpu_s": round(span["cpu_s"], 3),
        "wall_s": round(span["wall_s"], 3),
        "cpu_share": round(span["cpu_s"] / span["wall_s"], 3) if span["wall_s"] > 0 else None,
        "p50_ms": _round(p50, 1),
        "p99_ms": _round(p99, 1),
        "naive_msgs_per_s": _round(naive_rate),
        "ratio_vs_naive": _round(ratio, 1),
        "dropped": dropped,
        "spilled": spilled,
        "sustained": {**{k: v for k, v in sustained.items() if k != "span"}, **_span_figures(span)},
        "latency": {
            **{k: v for k, v in latency.items() if k != "latencies_ms"},
            "trades_timed": len(lat),
            "p90_ms": _round(float(np.percentile(lat, 90)), 1) if len(lat) else None,
            "max_ms": _round(float(lat.max()), 1) if len(lat) else None,
        },
        "naive": naive,
        "targets": targets,
        "streaming_settings": parts["streaming_settings"],
        "machine": parts["machine"],
        "cpus": parts["machine"]["cpus"],
        "load_average": parts["load_average"],
    }


def _span_figures(span: dict[str, Any]) -> dict[str, Any]:
    return {
        "measured_messages": span["messages"],
        "measured_wall_s": round(span["wall_s"], 3),
        "measured_cpu_s": round(span["cpu_s"], 3),
        "measured_from": span["measured_from"],
    }


def _round(value: float | None, digits: int = 0) -> float | int | None:
    if value is None:
        return None
    return round(value) if digits == 0 else round(value, digits)


def _num(value: Any, spec: str = ",") -> str:
    return "n/a" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    targets = report["targets"]

    def met(name: str) -> str:
        return f"{targets[name]['target']}: {'met' if targets[name]['met'] else 'NOT met'}"

    sustained, latency, naive = report["sustained"], report["latency"], report["naive"]
    load = report["load_average"]
    lines = [
        f"stream benchmark ({report['source']} {report['channels']}, sandbox {report['sandbox']}, "
        f"{report['cpus']} CPUs, load {load['start']} -> {load['end']})",
        f"  sustained (StreamService, speed=0): {_num(report['msgs_per_s'])} msgs/s wall, "
        f"{_num(report['msgs_per_cpu_s'])} msgs per consumer CPU-second  [{met('msgs_per_cpu_s')}]",
        f"    {sustained['measured_messages']:,} msgs in {sustained['measured_wall_s']} s wall "
        f"(from the {'first commit after the warmup' if sustained['measured_from'] == 'warmup' else FROM_START}), "
        f"{sustained['measured_cpu_s']} s consumer CPU (share of a core {report['cpu_share']}); "
        f"sent {sustained['sent']:,}, committed {sustained['committed_rows']:,}; "
        f"other processes' CPU s {sustained['other_cpu_s']}",
        f"  latency at {LATENCY_RATE:,} msgs/s (exchange t -> committed): p50 {_num(report['p50_ms'])} ms, "
        f"p99 {_num(report['p99_ms'])} ms, max {_num(latency['max_ms'])} ms over {latency['trades_timed']:,} "
        f"trades  [{met('p99_ms')}]",
        f"  naive (massive WebSocketClient + one INSERT per message): {_num(report['naive_msgs_per_s'])} msgs/s "
        f"({naive['messages']:,} msgs in {naive['seconds']} s); ratio {_num(report['ratio_vs_naive'])}x  "
        f"[{met('ratio_vs_naive')}]",
        f"  dropped {report['dropped']}, spilled {report['spilled']}",
    ]
    return "\n".join(lines)


def _load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages now (other work on the machine shows here)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.machine(),
    }


# ---------------------------------------------------------------------------------------------
# The edges: sandbox, scratch database, the two consumers


def bench_settings(settings: Settings, key: str) -> Settings:
    """The settings every phase runs with: the scratch database, and a Polygon key of this run (its
    own connection slot on the sandbox, found by key in its control API)."""
    vendors = dict(settings.vendors)
    vendors[SOURCE] = vendors[SOURCE].model_copy(update={"api_key": SecretStr(key)})
    database = settings.database.model_copy(update={"name": DATABASE})
    return settings.model_copy(update={"database": database, "vendors": vendors})


def stream_url(base_url: str, **query: Any) -> str:
    return base_url.replace("http://", "ws://", 1) + "/stocks?" + urlencode(query)


def check_sandbox(base_url: str) -> None:
    try:
        healthy = httpx.get(f"{base_url}/_sandbox/health", timeout=5).status_code == 200
    except httpx.HTTPError as exc:
        raise RequestError(
            f"the market sandbox at {base_url} does not answer ({exc}); start the stack with `marketpipe up`"
        ) from exc
    if not healthy:
        raise RequestError(f"the market sandbox at {base_url} is not healthy; see `marketpipe status`")


@contextmanager
def sandbox_process(seed: int, timeout_s: float = 60.0) -> Iterator[tuple[str, int]]:
    """A sandbox in a subprocess on a free loopback port: yields (base URL, pid); stopped on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed)]
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:  # not a pipe: nobody reads it while the sandbox runs
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_healthy(process, base_url, log, timeout_s)
            yield base_url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            log.seek(0)
            error = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the bench's sandbox exited with code {process.returncode}: {error}")
        try:
            if httpx.get(f"{base_url}/_sandbox/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bench's sandbox on {base_url} did not become healthy within {timeout_s} s")
        time.sleep(0.1)


def sandbox_sent(base_url: str, key: str) -> int:
    """Data messages the sandbox sent over every connection of ``key``."""
    body = httpx.get(f"{base_url}/_sandbox/streams", timeout=10).json()
    return sum(c["messages"] for c in body["connections"] if c["key"] == key)


def create_database(settings: Settings) -> None:
    """Drop and recreate the bench database with the project's schema (every migration and routine)."""
    from db.connect import database_connection
    from db.migrate import migrate
    from stack.scratch import create_database as create

    create(settings, DATABASE)
    with database_connection(settings, dbname=DATABASE, autocommit=True) as conn:
        migrate(conn)


def drop_database(settings: Settings) -> None:
    from stack.scratch import drop_database as drop

    drop(settings, DATABASE)


def _reset_tables(settings: Settings) -> None:
    from db.connect import database_connection

    with database_connection(settings, autocommit=True) as conn:
        conn.execute("TRUNCATE market.trades, market.bars_intraday_store, market.latest_bars, ops.watermarks")


def _count_trades(settings: Settings) -> int:
    from db.connect import database_connection

    with database_connection(settings, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM market.trades").fetchone()
    return int(row[0]) if row else 0


def other_processes(settings: Settings, sandbox_pid: int | None) -> dict[str, int]:
    """The root pids of the sandbox (when the bench started it) and of the embedded PostgreSQL."""
    from bench.ingest import stack_pids

    pids = {name: pid for name, pid in stack_pids(settings).items() if name == "postgres"}
    if sandbox_pid is not None:
        pids["sandbox"] = sandbox_pid
    return pids


def _cpu_of(pids: dict[str, int]) -> dict[str, float]:
    from bench.ingest import component_cpu_seconds

    return {k: v for k, v in component_cpu_seconds(pids).items() if k != "client"}


async def _run_service(
    settings: Settings, url: str, messages: int, seconds: float
) -> tuple[CommitLog, Any, int, float]:
    from streaming.service import StreamPlan, StreamService

    stop = asyncio.Event()
    log = CommitLog(messages, stop)
    service = StreamService(settings, StreamPlan.of(SOURCE, ["*"], ("trades",), url=url), heartbeat=log)
    loop = asyncio.get_running_loop()
    deadline = loop.call_later(seconds, stop.set)
    started_ns, started_cpu = time.time_ns(), time.process_time()
    try:
        async with asyncio.timeout(seconds + 60):
            report = await service.run(stop)
    finally:
        deadline.cancel()
    return log, report, started_ns, started_cpu


def product_phase(
    settings: Settings,
    base_url: str,
    key: str,
    messages: int,
    seconds: float,
    pids: dict[str, int],
    **query: Any,
) -> tuple[dict[str, Any], CommitLog]:
    """One bounded run of the stream service; the figures and its commit log."""
    _reset_tables(settings)
    cpu_before = _cpu_of(pids)
    url = stream_url(base_url, stall_after=messages, **query)
    log, report, started_ns, started_cpu = asyncio.run(_run_service(settings, url, messages, seconds))
    cpu_after = _cpu_of(pids)
    counters = report.as_dict()
    figures = {
        "query": {"stall_after": messages, **query},
        "sent": sandbox_sent(base_url, key),
        "received": log.messages[-1] if log.messages else 0,  # trades the service parsed and handed on
        "committed_rows": _count_trades(settings),
        "batches": counters["batches"],
        "commit_p50_ms": counters["commit_p50_ms"],
        "commit_p99_ms": counters["commit_p99_ms"],
        "other_cpu_s": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after},
        "connection": {
            k: counters.get(k, 0) for k in ("received", "parsed", "spilled", "dropped", "malformed", "reconnects")
        },
        "span": sustained_span(log, int(messages * WARMUP_FRACTION), started_ns, started_cpu),
    }
    return figures, log


def read_commit_times(settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Every stored trade's transaction start (µs) and time (ms), by transaction then time."""
    from db.connect import database_connection

    with database_connection(settings, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT (extract(epoch FROM ingested_at) * 1000000)::bigint, (extract(epoch FROM ts) * 1000)::bigint"
            " FROM market.trades ORDER BY 1, 2"
        ).fetchall()
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return table[:, 0], table[:, 1]


def naive_phase(settings: Settings, base_url: str, messages: int, seconds: float) -> dict[str, Any]:
    """massive's WebSocketClient with a callback that INSERTs every trade, autocommit."""
    key = f"benchnaive{secrets.token_hex(6)}"
    control = f"{base_url}/_sandbox/streams/keys/{key}"
    httpx.post(control, json={"speed": 0, "stall_after": messages}, timeout=10).raise_for_status()
    _reset_tables(settings)
    # massive logs to its own stdout handler at the root's level (DEBUG under our logging): it would
    # interleave with the report on stdout.
    sdk_logger = logging.getLogger("WebSocketClient")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.WARNING)
    try:
        inserted, span_s = asyncio.run(_naive_consumer(settings, base_url, key, messages, seconds))
    finally:
        sdk_logger.setLevel(level)
        httpx.delete(control, timeout=10)
    return {
        "client": "massive.WebSocketClient + psycopg INSERT per message (autocommit)",
        "messages": inserted,
        "seconds": round(span_s, 3),
        "committed_rows": _count_trades(settings),
    }


async def _naive_consumer(
    settings: Settings, base_url: str, key: str, messages: int, seconds: float
) -> tuple[int, float]:
    from massive import WebSocketClient  # type: ignore[import-untyped]
    from massive.websocket.models import EquityTrade  # type: ignore[import-untyped]

    from db.connect import database_connection

    host = base_url.removeprefix("http://")
    client = WebSocketClient(api_key=key, feed=host, secure=False, subscriptions=[CHANNELS], max_reconnects=0)
    enough = asyncio.Event()
    inserted = 0
    first: float | None = None
    last = 0.0
    with database_connection(settings, autocommit=True) as conn:

        async def handle(items: list[Any]) -> None:
            nonlocal inserted, first, last
            if first is None:
                first = time.perf_counter()
            for m in items:
                if inserted >= messages or not isinstance(m, EquityTrade):
                    continue
                ts = datetime.fromtimestamp(m.timestamp / 1000, UTC)
                conditions = ",".join(str(c) for c in m.conditions) if m.conditions else None
                conn.execute(
                    NAIVE_INSERT,
                    (m.symbol, ts, str(m.exchange), str(m.id), m.price, m.size, conditions, str(m.tape), SOURCE),
                )
                inserted += 1
            last = time.perf_counter()
            if inserted >= messages:
                enough.set()

        task = asyncio.create_task(client.connect(handle))
        try:
            async with asyncio.timeout(seconds):
                await enough.wait()
        except TimeoutError:
            pass  # bounded by time: the rate is over what was inserted so far
        finally:
            await client.close()
            async with asyncio.timeout(15):
                await task
    return inserted, (last - first) if first is not None else 0.0


# ---------------------------------------------------------------------------------------------
# The run


def run(
    settings: Settings,
    *,
    messages: int = 500_000,
    latency_messages: int = 400_000,
    naive_messages: int = 30_000,
    seconds: float = 60.0,
    keep: bool = False,
    sandbox_url: str | None = None,
) -> dict[str, Any]:
    """Every phase against a sandbox of its own (or ``sandbox_url``) into the scratch database;
    dropped unless ``keep``. Each phase stops at its message count or after ``seconds``, whichever
    comes first."""
    if min(messages, latency_messages, naive_messages) < 1 or seconds <= 0:
        raise RequestError("--messages, --latency-messages, --naive-messages and --seconds must be positive")
    if sandbox_url is not None:
        check_sandbox(sandbox_url)
        return _measure(settings, sandbox_url, None, messages, latency_messages, naive_messages, seconds, keep)
    with sandbox_process(settings.sandbox.seed) as (base_url, pid):
        return _measure(settings, base_url, pid, messages, latency_messages, naive_messages, seconds, keep)


def _measure(
    settings: Settings,
    base_url: str,
    sandbox_pid: int | None,
    messages: int,
    latency_messages: int,
    naive_messages: int,
    seconds: float,
    keep: bool,
) -> dict[str, Any]:
    key = f"benchstream{secrets.token_hex(6)}"
    bench = bench_settings(settings, key)
    pids = other_processes(settings, sandbox_pid)
    load: dict[str, list[float]] = {"start": _load_average()}
    sandbox = f"{base_url} ({'started by the bench, pid ' + str(sandbox_pid) if sandbox_pid else 'given'})"
    knobs = ("buffer_size", "batch_max_rows", "batch_max_delay_seconds", "window_seconds", "lateness_seconds")
    parts: dict[str, Any] = {
        "sandbox": sandbox,
        "machine": machine(),
        "load_average": load,
        "streaming_settings": {k: getattr(settings.streaming, k) for k in knobs},
    }
    create_database(settings)
    try:
        load["sustained"] = _load_average()
        parts["sustained"], _ = product_phase(bench, base_url, key, messages, seconds, pids, speed=0)
        load["latency"] = _load_average()
        latency, log = product_phase(
            bench, base_url, key, latency_messages, seconds, pids, rate=LATENCY_RATE, stamp="send"
        )
        latency["sent"] -= parts["sustained"]["sent"]  # the sandbox counts every connection of the key
        tx_us, ts_ms = read_commit_times(bench)
        latency["latencies_ms"] = commit_latencies_ms(log, tx_us, ts_ms).tolist()
        latency.pop("span")
        parts["latency"] = latency
        load["naive"] = _load_average()
        parts["naive"] = naive_phase(bench, base_url, naive_messages, seconds)
        load["end"] = _load_average()
    finally:
        if not keep:
            drop_database(settings)
    return summarize(parts)


def required_keys() -> Sequence[str]:
    """The report's keys every caller may rely on."""
    return (
        "msgs_per_s",
        "consumer_cpu_s",
        "p50_ms",
        "p99_ms",
        "naive_msgs_per_s",
        "ratio_vs_naive",
        "dropped",
        "load_average",
        "machine",
        "targets",
    )
