"""The embedded PostgreSQL + TimescaleDB cluster owned by the project.

The cluster lives under ``<state_dir>/postgres``, listens on the configured host and port, keeps
its Unix socket in ``<state_dir>/run`` (so it never collides with a system cluster) and runs as a
non-root OS user because PostgreSQL refuses root. The socket trusts whoever reaches it (the
superuser's way in for set-up), so its directory is private to that OS user (mode 0700; root,
which runs the stack, passes anyway): another local user gets "permission denied" before
PostgreSQL is asked. Configuration marketpipe manages is rewritten on
every start into ``marketpipe.conf`` (included from postgresql.conf), so a port change in the
settings takes effect on the next ``marketpipe up`` without touching the data.
"""

from __future__ import annotations

import getpass
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
from loguru import logger
from psycopg import sql

from core.errors import ServiceError
from core.settings import DatabaseSettings
from stack.daemon import process_alive, tail

SUPERUSER = "postgres"


def find_bindir() -> Path:
    """The newest installed PostgreSQL whose share dir has TimescaleDB; else the newest one."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    for postgres in candidates:
        share = Path("/usr/share/postgresql") / postgres.parent.parent.name / "extension"
        if (share / "timescaledb.control").exists():
            return postgres.parent
    if candidates:
        return candidates[0].parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "postgres").exists():
            return Path(out.stdout.strip())
    raise ServiceError(
        "no PostgreSQL server is installed (looked in /usr/lib/postgresql/*/bin); "
        "run `make install` (or scripts/install-system.sh) to install PostgreSQL and TimescaleDB"
    )


def version_newer(candidate: str, current: str) -> bool:
    """Whether version ``candidate`` (e.g. '2.28.3') is newer than ``current`` ('2.19.3')."""

    def parts(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", version.split("-")[0]))

    return parts(candidate) > parts(current)


# Extensions a migration creates that only a superuser may (their control files are not trusted):
# created at bootstrap when the server has them. Where the server lacks one, the migration that needs
# it stops with how to install it (db.migrate.check_extensions).
SUPERUSER_EXTENSIONS = ("vector",)  # pgvector: news.story_embeddings (migration 0022)


def create_superuser_extensions(conn: psycopg.Connection) -> list[str]:
    """Create each of :data:`SUPERUSER_EXTENSIONS` the server has in ``conn``'s database (a superuser
    connection); returns those present afterwards."""
    present = []
    for name in SUPERUSER_EXTENSIONS:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))
            present.append(name)
    return present


def timescaledb_installed(bindir: Path) -> bool:
    major = bindir.parent.name
    return (Path("/usr/share/postgresql") / major / "extension" / "timescaledb.control").exists()


class EmbeddedPostgres:
    """Creates, configures, starts and stops the project's own cluster."""

    def __init__(self, settings: DatabaseSettings, state_dir: Path, bindir: Path | None = None) -> None:
        self.settings = settings
        self.data_dir = state_dir / "postgres"
        self.socket_dir = state_dir / "run"
        self.log_file = state_dir / "log" / "postgres.log"
        self._bindir = bindir
        self.os_user = settings.os_user or (SUPERUSER if os.geteuid() == 0 else getpass.getuser())

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    # -- lifecycle -------------------------------------------------------------------------
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def pid(self) -> int | None:
        """The postmaster's pid when it runs, from postmaster.pid (first line)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if process_alive(pid) else None

    def running_port(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, ValueError, IndexError):
            return None

    def init(self) -> None:
        if not timescaledb_installed(self.bindir):
            raise ServiceError(
                f"TimescaleDB is not installed for PostgreSQL {self.bindir.parent.name}; "
                "run `make install` (scripts/install-system.sh) first"
            )
        self._prepare_dirs()
        if self.initialized():
            return
        logger.info("initializing PostgreSQL cluster in {} (OS user {})", self.data_dir, self.os_user)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write("\ninclude_if_exists = 'marketpipe.conf'\n")

    def write_config(self) -> None:
        """Settings marketpipe owns; rewritten on every start."""
        path = self.data_dir / "marketpipe.conf"
        path.write_text("".join(f"{k} = {v}\n" for k, v in self.config().items()))
        self._chown(path)

    def config(self) -> dict[str, str]:
        """The lines of ``marketpipe.conf``. A standby (:mod:`stack.standby`) runs the same ones plus
        its own: it needs the primary's preload libraries and at least its connection and worker limits."""
        return {
            "listen_addresses": f"'{self.settings.host}'",
            "port": str(self.settings.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0700",
            # pg_prewarm (contrib): its autoprewarm worker saves the list of cached blocks every 5 min and
            # loads them again at start, so a restart does not leave the news search's HNSW graphs to be
            # read from the OS cache one page at a time (bench/news_search.py: p95 113 ms cold, 20 ms
            # restored, at 1M stories)
            "shared_preload_libraries": "'timescaledb,pg_prewarm'",
            "timescaledb.telemetry_level": "off",
            # The job scheduler (full edition): one scheduler per database plus a worker per running
            # job (compression policies, continuous-aggregate refreshes); PostgreSQL's default of 8
            # worker processes leaves jobs "failed to start a background worker".
            "timescaledb.max_background_workers": "16",
            "max_worker_processes": "32",
            "max_connections": "200",
            # The HNSW graphs a news search without a time range walks (every chunk's: 1.1 GB at 1M
            # stories, migration 0024) must stay in shared_buffers: a page read from the OS cache
            # instead costs ~8 us, ~10 ms per chunk (bench/news_search.py). 3 GB of 24 GiB; pages are
            # allocated as they are used.
            "shared_buffers": "3GB",
            "max_wal_size": "2GB",
            "password_encryption": "scram-sha-256",
            # Streaming replication to the read replica (`marketpipe up --replica`): PostgreSQL's
            # defaults, stated because the standby depends on them.
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
        }

    def start(self) -> bool:
        """Start the cluster; False when it was already running."""
        if self.pid() is not None:
            return False
        self.write_config()
        logger.info("starting PostgreSQL on {}:{}", self.settings.host, self.settings.port)
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-s",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
            ]
        )
        return True

    def stop(self) -> bool:
        if self.pid() is None:
            return False
        logger.info("stopping PostgreSQL (pid {})", self.pid())
        self._run([str(self.bindir / "pg_ctl"), "stop", "-w", "-t", "60", "-s", "-m", "fast", "-D", str(self.data_dir)])
        return True

    def bootstrap(self) -> None:
        """Application role, databases and extensions; idempotent, and syncs a changed password."""
        if self.settings.password is None:
            raise ServiceError("database.password is not set; cannot create the application role")
        with self.superuser_connection("postgres") as conn:
            role = self.settings.user
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(role), sql.Literal(self.settings.password.get_secret_value())
                )
            )
            for dbname in (self.settings.name, self.settings.prefect_database):
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(role))
                    )
        with self.superuser_connection(self.settings.name) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            create_superuser_extensions(conn)
        with self.superuser_connection(self.settings.prefect_database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    def update_extensions(self) -> list[str]:
        """Update TimescaleDB in place in every database whose extension is older than the version
        installed on disk (a state dir created on 2.19.3, say, after `make install` brought 2.28.3):
        ``ALTER EXTENSION timescaledb UPDATE``, as the first command of a fresh session, which is
        what TimescaleDB requires (a session that ran anything else has the old library loaded).
        Data and catalog stay; returns ``"<db>: <old> -> <new>"`` per database updated."""
        with self.superuser_connection("postgres") as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"
                ).fetchall()
            ]
        updated = []
        for name in names:
            with self.superuser_connection(name) as conn:
                row = conn.execute(
                    "SELECT e.extversion, a.default_version FROM pg_extension e"
                    " JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'timescaledb'"
                ).fetchone()
            if row is None or not version_newer(row[1], row[0]):
                continue
            logger.info("updating TimescaleDB in database {} from {} to {} in place", name, row[0], row[1])
            with self.superuser_connection(name) as conn:
                try:
                    conn.execute("ALTER EXTENSION timescaledb UPDATE")
                except psycopg.Error as exc:
                    raise ServiceError(
                        f"updating TimescaleDB in database {name!r} from {row[0]} to {row[1]} failed: {exc}; "
                        "the database is unchanged (the update is one transaction); see the PostgreSQL log "
                        f"{self.log_file}"
                    ) from exc
            updated.append(f"{name}: {row[0]} -> {row[1]}")
        return updated

    def superuser_connection(self, dbname: str) -> psycopg.Connection:
        try:
            return psycopg.connect(
                host=str(self.socket_dir),
                port=self.settings.port,
                user=SUPERUSER,
                dbname=dbname,
                autocommit=True,
                connect_timeout=10,
            )
        except psycopg.OperationalError as exc:
            raise ServiceError(f"cannot reach the embedded cluster through {self.socket_dir}: {exc}") from exc

    # -- helpers ---------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        for directory in (self.data_dir.parent, self.socket_dir, self.log_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        for path in (self.data_dir, self.socket_dir, self.log_file.parent):
            self._chown(path)
        self.socket_dir.chmod(0o700)  # also a state dir made before the socket was private
        if not self.log_file.exists():
            self.log_file.touch()
        self._chown(self.log_file)
        self._check_traversable(self.data_dir.parent)

    def _check_traversable(self, directory: Path) -> None:
        if os.geteuid() != 0 or self.os_user == "root":
            return
        for parent in [directory, *directory.parents]:
            if parent.exists() and not parent.stat().st_mode & 0o001:
                raise ServiceError(
                    f"the state directory {directory} is not reachable by the OS user {self.os_user!r} "
                    f"because {parent} is not searchable by others (mode {oct(parent.stat().st_mode & 0o777)}); "
                    f"choose a state_dir outside it or run `chmod o+x {parent}`"
                )

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0 and self.os_user != "root":
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str]) -> None:
        if os.geteuid() == 0 and self.os_user != "root":
            argv = ["runuser", "-u", self.os_user, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        if result.returncode != 0:
            log_tail = tail(self.log_file)
            raise ServiceError(
                f"{Path(argv[argv.index('--') + 1] if '--' in argv else argv[0]).name} failed "
                f"(exit {result.returncode}): {(result.stderr or result.stdout).strip()}"
                + (f"\nlast lines of {self.log_file}:\n{log_tail}" if log_tail else "")
            )
