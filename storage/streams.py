"""The stream's side of the hot store: one transaction per micro-batch, and the announcements of
closed bars that trading code listens to.

:func:`commit_stream_batch` writes what one micro-batch of a live stream produced — trades, quotes,
final bars, provisional (forming) bars — with the same idempotent binary-COPY upsert as the batch
path, so a replay or a reconnect never duplicates a row. In the SAME transaction it advances the
watermarks of what is final (trades, quotes, final bars; never a provisional bar), logs the key of
each final bar it wrote or changed (not one a replay wrote again unchanged) and of each bar it
removed in ``ops.bar_changes`` under a number that grows in commit order (the change sequence; a
removed bar whose key another vendor's closed bar, kept in the vendor table, now serves is that
bar's change, not a removal), and
announces each timeframe's closed bars with ``pg_notify`` on :func:`bars_channel`
(delivered at commit, so a listener never hears of a bar it cannot read yet). The payload is small:
source, timeframe, the time range, the symbols (``null`` when they would not fit PostgreSQL's
8,000-byte payload) and ``seq``, the commit's last change number.

:func:`subscribe_bars` is the trading code's side: an async iterator over committed closed bars of
some symbols and a timeframe, fed by LISTEN, reading the changes after the number it has reached:
each changed bar once (not the other bars of an announced range again), removed bars as such, and
from ``since`` (the number a previous subscriber reached, its ``seq``) without loss after a lost
connection, which it can also reconnect by itself (``reconnect_for_s``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
import psycopg
from loguru import logger
from psycopg import sql
from psycopg.types.json import Jsonb

from core.errors import RequestError, ServiceError, StorageError
from core.model import BARS, PROVISIONAL_FLAG, canonical_timeframe, frame, to_utc
from core.settings import DEFAULT_SOURCE_PRECEDENCE
from storage.hot import BARS_INTRADAY, UpsertResult, promote_vendor_rows, upsert_frame
from storage.quotes import upsert_quotes
from storage.stream_gaps import GapChanges, write_gap_changes
from storage.trades import upsert_trades
from storage.watermarks import Watermark, advance_watermarks, watermarks_of

if TYPE_CHECKING:
    from core.settings import Settings

CHANNEL_PREFIX = "marketpipe_bars_"
PAYLOAD_LIMIT = 7_900  # PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more
PROVISIONAL = PROVISIONAL_FLAG
_CHANNEL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def bars_channel(timeframe: str) -> str:
    """The LISTEN/NOTIFY channel of closed bars of ``timeframe``: ``marketpipe_bars_1min``, ``marketpipe_bars_5s``."""
    name = CHANNEL_PREFIX + stream_timeframe(timeframe)
    if not set(name) <= _CHANNEL_CHARS:
        raise RequestError(f"timeframe {timeframe!r} cannot name a notification channel; use e.g. 1min or 5s")
    return name


def stream_timeframe(timeframe: str) -> str:
    """Canonical spelling of a timeframe a stream produces: minutes and up as everywhere
    (``1min``), the stream's own windows in seconds (``5s``, ``15s``)."""
    text = timeframe.strip().lower()
    if text.endswith("s") and text[:-1].isdigit() and int(text[:-1]) > 0:
        seconds = int(text[:-1])
        return "1min" if seconds == 60 else f"{seconds}s"
    return canonical_timeframe(timeframe)


@dataclass(frozen=True)
class Announcement:
    """What one NOTIFY said: closed bars of ``timeframe`` from ``source`` in [start, end]."""

    source: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    symbols: tuple[str, ...] | None  # None: too many to list, every symbol may have changed
    seq: int | None = None  # the commit's last change number (ops.bar_changes); set once logged

    def payload(self) -> str:
        body = {
            "source": self.source,
            "timeframe": self.timeframe,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "symbols": list(self.symbols) if self.symbols is not None else None,
            "seq": self.seq,
        }
        text = orjson.dumps(body).decode()
        if len(text.encode()) > PAYLOAD_LIMIT:
            text = orjson.dumps({**body, "symbols": None}).decode()
        return text

    @classmethod
    def parse(cls, payload: str) -> Announcement:
        body = orjson.loads(payload)
        symbols = body.get("symbols")
        return cls(
            source=str(body["source"]),
            timeframe=str(body["timeframe"]),
            start=to_utc(body["start"]),
            end=to_utc(body["end"]),
            symbols=tuple(symbols) if symbols is not None else None,
            seq=int(body["seq"]) if body.get("seq") is not None else None,
        )


@dataclass(frozen=True)
class StreamCommit:
    """What one committed micro-batch wrote, as counted by the database."""

    trades: UpsertResult = field(default_factory=UpsertResult)
    quotes: UpsertResult = field(default_factory=UpsertResult)
    final_bars: UpsertResult = field(default_factory=UpsertResult)
    provisional_bars: UpsertResult = field(default_factory=UpsertResult)
    announcements: tuple[Announcement, ...] = field(default=())

    @property
    def rows(self) -> int:
        parts = (self.trades, self.quotes, self.final_bars, self.provisional_bars)
        return sum(p.inserted + p.updated + p.unchanged for p in parts)


def _stream_bars(bars: pd.DataFrame, *, provisional: bool) -> pd.DataFrame:
    out = bars.copy()
    out["timeframe"] = out["timeframe"].map(stream_timeframe).astype(bars["timeframe"].dtype)
    flags = out["quality_flags"].to_numpy() if "quality_flags" in out.columns else 0
    out["quality_flags"] = (flags | PROVISIONAL) if provisional else (flags & ~PROVISIONAL)
    return out


def announcements_of(bars: pd.DataFrame) -> list[Announcement]:
    """One announcement per (source, timeframe) of a frame of final bars."""
    out = []
    for (source, timeframe), group in bars.groupby(["source", "timeframe"], sort=True, observed=True):
        out.append(
            Announcement(
                source=str(source),
                timeframe=str(timeframe),
                start=pd.Timestamp(group["ts"].min()),
                end=pd.Timestamp(group["ts"].max()),
                symbols=tuple(sorted(str(s) for s in group["symbol"].unique())),
            )
        )
    return out


def commit_stream_batch(
    conn: psycopg.Connection,
    *,
    trades: pd.DataFrame | None = None,
    quotes: pd.DataFrame | None = None,
    final_bars: pd.DataFrame | None = None,
    provisional_bars: pd.DataFrame | None = None,
    removed_bars: pd.DataFrame | None = None,
    precedence: Sequence[str] = DEFAULT_SOURCE_PRECEDENCE,
    marks_until: Mapping[tuple[str, str], pd.Timestamp] | None = None,
    gaps: GapChanges | None = None,
) -> StreamCommit:
    """Write one micro-batch in ONE transaction (see the module docstring); all or nothing.

    ``precedence`` (storage.source_precedence): a stream bar whose key holds another vendor's
    better-ranked bar is kept in the vendor table, not served (:func:`storage.hot.upsert_frame`);
    a removed bar's key is served by the best-ranked other vendor's row kept there, if any.
    ``marks_until``: (dataset, symbol) -> the newest instant that series' watermark may reach: the
    rows are stored, but a span before them is still unfilled (a hybrid stream's catch-up that
    failed or did not end), so the watermark stops before it and the next run's catch-up starts
    there (:func:`streaming.gaps.marks_until`).
    ``gaps``: the missed spans this commit records and fills (:mod:`storage.stream_gaps`), in its
    transaction: a span's row is written with the first data stored after it, applied with its own."""
    empty = pd.DataFrame()
    trades = empty if trades is None else trades
    quotes = empty if quotes is None else quotes
    final = _stream_bars(final_bars, provisional=False) if final_bars is not None and not final_bars.empty else empty
    forming = (
        _stream_bars(provisional_bars, provisional=True)
        if provisional_bars is not None and not provisional_bars.empty
        else empty
    )
    with conn.transaction():
        # Live trades and quotes are new rows unless a reconnect or a catch-up replays them: COPY
        # first, merge only on a key already stored (no per-batch overlap query).
        wrote_trades = upsert_trades(conn, trades, method="copy_first") if not trades.empty else UpsertResult()
        wrote_quotes = upsert_quotes(conn, quotes, method="copy_first") if not quotes.empty else UpsertResult()
        wrote_final = (
            upsert_frame(conn, final, BARS_INTRADAY, precedence=precedence) if not final.empty else UpsertResult()
        )
        wrote_forming = (
            upsert_frame(conn, forming, BARS_INTRADAY, precedence=precedence) if not forming.empty else UpsertResult()
        )
        removed, promoted = (
            _delete_bars(conn, removed_bars, precedence)
            if removed_bars is not None and not removed_bars.empty
            else (_no_keys(), _no_keys())
        )
        marks = [
            *(watermarks_of(trades, dataset="trades") if not trades.empty else []),
            *(watermarks_of(quotes, dataset="quotes") if not quotes.empty else []),
            *(watermarks_of(final, dataset="bars") if not final.empty else []),
        ]
        advance_watermarks(conn, _capped(marks, marks_until or {}))
        if gaps:
            write_gap_changes(conn, gaps)
        changed = _keys_of(final, promoted)
        announcements = _log_changes(conn, changed, removed) if not changed.empty or not removed.empty else []
        for note in announcements:
            try:
                conn.execute("SELECT pg_notify(%s, %s)", (bars_channel(note.timeframe), note.payload()))
            except psycopg.Error as exc:
                raise StorageError(
                    f"cannot announce {note.timeframe} bars on {bars_channel(note.timeframe)}: {exc}"
                ) from exc
    return StreamCommit(wrote_trades, wrote_quotes, wrote_final, wrote_forming, tuple(announcements))


def _capped(marks: list[Watermark], until: Mapping[tuple[str, str], pd.Timestamp]) -> list[Watermark]:
    """``marks``, each at most its (dataset, symbol)'s ``until``."""
    out = []
    for mark in marks:
        cap = until.get((mark.dataset, mark.symbol))
        if cap is not None and mark.high_water_ts > cap:
            mark = replace(mark, high_water_ts=pd.Timestamp(cap).to_pydatetime())
        out.append(mark)
    return out


# Taken (for the rest of the transaction) before change numbers are drawn: a commit holding a higher
# number than another's commits after it, so a reader at number n has seen every change up to n.
CHANGE_LOCK = 0x6D70_6261_7273  # "mpbars"
CHANGE_RETENTION = "1 day"  # ops.bar_changes rows kept: how far back a subscriber can resume


_KEY_COLUMNS = ["source", "timeframe", "symbol", "ts"]


def _no_keys() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="datetime64[us, UTC]" if c == "ts" else object) for c in _KEY_COLUMNS})


def _keys_of(*frames: pd.DataFrame) -> pd.DataFrame:
    """The (source, timeframe, symbol, ts) of the rows of ``frames``, one frame."""
    parts = [f[_KEY_COLUMNS].astype({c: object for c in _KEY_COLUMNS if c != "ts"}) for f in frames if not f.empty]
    if not parts:
        return _no_keys()
    keys = pd.concat(parts, ignore_index=True)
    return keys.assign(ts=pd.to_datetime(keys["ts"], utc=True))


def _key_arrays(keys: pd.DataFrame) -> list[list[Any]]:
    """(source, timeframe, symbol, ts) of ``keys`` as lists for ``unnest``."""
    return [
        keys["source"].astype(str).tolist(),
        keys["timeframe"].astype(str).tolist(),
        keys["symbol"].astype(str).tolist(),
        list(pd.DatetimeIndex(keys["ts"]).to_pydatetime()),
    ]


# The keys of the final bars written and of the vendor rows promoted whose served closed bar this
# transaction wrote (inserted, changed or promoted; the writer sets ingested_at = now(), the
# transaction's start, on exactly those rows: a replayed bar with the same values keeps its stored
# ingested_at, a bar kept in the vendor table leaves the served row alone, a promoted provisional
# row is no closed bar) and the keys of the bars it removed, logged under new change numbers.
_LOG_CHANGES = (
    "WITH written AS ("
    " SELECT DISTINCT k.source, k.timeframe, k.symbol, k.ts, false AS removed"
    " FROM unnest(%(source)s::text[], %(timeframe)s::text[], %(symbol)s::text[], %(ts)s::timestamptz[])"
    " AS k(source, timeframe, symbol, ts)"
    " JOIN market.bars_intraday_store b"
    " ON b.symbol = k.symbol AND b.timeframe = k.timeframe AND b.ts = k.ts AND b.source = k.source"
    # constants the planner sees: chunk exclusion by time (the join alone plans every chunk), the
    # key's index by symbol (not every symbol's rows of the batch's time range)
    " WHERE b.ts BETWEEN %(first)s AND %(last)s AND b.symbol = ANY(%(symbol)s::text[])"
    " AND b.ingested_at = now() AND b.quality_flags & %(provisional)s = 0),"
    " changes AS (SELECT * FROM written UNION ALL"
    " SELECT r.*, true FROM unnest(%(r_source)s::text[], %(r_timeframe)s::text[], %(r_symbol)s::text[],"
    " %(r_ts)s::timestamptz[]) AS r(source, timeframe, symbol, ts))"
    " INSERT INTO ops.bar_changes (seq, source, timeframe, symbol, ts, removed)"
    " SELECT nextval('ops.bar_change_seq'), source, timeframe, symbol, ts, removed FROM changes"
    " RETURNING source, timeframe, symbol, ts, seq"
)


# Rows past the retention deleted, the highest number deleted kept in ops.bar_change_retention.
_PRUNE_CHANGES = (
    "WITH gone AS (DELETE FROM ops.bar_changes WHERE committed_at < now() - %s::interval RETURNING seq)"
    " UPDATE ops.bar_change_retention r SET pruned_through = g.top FROM (SELECT max(seq) AS top FROM gone) g"
    " WHERE g.top > r.pruned_through"
)


def _log_changes(conn: psycopg.Connection, changed: pd.DataFrame, removed: pd.DataFrame) -> list[Announcement]:
    """Log in ops.bar_changes, under new change numbers, the bars of ``changed`` (the keys of the
    final bars written and of the vendor rows promoted) this transaction wrote or changed and the
    ``removed`` ones (see ``_LOG_CHANGES``), and delete rows past ``CHANGE_RETENTION`` (recording
    the highest number deleted); returns their announcements, each with the last number drawn
    (none when nothing changed: a replayed batch announces nothing)."""
    changed = changed if not changed.empty else _no_keys()
    stamps = pd.DatetimeIndex(changed["ts"])
    written = dict(zip(_KEY_COLUMNS, _key_arrays(changed), strict=True))
    gone = {f"r_{c}": values for c, values in zip(_KEY_COLUMNS, _key_arrays(removed), strict=True)}
    bounds = {"first": stamps.min(), "last": stamps.max()} if len(stamps) else {"first": None, "last": None}
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOCK,))
        rows = conn.execute(_LOG_CHANGES, {**written, **gone, **bounds, "provisional": PROVISIONAL}).fetchall()
        conn.execute(_PRUNE_CHANGES, (CHANGE_RETENTION,))
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot log {len(changed)} written and {len(removed)} removed bar(s) in ops.bar_changes: {exc}"
        ) from exc
    if not rows:
        return []
    logged = pd.DataFrame(rows, columns=[*_KEY_COLUMNS, "seq"])
    last = int(logged["seq"].max())
    return [replace(note, seq=last) for note in announcements_of(logged)]


def _delete_bars(
    conn: psycopg.Connection, bars: pd.DataFrame, precedence: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Delete bars no longer backed by any trade (every counted trade of the window was cancelled):
    only the stream source's own rows of those keys, served or kept in the vendor table. Where a
    served bar goes and another vendor's row of its key is kept in the vendor table, the best of
    those (by ``precedence``) is served in its place (:func:`storage.hot.promote_vendor_rows`): the
    key is not left missing from the consolidated series while a vendor's bar of it is stored.

    Returns the keys of the served bars deleted with no closed bar served in their place now (what
    a listener may hold and must drop), and the keys of the closed rows promoted (a change of the
    bar, logged and announced as one, under the promoted row's source)."""
    keys = bars.assign(timeframe=bars["timeframe"].map(stream_timeframe))
    args = [
        keys["symbol"].astype(str).tolist(),
        keys["timeframe"].astype(str).tolist(),
        list(pd.DatetimeIndex(keys["ts"]).to_pydatetime()),
        keys["source"].astype(str).tolist(),
    ]
    # the keys' time range and symbols, as plain bounds: the planner excludes the other chunks
    bounds = [min(args[2]), max(args[2]), sorted(set(args[0]))]
    deleted: list[tuple[Any, ...]] = []
    try:
        for table in (BARS_INTRADAY.name, BARS_INTRADAY.vendor_table):
            cur = conn.execute(
                f"DELETE FROM {table} b USING unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[])"
                " AS k(symbol, timeframe, ts, source)"
                " WHERE b.symbol = k.symbol AND b.timeframe = k.timeframe AND b.ts = k.ts AND b.source = k.source"
                " AND b.ts BETWEEN %s AND %s AND b.symbol = ANY(%s::text[])"
                " RETURNING b.source, b.timeframe, b.symbol, b.ts",
                [*args, *bounds],
            )
            if table == BARS_INTRADAY.name:
                deleted = cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot delete {len(bars)} bar(s) whose trades were all cancelled: {exc}") from exc
    if not deleted:
        return _no_keys(), _no_keys()
    gone = _keys_of(pd.DataFrame(deleted, columns=_KEY_COLUMNS))
    promoted = promote_vendor_rows(conn, gone, BARS_INTRADAY, precedence=precedence)
    closed = _keys_of(promoted[(promoted["quality_flags"].astype("int64") & PROVISIONAL) == 0])
    served = pd.MultiIndex.from_frame(closed[["timeframe", "symbol", "ts"]])
    removed = gone[~pd.MultiIndex.from_frame(gone[["timeframe", "symbol", "ts"]]).isin(served)]
    return removed.reset_index(drop=True), closed


# ---------------------------------------------------------------------------------------------
# Status: what `marketpipe health` reads (db/migrations/0016_stream_status.sql)


@dataclass(frozen=True)
class StreamStatus:
    stream: str  # "polygon", "alpaca:iex"
    source: str
    state: str  # running | stopped
    symbols: int
    hybrid: bool
    started_at: datetime
    updated_at: datetime
    newest_event: datetime | None
    counters: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "source": self.source,
            "state": self.state,
            "symbols": self.symbols,
            "hybrid": self.hybrid,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "newest_event": self.newest_event.isoformat() if self.newest_event else None,
            "counters": self.counters,
        }


def record_stream_status(conn: psycopg.Connection, status: StreamStatus) -> None:
    """Upsert one stream's row (the row's ``updated_at`` is the database's now)."""
    try:
        conn.execute(
            """
            INSERT INTO ops.stream_status AS s
                (stream, source, state, symbols, hybrid, started_at, updated_at, newest_event, counters)
            VALUES (%s, %s, %s, %s, %s, %s, now(), %s, %s)
            ON CONFLICT (stream) DO UPDATE SET source = EXCLUDED.source, state = EXCLUDED.state,
                symbols = EXCLUDED.symbols, hybrid = EXCLUDED.hybrid, started_at = EXCLUDED.started_at,
                updated_at = now(), newest_event = EXCLUDED.newest_event, counters = EXCLUDED.counters
            """,
            (
                status.stream,
                status.source,
                status.state,
                status.symbols,
                status.hybrid,
                status.started_at,
                status.newest_event,
                Jsonb(status.counters),
            ),
        )
    except psycopg.Error as exc:
        raise StorageError(f"cannot record the status of stream {status.stream!r}: {exc}") from exc


def read_stream_status(conn: psycopg.Connection) -> list[StreamStatus]:
    rows = conn.execute(
        "SELECT stream, source, state, symbols, hybrid, started_at, updated_at, newest_event, counters"
        " FROM ops.stream_status ORDER BY stream"
    ).fetchall()
    return [StreamStatus(*row) for row in rows]


# ---------------------------------------------------------------------------------------------
# The trading code's side


# The closed bars of some symbols and a timeframe changed in (after, upto] of the change sequence,
# each once, as served now (a key changed twice in that span is read once, with its last values);
# a key removed in the span and not served closed now comes with ``removed`` true (no values).
# Each row starts with the highest change number deleted by the retention, from the same snapshot
# (one row with nulls when nothing changed): above ``after``, changes of the span may be missing.
_CHANGED_BARS = (
    "SELECT r.pruned_through, x.* FROM ops.bar_change_retention r LEFT JOIN LATERAL ("
    "SELECT DISTINCT ON (c.ts, c.symbol, c.source) c.symbol, c.ts, c.timeframe, b.open, b.high, b.low, b.close,"
    " b.volume, b.vwap, b.trade_count, c.source, b.symbol IS NULL AS removed"
    " FROM ops.bar_changes c LEFT JOIN market.bars_intraday b"
    " ON b.symbol = c.symbol AND b.timeframe = c.timeframe AND b.ts = c.ts AND b.source = c.source"
    " AND b.quality_flags & %s = 0"
    " WHERE c.timeframe = %s AND c.symbol = ANY(%s) AND c.seq > %s AND c.seq <= %s"
    " AND (b.symbol IS NOT NULL OR c.removed)"
    " ORDER BY c.ts, c.symbol, c.source) x ON true"
    " ORDER BY x.ts, x.symbol, x.source"
)
_LAST_CHANGE = "SELECT coalesce(max(seq), 0) FROM ops.bar_changes"
RECONNECT_DELAYS_S = (0.2, 5.0)  # a subscriber's first wait after a lost connection, and the longest


@dataclass(frozen=True)
class RemovedBar:
    """A closed bar a stream commit deleted: every counted trade of its window was cancelled."""

    symbol: str
    timeframe: str
    ts: pd.Timestamp
    source: str


def rows_to_bars(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    columns: list[Sequence[object]] = list(zip(*rows, strict=True)) if rows else [[] for _ in BARS]
    return frame(BARS, dict(zip(BARS, columns, strict=True)), what="announced bars")


def subscribe_bars(
    settings: Settings,
    symbols: Collection[str],
    timeframe: str = "1min",
    *,
    since: int | None = None,
    ready: Any = None,
    reconnect_for_s: float = 0.0,
) -> BarSubscription:
    """Yield closed bars of ``symbols`` and ``timeframe`` as each stream batch commits them
    (canonical BARS frames, sorted by ts then symbol). ``ready``, an ``asyncio.Event``, is set
    once the LISTEN is in place (nothing committed after that is missed).

    Each change once: a committed bar is yielded once per commit that changed its values (a bar
    corrected after it was final, by a late trade, is yielded again with its new values; the other
    bars of that commit's range are not, nor a bar a replayed batch wrote again unchanged). A bar
    a commit deleted (every counted trade of its window was cancelled) is not in the frame but in
    its ``attrs["removed"]``, a tuple of :class:`RemovedBar` (empty when none; a frame may hold
    removals only, and no bars).

    Resuming: the returned :class:`BarSubscription`'s ``seq`` is the change number reached, moved
    by every announcement, those of other symbols too (each frame's ``attrs["seq"]`` is the number
    when it was read). Keep it, and a subscriber started with ``since=`` that number after a lost
    connection first yields what changed meanwhile (each once), then goes on. Without ``since`` it
    starts at the changes committed from now on. Changes are kept a day (``CHANGE_RETENTION``): a
    ``since`` followed by changes the retention deleted, or above the last change number (a
    restore, a failover), raises RequestError before anything is yielded (subscribe without
    ``since`` and re-read the bars of the span missed); so does a subscription whose frames were not
    taken until changes after its number were deleted, when it reads on.

    A lost database connection (a PostgreSQL restart) raises ServiceError naming the number
    reached; with ``reconnect_for_s`` > 0 the subscription instead reconnects, resuming from
    ``seq``, with backoff (0.2 s doubling to 5 s) for up to that many seconds from the loss, then
    raises. A subscription that never connected raises at once.

    Closed only: a provisional bar is never yielded.

    The LISTEN is on the primary (a standby cannot listen). With ``database.read_replica.enabled``
    the announced bars are read from the replica once it has replayed the primary's WAL position
    taken after the announcement (waiting up to ``read_replica.catch_up_wait_seconds``), else from
    the primary; each frame's ``attrs["read_from"]`` says which ("replica" or "primary")."""
    wanted = sorted({str(s).upper() for s in symbols})
    if not wanted:
        raise RequestError("subscribe_bars needs at least one symbol, e.g. ['AAPL']")
    channel = bars_channel(timeframe)
    if since is not None and since < 0:
        raise RequestError(f"since={since!r}: a change number is >= 0 (a frame's attrs['seq'])")
    if reconnect_for_s < 0:
        raise RequestError(f"reconnect_for_s={reconnect_for_s!r}: seconds >= 0 (0: do not reconnect)")
    return BarSubscription(settings, wanted, stream_timeframe(timeframe), channel, since, ready, reconnect_for_s)


class BarSubscription:
    """What :func:`subscribe_bars` returns: an async iterator over its frames, and ``seq``.

    ``seq`` is the resume point, the change number reached: every change of the subscribed bars up
    to it was in a frame already yielded, or concerned other bars. It moves with each announcement
    (a subscriber whose symbols did not change has a number too), is ``None`` before the first
    connection when no ``since`` was given, and ``reconnects`` counts the connections made again."""

    def __init__(
        self,
        settings: Settings,
        symbols: list[str],
        timeframe: str,
        channel: str,
        since: int | None,
        ready: Any,
        reconnect_for_s: float,
    ) -> None:
        self.settings = settings
        self.symbols = symbols
        self.timeframe = timeframe
        self.channel = channel
        self.seq: int | None = since
        self.reconnects = 0
        self.ready = ready
        self.reconnect_for_s = reconnect_for_s
        self._listening = False  # the current connection's LISTEN is in place
        self._frames = self._follow()

    def __aiter__(self) -> BarSubscription:
        return self

    async def __anext__(self) -> pd.DataFrame:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        await self._frames.aclose()

    async def _follow(self) -> AsyncGenerator[pd.DataFrame, None]:
        """The frames of one connection after another, while a lost one is reconnected."""
        from db.connect import connection_lost

        connected = False
        lost_at = time.monotonic()
        delay, longest = RECONNECT_DELAYS_S
        attempts = 0
        while True:
            self._listening = False
            try:
                async for bars in self._listen():
                    yield bars
            except ServiceError as exc:
                connected = connected or self._listening
                if not (connected and self.reconnect_for_s > 0 and connection_lost(exc)):
                    raise
                if self._listening:  # this connection had been listening: a new loss
                    lost_at, delay, attempts = time.monotonic(), RECONNECT_DELAYS_S[0], 0
                attempts += 1
                waited = time.monotonic() - lost_at
                if waited + delay > self.reconnect_for_s:
                    raise ServiceError(
                        f"subscribe_bars gave up reconnecting to the database after {attempts} attempt(s) over"
                        f" {waited:.1f} s (reconnect_for_s={self.reconnect_for_s:g}): {exc}; once it is back,"
                        f" subscribe again with since={self.seq} to resume without a gap"
                    ) from exc
                logger.warning(
                    "subscribe_bars: {}; reconnecting in {:.1f} s (attempt {}), resuming from change {}",
                    exc,
                    delay,
                    attempts,
                    self.seq,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                self.reconnects += 1

    async def _listen(self) -> AsyncGenerator[pd.DataFrame, None]:
        """One connection's frames: from ``seq`` if set, else from the last change before LISTEN.
        A lost connection raises ServiceError (its cause the driver's error), any other database
        error StorageError."""
        from db.connect import connection_lost

        try:
            async for bars in self._listen_raw():
                yield bars
        except psycopg.Error as exc:
            if not connection_lost(exc):
                raise StorageError(f"subscribe_bars failed reading {self.timeframe} bar changes: {exc}") from exc
            raise ServiceError(
                f"subscribe_bars lost its database connection ({' '.join(str(exc).split())}); the last change"
                f" number reached is {self.seq}: subscribe again with since={self.seq} to resume without a gap"
            ) from exc

    async def _listen_raw(self) -> AsyncGenerator[pd.DataFrame, None]:
        from db.connect import async_database_connection, bounded_session

        # keepalives: a server that vanished without closing the socket is noticed within ~30 s
        session = bounded_session(self.settings.streaming.database_statement_timeout_seconds)
        since, tf, wanted = self.seq, self.timeframe, self.symbols
        # Two connections: psycopg's notifies() generator holds its connection while it waits.
        async with (
            await async_database_connection(self.settings, autocommit=True, **session) as listener,
            await async_database_connection(self.settings, autocommit=True, **session) as primary,
            _ReplicaReader(self.settings) as replica,
        ):
            # Without ``since``: from the last change committed before the LISTEN (a commit between
            # the two is read with the next announcement's changes, not lost).
            reached = since if since is not None else await _last_change(primary)
            await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.seq, self._listening = reached, True
            if self.ready is not None:
                self.ready.set()
            if since is not None:  # what changed while no one listened
                upto = await _last_change(primary)
                _check_resumable(since, upto)
                bars, pruned = await _changed_bars(replica, primary, tf, wanted, reached, upto)
                _check_kept(since, upto, pruned)
                reached = self.seq = upto
                if bars is not None:
                    yield bars
            async for note in listener.notifies():
                announced = Announcement.parse(note.payload)
                upto = announced.seq if announced.seq is not None else await _last_change(primary)
                if upto <= reached:
                    continue
                # read even when the announced symbols are not ours: the span may hold changes of a
                # commit made between the start's read of the last change and the LISTEN
                bars, pruned = await _changed_bars(replica, primary, tf, wanted, reached, upto)
                _check_kept(reached, upto, pruned, listening=True)
                reached = self.seq = upto
                if bars is not None:
                    yield bars


_RESUME_ADVICE = (
    "subscribe again without since, then re-read the bars of the span you missed "
    "(StorageRouter.read_bars or market.bars_intraday) from before your last frame"
)


def _check_resumable(since: int, last: int) -> None:
    """Refuse a ``since`` above the last change number: the database was restored, or failed over
    to a standby behind the primary, and numbers at or below ``since`` may be issued again and
    would be skipped."""
    if since > last:
        raise RequestError(
            f"since={since}: above the last change number of ops.bar_changes ({last}); the database"
            f" was restored or failed over since that number was read, and changes at or below it may"
            f" be numbered again: {_RESUME_ADVICE}"
        )


def _check_kept(after: int, last: int, pruned: int, *, listening: bool = False) -> None:
    """Refuse to go on from ``after`` when the retention deleted a change above it (``pruned``, the
    highest number deleted, read with the span): what changed after it is past
    ``CHANGE_RETENTION`` and the span read had changes missing. Resuming from an old ``since``,
    or, ``listening``, a subscriber that did not take its frames for that long."""
    if pruned <= after:
        return
    what = (
        f"the subscription reached change {after} and its frames were not taken for {CHANGE_RETENTION}:"
        if listening
        else f"since={after}:"
    )
    raise RequestError(
        f"{what} the changes after it are no longer kept (ops.bar_changes keeps {CHANGE_RETENTION}: changes up"
        f" to {pruned} are deleted, those after it up to {last} are kept): {_RESUME_ADVICE}"
    )


async def _last_change(conn: psycopg.AsyncConnection) -> int:
    row = await (await conn.execute(_LAST_CHANGE)).fetchone()
    return int(row[0]) if row else 0


async def _changed_bars(
    replica: _ReplicaReader, primary: psycopg.AsyncConnection, timeframe: str, symbols: list[str], after: int, upto: int
) -> tuple[pd.DataFrame | None, int]:
    """The closed bars of ``symbols`` changed in (after, upto] and those removed (None if none),
    ``attrs["seq"] = upto``, and the highest change number the retention deleted when they were read."""
    reader = await replica.caught_up_with(primary) or primary
    cur = await reader.execute(_CHANGED_BARS, (PROVISIONAL, timeframe, symbols, after, upto))
    marked = await cur.fetchall()
    pruned = int(marked[0][0])
    rows = [row[1:] for row in marked if row[1] is not None]
    if not rows:
        return None, pruned
    bars = rows_to_bars([row[:-1] for row in rows if not row[-1]])
    bars.attrs["removed"] = tuple(
        RemovedBar(symbol=row[0], timeframe=row[2], ts=pd.Timestamp(row[1]), source=row[10]) for row in rows if row[-1]
    )
    bars.attrs["read_from"] = "primary" if reader is primary else "replica"
    bars.attrs["seq"] = upto
    return bars, pruned


class _ReplicaReader:
    """The read replica's connection of a subscriber, when ``database.read_replica.enabled`` and it
    answers (else None: the primary reads everything)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: psycopg.AsyncConnection | None = None

    async def __aenter__(self) -> _ReplicaReader:
        from db.replica import async_replica_connection

        if self.settings.database.read_replica.enabled:
            try:
                self.conn = await async_replica_connection(self.settings, autocommit=True)
            except ServiceError as exc:
                logger.warning("{}; subscribe_bars reads from the primary", exc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def caught_up_with(self, primary: psycopg.AsyncConnection) -> psycopg.AsyncConnection | None:
        """The replica's connection once it has replayed the primary's current WAL position (which
        follows the announcing commit), within ``catch_up_wait_seconds``; else None. A replica lost
        on the way is dropped: the primary reads the rest."""
        from db.replica import async_replayed

        if self.conn is None:
            return None
        row = await (await primary.execute("SELECT pg_current_wal_lsn()::text")).fetchone()
        lsn = str(row[0]) if row else ""
        deadline = time.monotonic() + self.settings.database.read_replica.catch_up_wait_seconds
        try:
            while not await async_replayed(self.conn, lsn):
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(0.005)
        except psycopg.OperationalError as exc:
            logger.warning("lost the read replica ({}); subscribe_bars reads from the primary", exc)
            await self.conn.close()
            self.conn = None
            return None
        return self.conn
