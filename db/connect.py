"""Connections to the hot store: the application role over TCP, password kept out of messages."""

from __future__ import annotations

from typing import Any

import psycopg

from core.errors import ServiceError
from core.settings import Settings


def _password(settings: Settings) -> str:
    if settings.database.password is None:
        raise ServiceError("database.password is not set; put MARKETPIPE_DATABASE__PASSWORD in the environment or .env")
    return settings.database.password.get_secret_value()


def _unreachable(settings: Settings, dbname: str | None, exc: Exception) -> ServiceError:
    db = settings.database
    message = str(exc).replace(_password(settings), "**********").strip()
    return ServiceError(
        f"cannot connect to PostgreSQL at {db.host}:{db.port}/{dbname or db.name}: {message}; "
        "is the stack running (`marketpipe status`)?"
    )


def database_connection(settings: Settings, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """A synchronous application connection (use as a context manager)."""
    try:
        return psycopg.connect(
            settings.database.conninfo(dbname), password=_password(settings), connect_timeout=5, **kwargs
        )
    except psycopg.OperationalError as exc:
        raise _unreachable(settings, dbname, exc) from exc


async def async_database_connection(
    settings: Settings, dbname: str | None = None, **kwargs: Any
) -> psycopg.AsyncConnection:
    """An asyncio application connection (use as an async context manager)."""
    try:
        return await psycopg.AsyncConnection.connect(
            settings.database.conninfo(dbname), password=_password(settings), connect_timeout=5, **kwargs
        )
    except psycopg.OperationalError as exc:
        raise _unreachable(settings, dbname, exc) from exc


def bounded_session(statement_timeout_s: float) -> dict[str, Any]:
    """Connection parameters (``database_connection(..., **bounded_session(t))``) under which no call
    blocks for ever: statements are cancelled past ``statement_timeout_s`` (``QueryCanceled``, which
    :func:`connection_lost` counts as transient), and TCP keepalives plus ``tcp_user_timeout`` give up
    on a server that vanished without closing the socket (a partition) within about 30 s."""
    timeout_ms = max(1, round(statement_timeout_s * 1000))
    return {
        "options": f"-c statement_timeout={timeout_ms}",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }


def connection_lost(exc: BaseException | None) -> bool:
    """True when ``exc`` (or anything it was raised from) is a lost or refused database connection.

    Covers a server shutting down under an open session (``AdminShutdown``), one still starting up
    (``CannotConnectNow``), a refused or broken connection (no SQLSTATE, or class 08) and a server
    out of connection slots, wherever our own errors wrapped them. Such a failure is transient: the
    same work retried on a new connection can succeed. Other operational errors (a statement
    timeout, a full disk, a program limit, out of memory) are the work's own: retrying it on a new
    connection fails the same way, and in a batch it would fail every symbol of the batch.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.OperationalError):
            state = exc.sqlstate
            return state is None or state.startswith("08") or state in LOST_CONNECTION_STATES
        exc = exc.__cause__ or exc.__context__
    return False


# admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
LOST_CONNECTION_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def statement_cancelled(exc: BaseException | None) -> bool:
    """True when ``exc`` (or anything it was raised from) is a statement the server cancelled: a
    ``statement_timeout`` (or ``pg_cancel_backend``). Not a lost connection (:func:`connection_lost`):
    a connection that bounds its statements (:func:`bounded_session`) decides what to do with one."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
