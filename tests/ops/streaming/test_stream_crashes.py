"""The stream under crashes: `marketpipe stream --hybrid` killed with SIGKILL mid-session and started
again, and PostgreSQL restarted under a running stream. Either way the stored day equals the vendor's
REST day (trades and minute bars): no gap, no duplicate.

The sandbox replays 2024-06-03 from 10:00 at 120x on a clock the test's connections share, so what
the stream misses while it is down exists only over REST. Every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from core.settings import Settings
from db.connect import database_connection
from streaming.service import StreamPlan, StreamService
from tests.support.processes import stop_process_group
from tests.support.streaming import assert_stored_equals_batch, delete_symbols, new_symbols, stream_url

BIN = Path(sys.executable).parent


@pytest.fixture
def crash_symbols(stack: Settings):
    names = new_symbols("KX")
    yield names
    delete_symbols(stack, names)


def stored_trades(settings: Settings, symbols: list[str]) -> int:
    with database_connection(settings) as conn:
        return int(conn.execute("SELECT count(*) FROM market.trades WHERE symbol = ANY(%s)", (symbols,)).fetchone()[0])


def wait_for_trades(settings: Settings, symbols: list[str], more_than: int, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        count = stored_trades(settings, symbols)
        if count > more_than:
            return count
        time.sleep(0.5)
    raise AssertionError(f"no more than {more_than} trades stored within {seconds} s")


def start_stream(symbols: list[str], url: str, log: Path) -> subprocess.Popen:
    argv = [str(BIN / "marketpipe"), "stream", "--source", "polygon", "--symbols", ",".join(symbols)]
    argv += ["--datasets", "trades,bars", "--hybrid", "--url", url]
    with log.open("a") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_kill_9_mid_session_then_a_hybrid_restart_stores_the_vendors_day(stack, crash_symbols, tmp_path) -> None:
    url = stream_url(stack, uuid.uuid4().hex)
    log = tmp_path / "stream.log"
    first = start_stream(crash_symbols, url, log)
    try:
        before = wait_for_trades(stack, crash_symbols, 0)
        wait_for_trades(stack, crash_symbols, before + 20)  # streaming, not only caught up
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    time.sleep(2)  # four market minutes pass while nothing runs
    at_restart = stored_trades(stack, crash_symbols)
    second = start_stream(crash_symbols, url, log)
    try:
        wait_for_trades(stack, crash_symbols, at_restart + 40)
        time.sleep(2)
    finally:
        stop_process_group(second, grace_seconds=30)  # SIGTERM: the stream drains and exits
    assert second.returncode == 0, log.read_text()[-3000:]
    assert "caught up" in log.read_text()
    assert assert_stored_equals_batch(stack, stack, crash_symbols) > 100


def test_postgresql_restarted_under_a_running_stream_loses_nothing(stack, private_cluster) -> None:
    settings, server = private_cluster
    symbols = new_symbols("PG")
    plan = StreamPlan.of("polygon", symbols, ("trades", "bars"), hybrid=True, url=stream_url(stack, uuid.uuid4().hex))

    async def scenario() -> dict:
        service = StreamService(settings, plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        for _ in range(200):  # up to 40 s until the stream has committed batches
            if service.report.batches > 10:
                break
            await asyncio.sleep(0.2)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(2)  # the stream goes on reading while the database is down
        await asyncio.to_thread(server.start)
        for _ in range(200):
            if service.report.database_retries > 0 and service.report.batches > 30:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        stop.set()
        report = await asyncio.wait_for(runner, 60)
        return report.as_dict()

    report = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert report["database_retries"] >= 1 and report["spilled"] == 0 and report["dropped"] == 0
    assert assert_stored_equals_batch(settings, stack, symbols) > 100
