"""A primary with a read replica of its own for the replica tests: a private embedded cluster and
its standby, started by the real `marketpipe up --replica`, beside the session's lake and Prefect
server (external to it), so pausing the replica's replay never touches the session's database."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.settings import Settings
from db.connect import database_connection
from db.replica import primary_lsn, replica_connection, replica_state
from stack.standby import EmbeddedStandby
from tests.support.stack import REPO, free_port

T = TypeVar("T")
WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class ReplicaStack:
    settings: Settings
    env: dict[str, str]
    up: subprocess.CompletedProcess


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "marketpipe"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
        cwd=REPO,
    )


def replica_environment(session: Settings, state_dir: Path) -> dict[str, str]:
    """MARKETPIPE_* of a stack in ``state_dir`` whose own cluster has an enabled read replica and
    whose lake and Prefect server are the session's."""
    used: set[int] = {session.database.port}
    return {
        "MARKETPIPE_STATE_DIR": str(state_dir),
        "MARKETPIPE_DATABASE__PORT": str(free_port(used)),
        "MARKETPIPE_DATABASE__READ_REPLICA__PORT": str(free_port(used)),
        "MARKETPIPE_DATABASE__READ_REPLICA__ENABLED": "true",
        "MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD": secrets.token_hex(16),
        "MARKETPIPE_LAKE__ENDPOINT": session.lake.endpoint_url,
        "MARKETPIPE_PREFECT__API_URL": session.prefect.resolved_api_url,
        "MARKETPIPE_SANDBOX__ENABLED": "false",
    }


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` in os.environ while the block runs (load_settings reads it), restored after."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


def replayed(settings: Settings, lsn: str) -> bool:
    with replica_connection(settings, autocommit=True) as conn:
        return bool(replica_state(conn, lsn).min_lsn_replayed)


def received(settings: Settings, lsn: str) -> bool:
    with replica_connection(settings, autocommit=True) as conn:
        row = conn.execute("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
    return bool(row and row[0])


def write_and_wait(settings: Settings, statement: str, params: Any = None, *, replay: bool = True) -> str:
    """Run ``statement`` on the primary, then wait until the replica received (and, with ``replay``,
    replayed) it; returns the primary's LSN after it."""
    with database_connection(settings, autocommit=True) as conn:
        conn.execute(statement, params)
        lsn = primary_lsn(conn)
    done = replayed if replay else received
    wait_for(f"the replica {'replaying' if replay else 'receiving'} {lsn}", lambda: done(settings, lsn))
    return lsn


@contextmanager
def replay_paused(settings: Settings) -> Iterator[None]:
    """The standby's WAL replay paused (pg_wal_replay_pause, as its superuser) for the block."""
    standby = EmbeddedStandby(settings.database, settings.state_dir)
    with standby.superuser_connection("postgres") as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        state = "SELECT pg_get_wal_replay_pause_state() = 'paused'"
        wait_for("the replay pausing", lambda: conn.execute(state).fetchone()[0])  # type: ignore[index]
        try:
            yield
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
