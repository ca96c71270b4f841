"""The embedded stack for real: PostgreSQL+TimescaleDB, the S3 lake, the Prefect server."""

from __future__ import annotations

import json
import re
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from core.errors import MigrationError, StorageError
from core.settings import Settings
from db.connect import database_connection
from db.migrate import MIGRATIONS_DIR, ROUTINES_DIR, Applied, migrate
from stack.postgres import EmbeddedPostgres, create_superuser_extensions
from stack.supervisor import Stack
from storage.lake import Lake
from tests.support.cli import run_cli


# -- status ---------------------------------------------------------------------------------
# Through the console script itself (the other CLI tests run the app in process): the entry point
# end to end against the running stack.
def test_status_json_reports_every_component_healthy(stack: Settings, marketpipe_cli) -> None:
    result = marketpipe_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    expected = {"postgres", "lake", "prefect"} | ({"sandbox"} if stack.sandbox.enabled else set())
    assert set(status["components"]) == expected
    for name, component in status["components"].items():
        assert component["healthy"] is True, (name, component)
        assert isinstance(component["pid"], int)
        assert component["address"]
    assert status["components"]["postgres"]["address"] == f"127.0.0.1:{stack.database.port}"
    assert status["components"]["prefect"]["address"] == f"http://127.0.0.1:{stack.prefect.port}"
    assert status["timescaledb"]["edition"] in ("apache", "timescale")
    assert status["timescaledb"]["version"].count(".") == 2


def test_cluster_runs_as_non_root_with_timescaledb_preloaded(stack: Settings) -> None:
    server = EmbeddedPostgres(stack.database, stack.state_dir)
    with server.superuser_connection(stack.database.name) as conn:
        assert conn.execute("SHOW shared_preload_libraries").fetchone()[0] == "timescaledb,pg_prewarm"
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
    with database_connection(stack, dbname=stack.database.prefect_database) as prefect_conn:
        ext = prefect_conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        assert ext is not None
    pid = server.pid()
    assert Path(f"/proc/{pid}").stat().st_uid != 0


# -- migrations -----------------------------------------------------------------------------
@pytest.fixture
def scratch_db(stack: Settings):
    """A fresh database with TimescaleDB, owned by the application role, dropped afterwards."""
    server = EmbeddedPostgres(stack.database, stack.state_dir)
    name = "migration_scratch"
    with server.superuser_connection("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name} OWNER {stack.database.user}")
    with server.superuser_connection(name) as conn:
        conn.execute("CREATE EXTENSION timescaledb")
        create_superuser_extensions(conn)  # pgvector, as the stack's bootstrap does
    with database_connection(stack, dbname=name, autocommit=True) as conn:
        yield conn
    with server.superuser_connection("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migrations_fresh_then_rerun(scratch_db: psycopg.Connection) -> None:
    applied = migrate(scratch_db)
    assert [m.filename for m in applied.migrations][:2] == ["0001_schemas.sql", "0002_bars.sql"]
    schemas = {r[0] for r in scratch_db.execute("SELECT nspname FROM pg_namespace").fetchall()}
    assert {"market", "features", "ops"} <= schemas
    assert migrate(scratch_db) == Applied([], [])  # a re-run applies nothing
    ledger = scratch_db.execute("SELECT count(*) FROM ops.schema_migrations").fetchone()[0]
    assert ledger == len(applied.migrations)


def test_tampered_migration_is_refused(scratch_db: psycopg.Connection, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    migrate(scratch_db, copy)
    target = copy / "0002_bars.sql"
    target.write_text(target.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match=r"0002_bars\.sql was edited after it was applied"):
        migrate(scratch_db, copy)


def test_failing_migration_leaves_nothing(scratch_db: psycopg.Connection, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    (copy / "9999_broken.sql").write_text("CREATE TABLE ops.half_done (x int);\nSELECT no_such_function();\n")
    with pytest.raises(MigrationError, match=r"9999_broken\.sql failed and was rolled back"):
        migrate(scratch_db, copy)
    assert scratch_db.execute("SELECT to_regclass('ops.half_done')").fetchone()[0] is None
    assert scratch_db.execute("SELECT count(*) FROM ops.schema_migrations WHERE version = '9999'").fetchone()[0] == 0


def _routine_ledger(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT filename, checksum FROM ops.schema_routines").fetchall())


def test_routines_apply_after_migrations_then_only_when_their_checksum_changes(
    scratch_db: psycopg.Connection, tmp_path: Path
) -> None:
    routines = tmp_path / "routines"
    shutil.copytree(ROUTINES_DIR, routines)
    first = migrate(scratch_db, MIGRATIONS_DIR, routines)
    assert [r.filename for r in first.routines] == sorted(p.name for p in routines.glob("*.sql"))
    assert _routine_ledger(scratch_db) == {r.filename: r.checksum for r in first.routines}

    target = routines / "40_scan_helpers.sql"
    target.write_text(target.read_text() + "\nCOMMENT ON FUNCTION scan.rank_key(double precision, text) IS 'v2';\n")
    second = migrate(scratch_db, MIGRATIONS_DIR, routines)

    assert second.migrations == [] and [r.filename for r in second.routines] == ["40_scan_helpers.sql"]
    assert _routine_ledger(scratch_db)["40_scan_helpers.sql"] == second.routines[0].checksum
    comment = "SELECT obj_description('scan.rank_key(double precision, text)'::regprocedure, 'pg_proc')"
    assert scratch_db.execute(comment).fetchone()[0] == "v2"
    assert migrate(scratch_db, MIGRATIONS_DIR, routines) == Applied([], [])  # unchanged: nothing re-applied


def test_a_database_migrated_before_routines_existed_takes_them_all(
    scratch_db: psycopg.Connection, tmp_path: Path
) -> None:
    migrate(scratch_db, MIGRATIONS_DIR, tmp_path)  # no routines yet: the ledger of a deployed database
    upgraded = migrate(scratch_db)
    assert upgraded.migrations == [] and len(upgraded.routines) == len(list(ROUTINES_DIR.glob("*.sql")))


def test_every_view_and_function_of_the_schema_lives_in_one_routine(scratch_db: psycopg.Connection) -> None:
    migrate(scratch_db)
    # continuous aggregates (full edition) have no CREATE OR REPLACE: IF NOT EXISTS, in one routine too
    created = re.compile(
        r"^CREATE (?:OR REPLACE (?:FUNCTION|VIEW)|MATERIALIZED VIEW IF NOT EXISTS) ([a-z_]+\.[a-z_0-9]+)", re.M
    )
    defined = [name for path in ROUTINES_DIR.glob("*.sql") for name in created.findall(path.read_text())]
    in_database = {
        row[0]
        for row in scratch_db.execute(
            "SELECT n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname IN ('market', 'scan', 'features', 'ops')"
            " UNION SELECT schemaname || '.' || viewname FROM pg_views"
            " WHERE schemaname IN ('market', 'scan', 'features', 'ops')"
        ).fetchall()
    }
    assert len(defined) == len(set(defined))  # each once
    assert set(defined) == in_database


def test_failing_routine_is_rolled_back_and_not_recorded(scratch_db: psycopg.Connection, tmp_path: Path) -> None:
    routines = tmp_path / "routines"
    shutil.copytree(ROUTINES_DIR, routines)
    (routines / "99_broken.sql").write_text("CREATE VIEW ops.half_done AS SELECT 1;\nSELECT no_such_function();\n")
    with pytest.raises(MigrationError, match=r"routine 99_broken\.sql failed and was rolled back"):
        migrate(scratch_db, MIGRATIONS_DIR, routines)
    assert scratch_db.execute("SELECT to_regclass('ops.half_done')").fetchone()[0] is None
    assert "99_broken.sql" not in _routine_ledger(scratch_db) and "50_scanners.sql" in _routine_ledger(scratch_db)


# -- hot store ------------------------------------------------------------------------------
def test_bars_hypertables_round_trip_with_chunk_interval_by_timeframe(stack: Settings) -> None:
    with database_connection(stack) as conn:
        intervals = dict(
            conn.execute(
                "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
                "WHERE hypertable_schema = 'market'"
            ).fetchall()
        )
        assert intervals["bars_intraday_store"].days == 1
        assert intervals["bars_daily_store"].days == 30
        ts = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
        with conn.transaction(force_rollback=True):
            conn.execute(
                "INSERT INTO market.bars_intraday (symbol, timeframe, ts, open, high, low, close, volume, source) "
                "VALUES ('RT.TEST', '1min', %s, 10.5, 11.25, 10.0, 11.0, 12345, 'test')",
                (ts,),
            )
            row = conn.execute(
                "SELECT ts, open, high, low, close, volume FROM market.bars WHERE symbol = 'RT.TEST'"
            ).fetchone()
            assert row == (ts, 10.5, 11.25, 10.0, 11.0, 12345)
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(
                    "INSERT INTO market.bars_intraday (symbol, timeframe, ts, open, high, low, close, volume, source) "
                    "VALUES ('RT.TEST', '1min', %s, 1, 1, 1, 1, 1, 'test')",
                    (ts,),
                )


# -- lake -----------------------------------------------------------------------------------
def test_lake_round_trip_bytes_and_parquet(stack: Settings) -> None:
    lake = Lake.from_settings(stack.lake)
    lake.put_bytes("tests/hello.txt", b"hello lake")
    assert lake.get_bytes("tests/hello.txt") == b"hello lake"
    assert lake.exists("tests/hello.txt")
    assert not lake.exists("tests/absent.txt")

    table = pa.table({"symbol": ["A", "B"], "close": [1.5, 2.5]})
    size = lake.write_parquet("tests/t.parquet", table, compression="zstd")
    assert size > 0
    assert lake.read_parquet("tests/t.parquet").equals(table)
    keys = {o.key for o in lake.list("tests/")}
    assert {"tests/hello.txt", "tests/t.parquet"} <= keys

    fs = lake.filesystem()
    with fs.open_input_file(f"{stack.lake.bucket}/tests/hello.txt") as fh:
        assert fh.read() == b"hello lake"
    lake.delete("tests/hello.txt")
    assert not lake.exists("tests/hello.txt")


def test_lake_enforces_credentials_without_leaking_them(stack: Settings) -> None:
    wrong = "definitely-not-the-secret"
    lake = Lake(stack.lake.endpoint_url, "nobody", wrong, stack.lake.bucket, stack.lake.region)
    with pytest.raises(StorageError) as err:
        lake.get_bytes("anything")
    assert "InvalidAccessKeyId" in str(err.value) or "SignatureDoesNotMatch" in str(err.value)
    assert wrong not in str(err.value)


# -- Prefect --------------------------------------------------------------------------------
def test_flow_run_is_recorded_by_the_server(stack: Settings) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    from flows.smoke import smoke

    result = smoke()
    assert result["bars"] == 3
    with get_client(sync_client=True) as client:
        assert str(client.api_url).startswith(f"http://127.0.0.1:{stack.prefect.port}")
        run = client.read_flow_run(result["flow_run_id"])
    assert run.state.type == StateType.COMPLETED
    assert run.name == "smoke-cli"
    assert Lake.from_settings(stack.lake).exists(result["lake_key"])


# -- CLI lifecycle --------------------------------------------------------------------------
def test_up_twice_reinstalls_and_restarts_nothing(stack: Settings) -> None:
    before = Stack(stack).status()
    result = run_cli("up")
    assert result.returncode == 0, result.stderr
    assert "already" in result.stdout
    assert "started " not in result.stdout
    after = Stack(stack).status()
    assert {n: c.pid for n, c in after.components.items()} == {n: c.pid for n, c in before.components.items()}


def test_down_with_nothing_running(tmp_path: Path) -> None:
    empty = tmp_path / "empty-state"
    result = run_cli("--state-dir", str(empty), "down")
    assert result.returncode == 0, result.stderr
    assert "nothing was running" in result.stdout


def test_status_of_a_stopped_stack_exits_non_zero(tmp_path: Path) -> None:
    result = run_cli("--state-dir", str(tmp_path / "nothing"), "--db-port", "1", "status", "--json")
    assert result.returncode == 1
    status = json.loads(result.stdout)
    assert status["components"]["postgres"]["healthy"] is False
    assert status["components"]["postgres"]["detail"] == "not running"


def test_port_taken_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        state = tmp_path / "other"
        state.mkdir(mode=0o755)
        result = run_cli("--state-dir", str(state), "--db-port", str(port), "up")
    assert result.returncode != 0
    assert f"port {port}" in result.stderr
    assert "database.port" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (state / "postgres").exists()  # nothing was created before the check


def test_invalid_setting_on_the_command_line_is_one_clear_line() -> None:
    result = run_cli("--set", "quality.validation_mode=sloppy", "status")
    assert result.returncode == 2
    assert "quality.validation_mode = 'sloppy'" in result.stderr
    assert "'strict' or 'lenient'" in result.stderr
    assert "Traceback" not in result.stderr
