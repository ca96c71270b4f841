"""The dead-letter queue: ``ops.dead_letters`` (migration 0003), read and written with psycopg 3.

A dead letter is one vendor request (a page) that failed for good: a permanent error, a malformed
payload, or a transient error that outlived its retries. Its natural key is (source, dataset,
request_key), so the same page failing again is one row whose ``attempts``/``last_seen`` grow.
Requests are stored redacted (no credentials); the client re-adds them when replaying.

Replay is idempotent: each open letter is locked (``FOR UPDATE SKIP LOCKED``), handed to the
fetcher, and resolved in the same transaction, so a second or concurrent replay skips it. If the
fetcher writes its rows through the same connection, delivery and resolution commit together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.errors import MarketpipeError, SourceError
from sources.http import Request

MAX_INLINE_PAYLOAD_CHARS = 1_000_000
_COLUMNS = (
    "id, source, dataset, request, payload, payload_lake_key, error, error_type, attempts, "
    "first_seen, last_seen, resolved_at"
)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    source: str
    dataset: str
    request: dict[str, Any]
    payload: Any
    payload_lake_key: str | None
    error: str
    error_type: str
    attempts: int
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None

    def to_request(self) -> Request:
        """The stored request, ready for the source client's ``iter_pages`` (which adds credentials)."""
        return Request.from_redacted(self.source, self.dataset, self.request)


@dataclass
class ReplaySummary:
    replayed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # resolved or locked by a concurrent replay

    def as_dict(self) -> dict[str, int]:
        return {"replayed": len(self.replayed), "failed": len(self.failed), "skipped": len(self.skipped)}


def request_key(request: Mapping[str, Any]) -> str:
    """Stable identity of a (redacted) request: key order and param order do not matter."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _payload_value(payload: Any) -> Jsonb | None:
    if payload is None:
        return None
    if isinstance(payload, str) and len(payload) > MAX_INLINE_PAYLOAD_CHARS:
        payload = payload[:MAX_INLINE_PAYLOAD_CHARS] + "...[truncated; store large payloads in the lake]"
    return Jsonb(payload)


_UPSERT = """
    INSERT INTO ops.dead_letters
        (source, dataset, request_key, request, payload, payload_lake_key, error, error_type)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (source, dataset, request_key) DO UPDATE SET
        attempts = ops.dead_letters.attempts + 1,
        last_seen = now(),
        error = EXCLUDED.error,
        error_type = EXCLUDED.error_type,
        payload = COALESCE(EXCLUDED.payload, ops.dead_letters.payload),
        payload_lake_key = COALESCE(EXCLUDED.payload_lake_key, ops.dead_letters.payload_lake_key),
        resolved_at = NULL
    RETURNING id
"""


def _upsert_params(
    source: str,
    dataset: str,
    request: Mapping[str, Any],
    error: str | BaseException,
    payload: Any,
    payload_lake_key: str | None,
) -> tuple[Any, ...]:
    error_type = type(error).__name__ if isinstance(error, BaseException) else "Error"
    return (
        source,
        dataset,
        request_key(request),
        Jsonb(dict(request)),
        _payload_value(payload),
        payload_lake_key,
        str(error),
        error_type,
    )


async def record_dead_letter(
    conn: psycopg.AsyncConnection,
    *,
    source: str,
    dataset: str,
    request: Mapping[str, Any],
    error: str | BaseException,
    payload: Any = None,
    payload_lake_key: str | None = None,
) -> int:
    """Insert a dead letter or, for a known one, count another attempt and reopen it. Returns its id.

    ``request`` must already be redacted (``Request.redacted()``).
    """
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(_UPSERT, _upsert_params(source, dataset, request, error, payload, payload_lake_key))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def record_dead_letter_sync(
    conn: psycopg.Connection,
    *,
    source: str,
    dataset: str,
    request: Mapping[str, Any],
    error: str | BaseException,
    payload: Any = None,
    payload_lake_key: str | None = None,
) -> int:
    """:func:`record_dead_letter` for a synchronous connection (the processing stage's writers),
    so a quarantine commits in the same transaction as the rows stored beside it."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_UPSERT, _upsert_params(source, dataset, request, error, payload, payload_lake_key))
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


async def record_source_error(
    conn: psycopg.AsyncConnection, exc: SourceError, *, payload_lake_key: str | None = None
) -> int | None:
    """Dead-letter the page a SourceError names (the HTTP seam attaches ``request``/``payload_text``).

    Returns None for an error that names no request (nothing to replay), e.g. a bad argument.
    """
    request: Request | None = getattr(exc, "request", None)
    if request is None:
        return None
    return await record_dead_letter(
        conn,
        source=request.source,
        dataset=request.dataset,
        request=request.redacted(),
        error=exc,
        payload=getattr(exc, "payload_text", None),
        payload_lake_key=payload_lake_key,
    )


async def list_dead_letters(
    conn: psycopg.AsyncConnection,
    *,
    source: str | None = None,
    dataset: str | None = None,
    include_resolved: bool = False,
    limit: int | None = 100,
) -> list[DeadLetter]:
    """Open (or all) dead letters, most recently failed first."""
    conditions: list[str] = []
    params: list[object] = []
    if not include_resolved:
        conditions.append("resolved_at IS NULL")
    if source is not None:
        conditions.append("source = %s")
        params.append(source)
    if dataset is not None:
        conditions.append("dataset = %s")
        params.append(dataset)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    tail = ""
    if limit is not None:
        tail = "LIMIT %s"
        params.append(limit)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM ops.dead_letters {where} ORDER BY last_seen DESC, id DESC {tail}",
            params,
        )
        rows = await cur.fetchall()
    return [DeadLetter(**row) for row in rows]


async def mark_replayed(conn: psycopg.AsyncConnection, letter_id: int) -> bool:
    """Resolve a letter; False when it was already resolved (so calling twice is harmless)."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "UPDATE ops.dead_letters SET resolved_at = now() WHERE id = %s AND resolved_at IS NULL",
            (letter_id,),
        )
        return cur.rowcount == 1


def symbols_with_failed_fetches(
    conn: psycopg.Connection, *, source: str, datasets: Sequence[str], symbols: Sequence[str]
) -> set[str]:
    """Those of ``symbols`` with an open letter of ``source`` for one of ``datasets`` (the symbol a
    letter's request names in its context) whose request was not answered: a letter without a raw
    page (``payload_lake_key``). A page that was fetched and stored but does not parse is not
    fetched better by asking again."""
    rows = conn.execute(
        "SELECT DISTINCT request->'context'->>'symbol' FROM ops.dead_letters"
        " WHERE resolved_at IS NULL AND source = %s AND dataset = ANY(%s) AND payload_lake_key IS NULL"
        " AND request->'context'->>'symbol' = ANY(%s)",
        (source, list(datasets), list(symbols)),
    ).fetchall()
    return {row[0] for row in rows}


Fetcher = Callable[[DeadLetter], Awaitable[Any]]


async def replay_dead_letters(
    conn: psycopg.AsyncConnection,
    fetcher: Fetcher,
    *,
    source: str | None = None,
    dataset: str | None = None,
    limit: int | None = None,
) -> ReplaySummary:
    """Hand every open letter to ``fetcher``; resolve it when the fetcher returns, count another
    attempt when it raises a MarketpipeError (other exceptions are bugs and propagate)."""
    summary = ReplaySummary()
    candidates = await list_dead_letters(conn, source=source, dataset=dataset, limit=limit)
    for candidate in sorted(candidates, key=lambda letter: letter.id):
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM ops.dead_letters WHERE id = %s AND resolved_at IS NULL FOR UPDATE SKIP LOCKED",
                (candidate.id,),
            )
            row = await cur.fetchone()
            if row is None:
                summary.skipped.append(candidate.id)
                continue
            letter = DeadLetter(**row)
            try:
                await fetcher(letter)
            except MarketpipeError as exc:
                await cur.execute(
                    "UPDATE ops.dead_letters SET attempts = attempts + 1, last_seen = now(), "
                    "error = %s, error_type = %s WHERE id = %s",
                    (str(exc), type(exc).__name__, letter.id),
                )
                summary.failed.append(letter.id)
                continue
            await cur.execute("UPDATE ops.dead_letters SET resolved_at = now() WHERE id = %s", (letter.id,))
            summary.replayed.append(letter.id)
    return summary
