"""Ordered SQL migrations with a checksummed ledger.

Files in ``db/migrations`` are named ``NNNN_description.sql`` and applied in order, each in its own
transaction together with its ledger row, so a failing migration leaves nothing behind. A
migration already applied whose file has changed is refused: history is append-only, fixes go into
a new file. A session advisory lock serializes concurrent ``migrate`` calls (two workers starting
at once).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from loguru import logger

from core.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6D61726B  # 'mark': one advisory lock id for the whole project

LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version}_{self.name}.sql"


@dataclass(frozen=True)
class AppliedMigration:
    version: str
    name: str
    checksum: str


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, ordered; refuses misnamed files and duplicate versions."""
    migrations: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name!r} is misnamed; use NNNN_lowercase_description.sql (e.g. 0003_news.sql)"
            )
        version = match["version"]
        if version in migrations:
            raise MigrationError(
                f"two migrations share version {version}: {migrations[version].filename} and {path.name}; "
                "renumber the newer one"
            )
        migrations[version] = Migration(version, match["name"], path.read_text())
    return [migrations[v] for v in sorted(migrations)]


def pending(migrations: list[Migration], applied: list[AppliedMigration]) -> list[Migration]:
    """Pure planning: which files to apply, after checking that history was not rewritten."""
    by_version = {m.version: m for m in migrations}
    for done in applied:
        current = by_version.get(done.version)
        if current is None:
            raise MigrationError(
                f"migration {done.version}_{done.name}.sql is recorded as applied but its file is missing; "
                "restore the file (history is append-only)"
            )
        if current.checksum != done.checksum:
            raise MigrationError(
                f"migration {current.filename} was edited after it was applied "
                f"(recorded checksum {done.checksum[:12]}, file now {current.checksum[:12]}); "
                "restore the original file and put the change in a new migration"
            )
    done_versions = {a.version for a in applied}
    return [m for m in migrations if m.version not in done_versions]


def applied_migrations(conn: psycopg.Connection) -> list[AppliedMigration]:
    conn.execute(LEDGER_DDL)
    rows = conn.execute("SELECT version, name, checksum FROM ops.schema_migrations ORDER BY version").fetchall()
    return [AppliedMigration(*row) for row in rows]


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply what is pending; returns the migrations applied by this call."""
    migrations = discover(directory)
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        todo = pending(migrations, applied_migrations(conn))
        for migration in todo:
            logger.info("applying migration {}", migration.filename)
            try:
                with conn.transaction():
                    conn.execute(migration.sql)  # type: ignore[arg-type]  # trusted project file
                    conn.execute(
                        "INSERT INTO ops.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {migration.filename} failed and was rolled back: {exc}".strip()
                ) from exc
        return todo
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
