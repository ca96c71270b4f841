"""The spans a hybrid stream missed, kept in ``ops.stream_gaps`` (db/migrations/0036_stream_gaps.sql)
so that they outlive the process: the next hybrid run fetches what a killed one left open, and
``marketpipe health`` names an unfilled span after its stream is gone.

A span's rows are inserted in the transaction of the first commit after it is known and set
applied in the transaction that stores its data (:func:`write_gap_changes`, called by
:func:`storage.streams.commit_stream_batch`): a row is never applied without its data, nor data
stored after a span without the span's row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from core.errors import StorageError

STATES = ("open", "applied", "given_up")
APPLIED_KEPT = "7 days"  # applied rows are history: pruned at a hybrid run's start past this age


@dataclass(frozen=True)
class StreamGap:
    """One symbol's ``dataset`` ("trades" | "bars") that ``stream`` missed over
    [``span_start``, ``span_end``) by event time, as part of the span ``span_id``."""

    span_id: str
    stream: str  # the stream's name: the vendor, and the feed if any
    source: str
    symbol: str
    dataset: str
    span_start: datetime
    span_end: datetime
    cause: str  # "connect" | "spill"
    state: str = "open"
    error: str | None = None
    retries: int = 0
    recorded_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class GapChanges:
    """What one commit records of the spans: rows to insert open, and the (span_id, symbol,
    dataset) keys its data fills."""

    opened: Sequence[StreamGap] = ()
    applied: Sequence[tuple[str, str, str]] = ()

    def __bool__(self) -> bool:
        return bool(self.opened or self.applied)


_COLUMNS = (
    "span_id, stream, source, symbol, dataset, span_start, span_end, cause, state, error, retries,"
    " recorded_at, updated_at"
)


def write_gap_changes(conn: psycopg.Connection, changes: GapChanges) -> None:
    """Insert ``changes.opened`` (a row already there is kept) then set ``changes.applied``
    applied, in the caller's transaction."""
    try:
        if changes.opened:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO ops.stream_gaps (span_id, stream, source, symbol, dataset, span_start, span_end,"
                    " cause) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [
                        (g.span_id, g.stream, g.source, g.symbol, g.dataset, g.span_start, g.span_end, g.cause)
                        for g in changes.opened
                    ],
                )
        if changes.applied:
            span_ids, symbols, datasets = (list(column) for column in zip(*changes.applied, strict=True))
            conn.execute(
                "UPDATE ops.stream_gaps g SET state = 'applied', updated_at = now()"
                " FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(span_id, symbol, dataset)"
                " WHERE g.span_id = k.span_id AND g.symbol = k.symbol AND g.dataset = k.dataset",
                (span_ids, symbols, datasets),
            )
    except psycopg.Error as exc:
        raise StorageError(f"cannot record the stream's missed spans in ops.stream_gaps: {exc}") from exc


def record_gap_retry(conn: psycopg.Connection, span_id: str, *, retries: int, error: str | None, state: str) -> None:
    """A span's failed retries, its last error, and ``state`` ("open", or "given_up" once the run
    spent its retries); its rows already applied are left alone."""
    if state not in STATES:
        raise StorageError(f"unknown stream gap state {state!r}; one of {', '.join(STATES)}")
    try:
        conn.execute(
            "UPDATE ops.stream_gaps SET retries = %s, error = coalesce(%s, error), state = %s, updated_at = now()"
            " WHERE span_id = %s AND state <> 'applied'",
            (retries, error, state, span_id),
        )
    except psycopg.Error as exc:
        raise StorageError(f"cannot record a retry of stream span {span_id}: {exc}") from exc


def read_unfilled_gaps(
    conn: psycopg.Connection, *, stream: str | None = None, symbols: Sequence[str] | None = None
) -> list[StreamGap]:
    """The rows not applied (open or given up), oldest first; of one stream and some symbols."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM ops.stream_gaps WHERE state <> 'applied'"
        " AND (%(stream)s::text IS NULL OR stream = %(stream)s)"
        " AND (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s::text[]))"
        " ORDER BY recorded_at, span_id, symbol, dataset",
        {"stream": stream, "symbols": list(symbols) if symbols is not None else None},
    ).fetchall()
    return [StreamGap(*row) for row in rows]


def prune_applied_gaps(conn: psycopg.Connection) -> None:
    conn.execute(
        f"DELETE FROM ops.stream_gaps WHERE state = 'applied' AND updated_at < now() - '{APPLIED_KEPT}'::interval"
    )
