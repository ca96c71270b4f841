"""`marketpipe stream tail` when PostgreSQL restarts under it, or stays down.

Each test restarts a private cluster (same binaries, same migrations; tests/conftest.py), so the
session's cluster, which also serves the Prefect server, keeps running. Every wait is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from core.model import BARS, frame
from core.settings import Settings
from db.connect import database_connection
from storage.streams import commit_stream_batch
from tests.support.stack import REPO

BIN = Path(sys.executable).parent
T0 = pd.Timestamp("2026-11-30 14:31", tz="UTC")


def bar_at(minute: int, close: float) -> pd.DataFrame:
    values = {"open": 100.0, "high": max(100.5, close), "low": 99.5, "close": close, "volume": 1000, "vwap": 100.1}
    return frame(
        BARS,
        {
            "symbol": ["RCNA"],
            "ts": [T0 + pd.Timedelta(minutes=minute)],
            "timeframe": ["1min"],
            **{k: [v] for k, v in values.items()},
            "trade_count": [4],
            "source": ["polygon"],
        },
        what="test bar",
    )


def start_tail(settings: Settings, out: Path, err: Path, *args: str) -> subprocess.Popen:
    argv = [str(BIN / "marketpipe"), "stream", "tail", "--symbols", "RCNA", *args]
    env = {**os.environ, "MARKETPIPE_DATABASE__PORT": str(settings.database.port)}
    with out.open("w") as stdout, err.open("w") as stderr:
        return subprocess.Popen(argv, stdout=stdout, stderr=stderr, text=True, env=env, cwd=REPO)


def wait_until_listening(settings: Settings, tail: subprocess.Popen) -> None:
    with database_connection(settings, autocommit=True) as conn:
        for _ in range(600):
            if tail.poll() is not None:
                break
            found = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'").fetchone()
            if found and found[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"the tail did not listen within 30 s (exit code {tail.poll()})")


def wait_for_lines(out: Path, tail: subprocess.Popen, count: int) -> list[str]:
    for _ in range(600):
        lines = out.read_text().splitlines()
        if len(lines) >= count or tail.poll() is not None:
            return lines
        time.sleep(0.05)
    return out.read_text().splitlines()


def commit(settings: Settings, bars: pd.DataFrame) -> int:
    with database_connection(settings, autocommit=True) as conn:
        seq = commit_stream_batch(conn, final_bars=bars).announcements[0].seq
    assert seq is not None
    return seq


def test_a_tail_goes_on_after_postgresql_restarts_and_prints_what_was_committed_meanwhile(
    private_cluster, tmp_path: Path
) -> None:
    settings, server = private_cluster
    out, err = tmp_path / "tail.out", tmp_path / "tail.err"
    tail = start_tail(settings, out, err, "--count", "2", "--reconnect-for", "120")
    try:
        wait_until_listening(settings, tail)
        commit(settings, bar_at(0, 100.3))
        assert len(wait_for_lines(out, tail, 1)) == 1, err.read_text()[-3000:]
        server.stop()
        server.start()
        commit(settings, bar_at(1, 100.5))  # likely before the tail is back: read from its number
        code = tail.wait(timeout=120)
    finally:
        if tail.poll() is None:
            tail.kill()
    closes = [line.split()[1:3] + line.split()[10:12] for line in out.read_text().splitlines()]
    assert code == 0, err.read_text()[-3000:]
    assert closes == [["14:31:00", "RCNA", "c", "100.3000"], ["14:32:00", "RCNA", "c", "100.5000"]]
    assert "reconnecting in" in err.read_text()


def test_a_tail_whose_database_stays_down_gives_up_and_says_where_to_resume(private_cluster, tmp_path: Path) -> None:
    settings, server = private_cluster
    out, err = tmp_path / "tail.out", tmp_path / "tail.err"
    tail = start_tail(settings, out, err, "--reconnect-for", "3")
    try:
        wait_until_listening(settings, tail)
        seq = commit(settings, bar_at(0, 100.3))
        assert len(wait_for_lines(out, tail, 1)) == 1, err.read_text()[-3000:]
        server.stop()
        code = tail.wait(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
    text = err.read_text()
    assert code != 0, text[-3000:]
    assert "error: subscribe_bars gave up reconnecting to the database after" in text, text[-3000:]
    assert f"subscribe again with since={seq} to resume without a gap" in text
    assert f"tail stopped at change {seq} (resume with --since {seq})" in text
