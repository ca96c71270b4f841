"""Connections to the hot store kept open for the rest of a run.

A new connection costs ~15 ms of server CPU (a backend started, SCRAM authentication, its catalog
caches warmed on TimescaleDB's hypertables) and ~5 ms of client CPU; a backfill used two per
symbol (the collection's manifest rows, the processing's transaction), more CPU than storing a
symbol's bars. A pool keeps the connections a run has opened and hands an idle one to the next
unit of work.

What a unit of work gets is what a new connection would be: no transaction open, ``autocommit`` as
asked. Leaving the block commits (rolls back on an exception), like psycopg's ``with conn``. A
connection comes back to the pool only when it is idle and healthy; one that saw an exception is
closed, not reused (whatever state the failure left is not handed on). A lost connection (the
server restarted, failed over) closes the idle ones too: they went with it, and a retry must get a
new connection, not the next dead one. At most ``keep`` idle connections are kept; closing the
pool closes them, and one returned after that is closed.

Nothing here talks to PostgreSQL beyond opening and closing connections (db.connect). One
:class:`ConnectionPool` serves any number of threads; one :class:`AsyncConnectionPool` serves the
tasks of the event loop it was opened in.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Generic, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from core.settings import Settings
from db.connect import async_database_connection, connection_lost, database_connection

C = TypeVar("C", psycopg.Connection, psycopg.AsyncConnection)


def _reusable(conn: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    return not conn.closed and not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE


class _Pool(Generic[C]):
    """What both pools hold: the settings to connect with, up to ``keep`` idle connections."""

    def __init__(self, settings: Settings, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep!r}: a pool keeps at least one idle connection")
        self._settings = settings
        self._keep = keep
        self._idle: list[C] = []
        self._closed = False
        self.opened = 0  # connections opened over the pool's life (the rest were reuses)


class ConnectionPool(_Pool[psycopg.Connection]):
    """Synchronous connections to the settings' database, reused across units of work and threads."""

    def __init__(self, settings: Settings, keep: int) -> None:
        super().__init__(settings, keep)
        self._lock = threading.Lock()

    @contextmanager
    def connection(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """An idle connection of the pool, or a new one; committed and given back at the end."""
        conn = self._take()
        conn.autocommit = autocommit
        try:
            yield conn
            if not conn.closed and not autocommit:
                conn.commit()
        except BaseException as exc:
            conn.close()
            if connection_lost(exc):
                self._close_idle()
            raise
        self._give_back(conn)

    def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        with self._lock:
            self._closed = True
        self._close_idle()

    def _close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> psycopg.Connection:
        with self._lock:
            if self._closed:
                raise RuntimeError("the run's connection pool is closed")
            while self._idle:
                conn = self._idle.pop()
                if _reusable(conn):
                    return conn
                conn.close()
            self.opened += 1
        return database_connection(self._settings)

    def _give_back(self, conn: psycopg.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._keep and _reusable(conn):
                self._idle.append(conn)
                return
        conn.close()


class AsyncConnectionPool(_Pool[psycopg.AsyncConnection]):
    """Asyncio connections to the settings' database, reused by the tasks of one event loop."""

    @asynccontextmanager
    async def connection(self, autocommit: bool = False) -> AsyncIterator[psycopg.AsyncConnection]:
        """An idle connection of the pool, or a new one; committed and given back at the end."""
        conn = await self._take()
        await conn.set_autocommit(autocommit)
        try:
            yield conn
            if not conn.closed and not autocommit:
                await conn.commit()
        except BaseException as exc:
            await conn.close()
            if connection_lost(exc):
                await self._close_idle()
            raise
        if not self._closed and len(self._idle) < self._keep and _reusable(conn):
            self._idle.append(conn)
        else:
            await conn.close()

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        self._closed = True
        await self._close_idle()

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def _take(self) -> psycopg.AsyncConnection:
        if self._closed:
            raise RuntimeError("the run's connection pool is closed")
        while self._idle:
            conn = self._idle.pop()
            if _reusable(conn):
                return conn
            await conn.close()
        self.opened += 1
        return await async_database_connection(self._settings)
