"""Scratch databases on the stack's PostgreSQL, for work that needs the real schema without touching
the real tables (the storage benchmark migrates one with :func:`db.migrate.migrate`).

Creating a database and the TimescaleDB extension takes more than the application role may do on
the embedded cluster, so there it is done as the cluster's superuser (through its socket); on an
external server (``database.embedded: false``) the application role does it and needs CREATEDB
(docker-compose's role is the server's superuser). The database is owned by the application role.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from core.settings import Settings
from db.connect import database_connection
from stack.postgres import EmbeddedPostgres, create_superuser_extensions


def _admin_connection(settings: Settings, dbname: str) -> psycopg.Connection:
    if settings.database.embedded:
        return EmbeddedPostgres(settings.database, settings.state_dir).superuser_connection(dbname)
    return database_connection(settings, dbname=dbname, autocommit=True)


def database_exists(settings: Settings, name: str) -> bool:
    with database_connection(settings, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def create_database(settings: Settings, name: str, timescaledb_version: str | None = None) -> None:
    """An empty database ``name`` with TimescaleDB (the installed default version, or
    ``timescaledb_version`` when one is named: an older one installed beside it, for the in-place
    update's test), owned by the application role (dropped first if it exists)."""
    drop_database(settings, name)
    with _admin_connection(settings, "postgres") as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(settings.database.user))
        )
    with _admin_connection(settings, name) as conn:
        if timescaledb_version is None:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        else:
            conn.execute(sql.SQL("CREATE EXTENSION timescaledb VERSION {}").format(sql.Literal(timescaledb_version)))
        create_superuser_extensions(conn)


def drop_database(settings: Settings, name: str) -> None:
    """Drop ``name`` if it exists, closing its sessions."""
    with _admin_connection(settings, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
