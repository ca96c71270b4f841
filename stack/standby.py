"""The embedded read replica: a streaming-replication hot standby of the embedded cluster.

``marketpipe up --replica`` creates it once from the running primary with ``pg_basebackup`` (WAL
streamed during the copy, through a physical replication slot that keeps on the primary whatever
WAL the standby has not received yet), then starts it. It lives under ``<state_dir>/replica``, logs
to ``<state_dir>/log/replica.log``, listens on ``database.read_replica.host:port`` and runs the
primary's own configuration (:meth:`EmbeddedPostgres.config`: TimescaleDB preloaded, the same
connection and worker limits, which a standby must not set below its primary's) plus the standby's:
``hot_standby``, ``hot_standby_feedback`` (a scanner's query on the replica is not cancelled by the
primary vacuuming rows it still reads), ``primary_conninfo`` and ``primary_slot_name``, rewritten on
every start so a changed primary port takes effect.

The replication role's password (``database.read_replica.replication_password``, a secret of the
.env) is given to libpq only through a passfile in the private run directory (mode 0600): it is in
no command line, process title, configuration line or log.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from loguru import logger
from psycopg import sql

from core.errors import ConfigurationError, ServiceError
from core.settings import DatabaseSettings
from stack.postgres import EmbeddedPostgres

APPLICATION_NAME = "marketpipe_replica"  # how the standby shows in the primary's pg_stat_replication


class EmbeddedStandby(EmbeddedPostgres):
    """Creates (from the primary), configures, starts and stops the read replica."""

    def __init__(self, settings: DatabaseSettings, state_dir: Path, bindir: Path | None = None) -> None:
        replica = settings.read_replica
        super().__init__(settings.model_copy(update={"host": replica.host, "port": replica.port}), state_dir, bindir)
        self.primary = settings
        self.data_dir = state_dir / "replica"
        self.log_file = state_dir / "log" / "replica.log"
        self.passfile = self.socket_dir / "replica.pgpass"

    def _password(self) -> str:
        secret = self.primary.read_replica.replication_password
        if secret is None or not secret.get_secret_value():
            raise ConfigurationError(
                "the read replica needs database.read_replica.replication_password: set "
                "MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD in the environment or .env "
                "(`make install` adds a random one to .env)"
            )
        return secret.get_secret_value()

    def prepare_primary(self, primary: EmbeddedPostgres) -> None:
        """On the primary: the replication role (its password synced) and the physical slot."""
        replica = self.primary.read_replica
        password = self._password()
        with primary.superuser_connection("postgres") as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (replica.replication_user,)).fetchone()
            conn.execute(
                sql.SQL("{} ROLE {} WITH REPLICATION LOGIN PASSWORD {}").format(
                    sql.SQL("ALTER" if exists else "CREATE"),
                    sql.Identifier(replica.replication_user),
                    sql.Literal(password),
                )
            )
            slot = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (replica.slot,)).fetchone()
            if slot is None:
                conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (replica.slot,))

    def init(self) -> None:
        """Copy the running primary into the data directory, once (a copy that fails leaves nothing)."""
        self._prepare_dirs()
        self._write_passfile()
        if self.initialized():
            return
        partial = self.data_dir.with_name(self.data_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        self._chown(partial)
        logger.info("copying the primary into the read replica at {} (pg_basebackup)", self.data_dir)
        replica = self.primary.read_replica
        try:
            self._run(
                [
                    str(self.bindir / "pg_basebackup"),
                    "-d",
                    self._primary_conninfo(),
                    "-D",
                    str(partial),
                    "-X",
                    "stream",
                    "-S",
                    replica.slot,
                    "-c",
                    "fast",
                    "--no-password",
                ]
            )
        except ServiceError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        (partial / "standby.signal").touch()
        self._chown(partial / "standby.signal")
        self.data_dir.rmdir()  # made empty by _prepare_dirs
        partial.rename(self.data_dir)

    def config(self) -> dict[str, str]:
        replica = self.primary.read_replica
        return {
            **super().config(),
            "hot_standby": "on",
            "hot_standby_feedback": "on",
            "primary_conninfo": f"'{self._primary_conninfo()}'",
            "primary_slot_name": f"'{replica.slot}'",
        }

    def drop_slot(self, primary: EmbeddedPostgres) -> bool:
        """Drop the slot on the primary (after the replica is removed: an unused slot keeps WAL forever)."""
        with primary.superuser_connection("postgres") as conn:
            row = conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (self.primary.read_replica.slot,),
            ).fetchone()
        return row is not None

    def _primary_conninfo(self) -> str:
        p, replica = self.primary, self.primary.read_replica
        return (
            f"host={p.host} port={p.port} user={replica.replication_user} passfile={self.passfile} "
            f"application_name={APPLICATION_NAME}"
        )

    def _write_passfile(self) -> None:
        password = self._password().replace("\\", "\\\\").replace(":", "\\:")
        user = self.primary.read_replica.replication_user
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"*:*:*:{user}:{password}\n")
        self.passfile.chmod(0o600)
        self._chown(self.passfile)
