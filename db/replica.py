"""Reads on the streaming read replica, writes on the primary.

``database.read_replica`` names a hot standby of the hot store (``marketpipe up --replica`` runs the
embedded one). :func:`read_connection` is where a reader asks for a connection: with the replica
enabled it connects there and asks the standby how far behind it is (:func:`replica_state`, one
query); the replica serves the read when it meets the read's bound (:func:`replica_refusal`), the
primary otherwise. The bound is the caller's ``max_staleness_seconds`` (default
``read_replica.max_lag_seconds``) and, for read-your-writes, ``min_lsn``: the primary's WAL position
after the caller's write (:func:`primary_lsn`), which the replica must have replayed. A replica that
does not answer is logged and the primary serves the read: a reader never fails because of it.

The standby's lag is measured on the standby: zero when it has replayed all the WAL it received,
else the time since the last transaction it replayed committed (``pg_last_xact_replay_timestamp``),
the usual measure, which needs no privilege on either server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from loguru import logger

from core.errors import ServiceError
from core.settings import Settings
from db.connect import _password, database_connection

_STATE = (
    "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
    " CASE WHEN pg_last_wal_replay_lsn() IS NULL THEN NULL"
    " WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0.0"
    " ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END,"
    " pg_last_xact_replay_timestamp(),"
    " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,"
    " CASE WHEN %(lsn)s::pg_lsn IS NULL THEN NULL ELSE pg_last_wal_replay_lsn() >= %(lsn)s::pg_lsn END"
)


@dataclass(frozen=True)
class ReplicaState:
    """What a standby says about itself (``lag_seconds`` None: it has replayed nothing yet)."""

    in_recovery: bool
    receive_lsn: str | None
    replay_lsn: str | None
    lag_seconds: float | None
    last_replay_at: datetime | None
    replay_paused: bool
    min_lsn_replayed: bool | None = None  # whether it replayed the asked LSN (None: none asked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_recovery": self.in_recovery,
            "receive_lsn": self.receive_lsn,
            "replay_lsn": self.replay_lsn,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "last_replay_at": self.last_replay_at.isoformat() if self.last_replay_at else None,
            "replay_paused": self.replay_paused,
        }


def replica_state(conn: psycopg.Connection, min_lsn: str | None = None) -> ReplicaState:
    """The standby's recovery state, its lag and whether it replayed ``min_lsn`` (one query)."""
    row = conn.execute(_STATE, {"lsn": min_lsn}).fetchone()
    assert row is not None
    return ReplicaState(bool(row[0]), row[1], row[2], row[3], row[4], bool(row[5]), row[6])


def replica_refusal(state: ReplicaState, max_staleness_seconds: float, min_lsn: str | None = None) -> str | None:
    """Pure: why the replica cannot serve a read with these bounds, or None when it can."""
    if not state.in_recovery:
        return "it is not a standby (pg_is_in_recovery() is false)"
    if state.lag_seconds is None:
        return "it has replayed nothing yet"
    if state.lag_seconds > max_staleness_seconds:
        return f"it lags {state.lag_seconds:.3f} s, more than the read's bound of {max_staleness_seconds:g} s"
    if min_lsn is not None and not state.min_lsn_replayed:
        return f"it has replayed up to {state.replay_lsn}, not yet the read's {min_lsn}"
    return None


def primary_lsn(conn: psycopg.Connection) -> str:
    """The primary's current WAL position: pass it as ``min_lsn`` to read one's own writes."""
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def replica_connection(settings: Settings, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """A connection to the read replica (same role and database as the primary's)."""
    try:
        return psycopg.connect(
            settings.database.replica_conninfo(dbname), password=_password(settings), connect_timeout=5, **kwargs
        )
    except psycopg.OperationalError as exc:
        raise _unreachable(settings, exc) from exc


async def async_replica_connection(settings: Settings, dbname: str | None = None, **kwargs: Any) -> Any:
    """An asyncio connection to the read replica."""
    try:
        return await psycopg.AsyncConnection.connect(
            settings.database.replica_conninfo(dbname), password=_password(settings), connect_timeout=5, **kwargs
        )
    except psycopg.OperationalError as exc:
        raise _unreachable(settings, exc) from exc


def _unreachable(settings: Settings, exc: Exception) -> ServiceError:
    replica = settings.database.read_replica
    message = str(exc).replace(_password(settings), "**********").strip()
    return ServiceError(
        f"cannot connect to the read replica at {replica.host}:{replica.port}: {message}; "
        "is it running (`marketpipe status`; `marketpipe up --replica` starts it)?"
    )


def read_connection(
    settings: Settings,
    dbname: str | None = None,
    *,
    max_staleness_seconds: float | None = None,
    min_lsn: str | None = None,
    **kwargs: Any,
) -> psycopg.Connection:
    """A connection for reads: the replica's when ``read_replica.enabled`` and it meets the bounds
    (``max_staleness_seconds``, default ``read_replica.max_lag_seconds``; ``min_lsn``), else the
    primary's. ``conn.info.port`` tells which it is. Never write through it."""
    replica = settings.database.read_replica
    if not replica.enabled:
        return database_connection(settings, dbname, **kwargs)
    bound = replica.max_lag_seconds if max_staleness_seconds is None else max_staleness_seconds
    try:
        conn = replica_connection(settings, dbname, **kwargs)
    except ServiceError as exc:
        logger.warning("{}; reading from the primary", exc)
        return database_connection(settings, dbname, **kwargs)
    try:
        state = replica_state(conn, min_lsn)
        if not conn.autocommit:
            conn.rollback()  # the caller's first statement opens its own transaction
    except psycopg.Error as exc:
        conn.close()
        logger.warning("the read replica could not report its state ({}); reading from the primary", exc)
        return database_connection(settings, dbname, **kwargs)
    refusal = replica_refusal(state, bound, min_lsn)
    if refusal is None:
        return conn
    conn.close()
    logger.debug("read from the primary: the replica at {}:{} cannot serve it: {}", replica.host, replica.port, refusal)
    return database_connection(settings, dbname, **kwargs)


async def async_replayed(conn: psycopg.AsyncConnection, lsn: str) -> bool:
    """Whether the standby behind ``conn`` has replayed the primary's WAL up to ``lsn``."""
    cur = await conn.execute("SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", (lsn,))
    row = await cur.fetchone()
    return bool(row and row[0])
