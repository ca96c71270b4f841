"""PostgreSQL restarted in the middle of an ingest run.

The test holds a lock on the watermark table so that the run's writers block inside their
transactions (bars written, not committed), then restarts the server under them. The tasks that lost
their connection retry on a new one and the run completes; at no point is a symbol half-written, no
watermark is ever ahead of its bars, and a rerun changes nothing.

The restart hits a private cluster created for this test (same binaries, same migrations), so the
session's cluster, which also serves the Prefect server's own database, keeps running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from core.settings import Settings
from db.connect import database_connection
from tests.support.invariants import watermarks_ahead

SYMBOLS = ["RSTA", "RSTB", "RSTC", "RSTD"]
SESSIONS = ("2024-05-06", "2024-05-10")  # five full sessions


def ingest(settings: Settings, log: Path) -> subprocess.Popen:
    """The ingest CLI against ``settings``' database; output to ``log`` (a pipe could fill and block it)."""
    argv = [
        str(Path(sys.executable).parent / "marketpipe"),
        "ingest",
        "--symbols",
        ",".join(SYMBOLS),
        "--start",
        SESSIONS[0],
        "--end",
        SESSIONS[1],
        "--timeframe",
        "1min",
    ]
    env = {**os.environ, "MARKETPIPE_DATABASE__PORT": str(settings.database.port)}
    with log.open("w") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def finish(run: subprocess.Popen, log: Path) -> tuple[int, str]:
    return run.wait(timeout=300), log.read_text()


def bars_per_symbol(settings: Settings) -> dict[str, int]:
    with database_connection(settings) as conn:
        rows = conn.execute(
            "SELECT symbol, count(*) FROM market.bars_intraday WHERE symbol = ANY(%s) GROUP BY symbol", (SYMBOLS,)
        ).fetchall()
    return dict(rows)


def wait_for_writer_blocked(settings: Settings, run: subprocess.Popen, timeout_s: float = 180) -> int:
    """Until a session of the run waits on the lock held by the test; returns how many wait, bounded."""
    deadline = time.monotonic() + timeout_s
    with database_connection(settings, autocommit=True) as conn:
        while time.monotonic() < deadline and run.poll() is None:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s",
                (settings.database.name,),
            ).fetchone()[0]
            if waiting:
                return waiting
            time.sleep(0.1)
    raise AssertionError(f"no writer of the run blocked within {timeout_s} s (exit code {run.poll()})")


def test_restart_mid_run_retries_and_leaves_every_symbol_whole(
    stack: Settings, private_cluster, tmp_path: Path
) -> None:
    settings, server = private_cluster
    # What an undisturbed run stores (validation may reject a bar or two), from the session's cluster.
    code, output = finish(ingest(stack, tmp_path / "reference.log"), tmp_path / "reference.log")
    assert code == 0, output[-3000:]
    expected = bars_per_symbol(stack)
    assert sorted(expected) == sorted(SYMBOLS)

    # Hold the watermark table so that writers block inside their transaction, after their bars
    # went in and before the commit: the restart then lands exactly on half-written data.
    holder = database_connection(settings)
    holder.execute("LOCK TABLE ops.watermarks IN EXCLUSIVE MODE")
    run = ingest(settings, tmp_path / "run.log")
    assert wait_for_writer_blocked(settings, run) >= 1
    assert bars_per_symbol(settings) == {}  # nothing committed yet

    server.stop()  # fast shutdown: every session is cut and its open transaction rolls back
    holder.close()
    server.start()
    # What the cut transactions wrote is gone: each symbol is whole (a retry already ran) or absent.
    counts = bars_per_symbol(settings)
    assert {symbol: expected[symbol] for symbol in counts} == counts

    # The tasks that lost their connection retry on a new one, and the run completes.
    code, output = finish(run, tmp_path / "run.log")
    assert code == 0, output[-3000:]
    assert "terminating connection due to administrator command" in output
    assert settings.database.password.get_secret_value() not in output

    # Nothing half-written, nothing lost: every symbol whole, watermarks never ahead of their bars.
    assert bars_per_symbol(settings) == expected
    assert watermarks_ahead(settings, SYMBOLS) == []

    # A rerun finds nothing new and changes nothing.
    code, output = finish(ingest(settings, tmp_path / "rerun.log"), tmp_path / "rerun.log")
    assert code == 0, output[-3000:]
    with database_connection(settings) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (symbol, timeframe, ts)) FROM market.bars_intraday WHERE symbol = ANY(%s)",
            (SYMBOLS,),
        ).fetchone()
    assert total == distinct == sum(expected.values())
    assert bars_per_symbol(settings) == expected
    assert watermarks_ahead(settings, SYMBOLS) == []
