"""`marketpipe up --replica`: a streaming hot standby of the embedded cluster, supervised with the
stack, shown by `marketpipe status`, stopped by `marketpipe down`; its secret in no log or title."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from db.connect import database_connection
from db.replica import replica_connection
from stack.postgres import EmbeddedPostgres
from stack.standby import APPLICATION_NAME, EmbeddedStandby
from tests.support.replica import ReplicaStack, cli, write_and_wait


def test_up_replica_starts_a_streaming_standby_that_follows_the_primary(replica_stack: ReplicaStack) -> None:
    settings = replica_stack.settings
    assert "started  replica" in replica_stack.up.stdout
    primary = EmbeddedPostgres(settings.database, settings.state_dir)
    with primary.superuser_connection("postgres") as conn:
        row = conn.execute(
            "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s", (APPLICATION_NAME,)
        ).fetchone()
        slot = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (settings.database.read_replica.slot,)
        ).fetchone()
    assert row == ("streaming", "async")
    assert slot == (True,)

    write_and_wait(settings, "CREATE TABLE IF NOT EXISTS public.replica_probe (n int)")
    write_and_wait(settings, "INSERT INTO public.replica_probe VALUES (7)")
    with replica_connection(settings, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM public.replica_probe WHERE n = 7").fetchone() == (1,)
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO public.replica_probe VALUES (8)")


def test_status_shows_the_replica_and_its_lag(replica_stack: ReplicaStack) -> None:
    result = cli(replica_stack.env, "status", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    replica = report["components"]["replica"]
    port = replica_stack.settings.database.read_replica.port
    assert replica["healthy"] and replica["address"].endswith(f":{port}") and replica["pid"]
    assert "standby of" in replica["detail"] and "replay lag" in replica["detail"]
    assert report["replication"]["in_recovery"] is True and report["replication"]["lagging"] is False
    text = cli(replica_stack.env, "status")
    assert any(line.startswith("replica") and "healthy" in line for line in text.stdout.splitlines())


def test_the_replication_secret_is_in_no_log_or_process_title(replica_stack: ReplicaStack) -> None:
    settings = replica_stack.settings
    secret = settings.database.read_replica.replication_password.get_secret_value()  # type: ignore[union-attr]
    standby = EmbeddedStandby(settings.database, settings.state_dir)
    logs = list((settings.state_dir / "log").glob("*.log"))
    assert standby.log_file in logs
    for log in logs:
        assert secret not in log.read_text(errors="replace"), log
    titles = [p.read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline") if _readable(p)]
    assert any(b"walreceiver" in t or b"replica" in t for t in titles)
    assert not any(secret.encode() in t for t in titles)
    conf = (standby.data_dir / "marketpipe.conf").read_text()
    assert "primary_conninfo" in conf and secret not in conf and "passfile=" in conf
    assert secret not in replica_stack.up.stdout + replica_stack.up.stderr


def test_down_stops_the_replica_and_up_starts_it_again(replica_stack: ReplicaStack) -> None:
    settings = replica_stack.settings
    standby = EmbeddedStandby(settings.database, settings.state_dir)
    try:
        down = cli(replica_stack.env, "down")
        assert down.returncode == 0 and "replica" in down.stdout, down.stdout + down.stderr
        assert standby.pid() is None
        status = cli(replica_stack.env, "status")
        assert status.returncode == 1
        assert any(line.startswith("replica") and "not running" in line for line in status.stdout.splitlines())
    finally:
        again = cli(replica_stack.env, "up", "--replica")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "started  replica" in again.stdout
    write_and_wait(settings, "CREATE TABLE IF NOT EXISTS public.replica_restart (n int)")
    with database_connection(settings, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True
