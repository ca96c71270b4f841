"""The shared circuit breakers: ``ops.circuit_breakers`` (migration 0017), read and written with psycopg 3.

:class:`PostgresBreakerStore` is the :class:`~sources.resilience.BreakerStore` the factory gives a
source's resilience when breakers are shared (``collection.circuit_share_refresh_seconds`` > 0):
each read or write opens a short connection of its own, because a source's resilience outlives
no event loop and owns nothing to close; reads happen at most every few seconds per source and
process, writes only when a breaker changes state. :func:`read_breakers` is the health check's
side. It lives in ``sources`` (like the dead-letter queue) because the factory that wires a
source's resilience is here and must not import the storage layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg

from sources.resilience import BreakerRecord, BreakerState

if TYPE_CHECKING:
    from core.settings import Settings

_COLUMNS = "source, state, opened_at, consecutive_failures, cooldown_seconds, last_error, written_by, updated_at"
_UPSERT = f"""
INSERT INTO ops.circuit_breakers ({_COLUMNS})
VALUES (%(source)s, %(state)s, %(opened_at)s, %(consecutive_failures)s, %(cooldown_seconds)s,
        %(last_error)s, %(written_by)s, %(updated_at)s)
ON CONFLICT (source) DO UPDATE SET
    state = EXCLUDED.state, opened_at = EXCLUDED.opened_at,
    consecutive_failures = EXCLUDED.consecutive_failures, cooldown_seconds = EXCLUDED.cooldown_seconds,
    last_error = EXCLUDED.last_error, written_by = EXCLUDED.written_by, updated_at = EXCLUDED.updated_at
WHERE ops.circuit_breakers.updated_at <= EXCLUDED.updated_at
"""


def _record(row: tuple[Any, ...]) -> BreakerRecord:
    source, state, opened_at, failures, cooldown, last_error, written_by, updated_at = row
    return BreakerRecord(
        source=str(source),
        state=BreakerState(state),
        opened_at=opened_at,
        consecutive_failures=int(failures),
        cooldown_seconds=float(cooldown),
        last_error=last_error,
        written_by=str(written_by),
        updated_at=updated_at,
    )


def _params(record: BreakerRecord) -> dict[str, Any]:
    return {
        "source": record.source,
        "state": record.state.value,
        "opened_at": record.opened_at,
        "consecutive_failures": record.consecutive_failures,
        "cooldown_seconds": record.cooldown_seconds,
        "last_error": record.last_error,
        "written_by": record.written_by,
        "updated_at": record.updated_at,
    }


def publish_breaker(conn: psycopg.Connection, record: BreakerRecord) -> None:
    """Upsert ``record`` unless a newer one is already there (two writers: the newest change wins)."""
    conn.execute(_UPSERT, _params(record))


def read_breakers(conn: psycopg.Connection, sources: Iterable[str] | None = None) -> dict[str, BreakerRecord]:
    """The published breakers by source (of ``sources``, or all)."""
    if sources is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM ops.circuit_breakers ORDER BY source").fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM ops.circuit_breakers WHERE source = ANY(%s) ORDER BY source", (list(sources),)
        ).fetchall()
    return {r.source: r for r in map(_record, rows)}


class PostgresBreakerStore:
    """The breakers of every process, in the hot store's ``ops`` schema."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def _connect(self) -> psycopg.AsyncConnection:
        from db.connect import async_database_connection

        return await async_database_connection(self._settings, autocommit=True)

    async def read(self, source: str) -> BreakerRecord | None:
        async with await self._connect() as conn:
            cursor = await conn.execute(f"SELECT {_COLUMNS} FROM ops.circuit_breakers WHERE source = %s", (source,))
            row = await cursor.fetchone()
        return None if row is None else _record(row)

    async def publish(self, record: BreakerRecord) -> None:
        async with await self._connect() as conn:
            await conn.execute(_UPSERT, _params(record))
