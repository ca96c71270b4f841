"""kill -9 of the ingest process at seeded random points, then a rerun: the hot store ends exact.

After every kill the watermarks must not be ahead of the committed bars; after the final rerun
every expected bar is stored exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.settings import Settings
from db.connect import database_connection
from tests.support.invariants import watermarks_ahead

SYMBOLS = ["KILA", "KILB", "KILC", "KILD", "KILE", "KILF"]
SESSIONS = ("2024-04-01", "2024-04-05")  # five full sessions
EXPECTED = len(SYMBOLS) * 5 * 390
KILLS = 10


def ingest_argv() -> list[str]:
    return [
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


def test_kill_9_at_random_points_then_rerun_is_exact(stack: Settings) -> None:
    rng = random.Random(20261126)
    env = dict(os.environ)
    outcomes = []
    for _ in range(KILLS):
        child = subprocess.Popen(
            ingest_argv(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(rng.uniform(1.5, 7.0))
        killed = child.poll() is None
        if killed:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        outcomes.append(killed)
        assert watermarks_ahead(stack, SYMBOLS) == []
    assert any(outcomes), "no kill landed while the ingest was running"

    final = subprocess.run(ingest_argv(), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    with database_connection(stack) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (symbol, timeframe, ts)) FROM market.bars WHERE symbol = ANY(%s)",
            (SYMBOLS,),
        ).fetchone()
    assert total == distinct == EXPECTED
    assert watermarks_ahead(stack, SYMBOLS) == []
