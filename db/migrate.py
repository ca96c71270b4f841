"""Ordered SQL migrations with a checksummed ledger, then repeatable routines.

Two kinds of file, applied in this order under one session advisory lock (two workers starting at
once serialize):

- ``db/migrations/NNNN_description.sql``, versioned: tables and data. Applied once each, in order,
  each in its own transaction together with its row in ``ops.schema_migrations``, so a failing
  migration leaves nothing behind. A migration already applied whose file has changed is refused:
  history is append-only, fixes go into a new file.
- ``db/routines/NN_description.sql``, repeatable: the CURRENT definition of every view and function
  (``CREATE OR REPLACE``), each living in exactly one file. Applied after the migrations, in the
  order of their NN, whenever their checksum differs from the one in ``ops.schema_routines``
  (a new file, or an edited one), each in its own transaction with its ledger row. To change a
  function, edit its routine. A change ``CREATE OR REPLACE`` cannot make (a new return type or
  argument list, a view losing a column) starts with the ``DROP .. IF EXISTS`` it needs, in the same
  file. Removing a routine file drops nothing: drop its objects in a versioned migration. A
  versioned migration runs before the routines, so it must not rely on a routine's newer
  definition.

A routine whose first line is ``-- edition: timescale`` uses what only TimescaleDB's full edition
has (native compression settings, continuous aggregates and their policies). On the Apache build
(``SHOW timescaledb.license`` = ``apache``) it is skipped with one log line and not recorded, so it
stays pending and applies on the first migration after the database runs the full edition (an
in-place upgrade of the extension, say). Such a routine is idempotent like every other one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from loguru import logger

from core.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
ROUTINES_DIR = Path(__file__).parent / "routines"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_ROUTINE_NAME = re.compile(r"^(?P<order>\d{2})_(?P<name>[a-z0-9_]+)\.sql$")
_EDITION = re.compile(r"^--\s*edition:\s*(?P<edition>[a-z]+)\s*$")
FULL_EDITION = "timescale"  # timescaledb.license of the full (Timescale License) build
_LOCK_KEY = 0x6D61726B  # 'mark': one advisory lock id for the whole project
_CREATE_EXTENSION = re.compile(
    r"^\s*CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?(?P<name>[a-z0-9_]+)\"?", re.IGNORECASE | re.MULTILINE
)
# How to get an extension that is not part of PostgreSQL onto the server, by extension name.
EXTENSION_HINTS = {
    "vector": "pgvector: run `make install` (scripts/install-system.sh builds it for the local PostgreSQL), "
    "or install your distribution's postgresql-<major>-pgvector package on the database server",
    "timescaledb": "TimescaleDB: run `make install` (scripts/install-system.sh builds it for the local PostgreSQL)",
}

LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ops.schema_routines (
    filename    text PRIMARY KEY,
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


@dataclass(frozen=True)
class Routine:
    filename: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def edition(self) -> str | None:
        """The TimescaleDB edition this routine needs (its ``-- edition:`` first line), or None."""
        first = self.sql.split("\n", 1)[0]
        match = _EDITION.match(first)
        return match["edition"] if match else None

    def runs_on(self, edition: str | None) -> bool:
        return self.edition is None or self.edition == edition


@dataclass(frozen=True)
class Applied:
    """What one :func:`migrate` call applied: the pending migrations, then the changed routines."""

    migrations: list[Migration]
    routines: list[Routine]
    # routines left pending because the running edition lacks what they need (not compared: the
    # same database skips them on every call until its edition changes)
    skipped: list[Routine] = field(default_factory=list, compare=False)


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


def discover_routines(directory: Path = ROUTINES_DIR) -> list[Routine]:
    """Every routine file in the order of its NN; refuses misnamed files and a shared NN."""
    routines: dict[str, Routine] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _ROUTINE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"routine file {path.name!r} is misnamed; use NN_lowercase_description.sql (e.g. 50_scanners.sql)"
            )
        order = match["order"]
        if order in routines:
            raise MigrationError(
                f"two routines share order {order}: {routines[order].filename} and {path.name}; "
                "give each its own NN so the order they apply in is explicit"
            )
        routines[order] = Routine(path.name, path.read_text())
    return [routines[o] for o in sorted(routines)]


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


def changed(routines: list[Routine], applied: dict[str, str]) -> list[Routine]:
    """Pure planning: the routines (in order) whose checksum is not the one recorded by filename."""
    return [r for r in routines if applied.get(r.filename) != r.checksum]


def running_edition(conn: psycopg.Connection) -> str | None:
    """``timescaledb.license`` of this session: 'timescale' (full) or 'apache'; None without TimescaleDB."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return row[0] if row and row[0] else None


def _warn_if_extension_outdated(conn: psycopg.Connection) -> None:
    """The server has a newer TimescaleDB than this database runs: say how to update (the
    application role may not; `marketpipe up` does it for the embedded stack)."""
    row = conn.execute(
        "SELECT e.extversion, a.default_version FROM pg_extension e"
        " JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'timescaledb'"
    ).fetchone()
    if row and row[0] != row[1]:
        logger.warning(
            "this database runs TimescaleDB {} and the server has {} installed: update it in place with "
            "`ALTER EXTENSION timescaledb UPDATE` as the first command of a new session of the extension's owner "
            "(`marketpipe up` does it on the embedded stack)",
            row[0],
            row[1],
        )


def required_extensions(sql: str) -> list[str]:
    """The extensions a migration's ``CREATE EXTENSION`` statements name, in order."""
    return [m["name"].lower() for m in _CREATE_EXTENSION.finditer(sql)]


def check_extensions(conn: psycopg.Connection, migration: Migration) -> None:
    """Refuse, before it runs, a migration whose extension the server lacks or this role may not create."""
    for name in required_extensions(migration.sql):
        row = conn.execute(
            "SELECT a.name IS NOT NULL, e.extname IS NOT NULL,"
            " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            " FROM (SELECT 1) one"
            " LEFT JOIN pg_available_extensions a ON a.name = %s"
            " LEFT JOIN pg_extension e ON e.extname = %s",
            (name, name),
        ).fetchone()
        available, created, superuser = row if row else (False, False, False)
        if created:
            continue
        hint = EXTENSION_HINTS.get(name, f"the extension {name!r} on the database server")
        if not available:
            raise MigrationError(
                f"migration {migration.filename} needs the PostgreSQL extension {name!r}, which this server does "
                f"not have installed; install {hint}, then run the migration again (`marketpipe up` on the "
                "embedded stack)"
            )
        trusted = conn.execute(
            "SELECT bool_or(trusted) FROM pg_available_extension_versions WHERE name = %s", (name,)
        ).fetchone()
        if not superuser and not (trusted and trusted[0]):
            raise MigrationError(
                f"migration {migration.filename} needs the extension {name!r}: the server has it, but the role "
                f"{conn.info.user!r} may not create it (only a superuser may); run `CREATE EXTENSION {name};` "
                f"as a superuser in database {conn.info.dbname!r} (`marketpipe up` does it on the embedded stack), "
                "then migrate again"
            )


def applied_migrations(conn: psycopg.Connection) -> list[AppliedMigration]:
    conn.execute(LEDGER_DDL)
    rows = conn.execute("SELECT version, name, checksum FROM ops.schema_migrations ORDER BY version").fetchall()
    return [AppliedMigration(*row) for row in rows]


def applied_routines(conn: psycopg.Connection) -> dict[str, str]:
    """The recorded checksum of every routine applied so far, by filename."""
    conn.execute(LEDGER_DDL)
    return dict(conn.execute("SELECT filename, checksum FROM ops.schema_routines").fetchall())


def _apply(conn: psycopg.Connection, what: str, sql: str, record: str, row: tuple[str, ...]) -> None:
    """One file and its ledger row in one transaction."""
    logger.info("applying {}", what)
    try:
        with conn.transaction():
            conn.execute(sql)  # a trusted project file
            conn.execute(record, row)
    except psycopg.Error as exc:
        raise MigrationError(f"{what} failed and was rolled back: {exc}".strip()) from exc


_RECORD_MIGRATION = "INSERT INTO ops.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
_RECORD_ROUTINE = (
    "INSERT INTO ops.schema_routines (filename, checksum) VALUES (%s, %s)"
    " ON CONFLICT (filename) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()"
)


def migrate(
    conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR, routines_directory: Path = ROUTINES_DIR
) -> Applied:
    """Apply the pending migrations, then the new or changed routines; returns what this call applied."""
    migrations, routines = discover(directory), discover_routines(routines_directory)
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        todo = pending(migrations, applied_migrations(conn))
        for m in todo:
            check_extensions(conn, m)
            _apply(conn, f"migration {m.filename}", m.sql, _RECORD_MIGRATION, (m.version, m.name, m.checksum))
        edition = running_edition(conn)
        _warn_if_extension_outdated(conn)
        redo = changed(routines, applied_routines(conn))
        skipped = [r for r in redo if not r.runs_on(edition)]
        for r in skipped:
            logger.info(
                "routine {} needs the TimescaleDB {} edition and this database runs {}: skipped, it applies "
                "once that edition runs",
                r.filename,
                r.edition,
                edition or "no TimescaleDB",
            )
        redo = [r for r in redo if r.runs_on(edition)]
        for r in redo:
            _apply(conn, f"routine {r.filename}", r.sql, _RECORD_ROUTINE, (r.filename, r.checksum))
        return Applied(todo, redo, skipped)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
