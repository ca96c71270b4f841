"""The stream service: a vendor's WebSocket -> micro-batches -> bar windows -> the hot store.

One :class:`StreamService` runs one vendor connection (one key) for a set of symbols and datasets.
The pieces, each in its own module, in the order data flows:

1. the connection (:func:`sources.stream.open_stream`): reads frames into a bounded buffer, stops
   reading when it is full (TCP pushes back on the vendor), spills to the lake's raw zone past a lag
   limit; parses frames into columnar micro-batches (:class:`sources.stream.StreamBatch`);
2. the bar windows (:class:`streaming.windows.BarWindows`): trades -> bars of
   ``streaming.window_seconds`` and 1 minute, final once the window plus ``streaming.lateness_seconds``
   has passed by EVENT time (the newest exchange timestamp seen), provisional before;
3. the writer (:func:`storage.streams.commit_stream_batch`): one transaction per micro-batch, run
   in a worker thread so the event loop keeps reading; closed bars announced by NOTIFY.

Hybrid mode (``hybrid=True``): what the stream missed is fetched over the vendor's REST API and fed
through the same windows and writer. A span is missed at every (re)connect (from the newest event
delivered before it; at the start, each symbol's trades from the start of its oldest window that may
still be open, :func:`trades_catch_up_start`, and minute bars after its newest final one; up to the
first event the new connection delivered) and at every spill (the span of each symbol's trades and
bars in the spilled frames). Each is recorded when it happens (:mod:`streaming.gaps`), never derived
from a watermark later (the stream's own commits move it), as a :class:`CatchUp` queued at its place
in the stream's order, between the micro-batches read before and after it. Its fetch runs in the
background, ``streaming.catch_up_parallel_symbols`` requests at a time; meanwhile the consumer
keeps reading (the buffer does not fill and spill), and the micro-batches read after the span wait
in memory, in order, behind it: the windows see the REST trades before the later ones, and no
watermark moves past a span before its REST data is committed (a crash leaves it to the next run's
catch-up). Spans survive reconnects: several may be in flight, each closed once committed. The
queue is in receive order: a micro-batch is queued before the consumer waits for its turn, and a
spill's catch-up is placed by its frames' receive time, behind the micro-batches read before them
(a catch-up committed first would move the watermarks past them). Past
``streaming.catch_up_hold_rows`` rows held (fetched REST rows waiting behind an earlier catch-up
included), the consumer waits for the oldest catch-up (the buffer's spill takes over, and a spill is
caught up too), a bounded number of times. A catch-up whose fetch fails (a retryable error), or has
not ended after those waits, is left open: what follows it is stored, each symbol's trades and bars
watermarks moving only up to the start of its earliest open span (:func:`streaming.gaps.marks_until`),
and its span is fetched again in the background (``CATCH_UP_RETRIES`` tries, backing off from
``CATCH_UP_RETRY_S``). Fetched late, after the live windows closed the span's windows, its trades
are not fed to them: the whole windows it touches are fetched and their bars built afresh from the
REST trades alone (:func:`streaming.gaps.whole_windows`), then stored with its vendor minute bars
in one commit under the order lock; once no span is open the watermarks move on with the next
micro-batch. The open spans are in the status counters (``open_spans``, ``open_span``, ...) and
``pipeline.health`` names them once a retry failed. A span still open at the stop is left to the
next hybrid run (the stream then ends with the fetch's error, if it failed); a permanent error (a
refused key) ends the stream at once. Every span is kept in ``ops.stream_gaps``
(:mod:`storage.stream_gaps`): its rows are written open by the first commit after it is known and
set applied by the commit of its data, so a span outlives the process: a hybrid run loads the
spans its stream left unfilled for its symbols and fetches them first (:meth:`_load_unfilled`),
and ``pipeline.health`` names one unfilled for long after its process died. Trades are keyed
(symbol, ts, exchange, trade_id) and the windows drop duplicates, so the overlap of REST and stream
writes nothing twice; the windows see every trade of the minutes around a gap, so the bars built
are the vendor's bars.

News (``datasets=("news",)``, Alpaca only, alone: its own endpoint ``/v1beta1/news``): each
micro-batch of ``n`` messages takes the batch path's news path (:func:`pipeline.news.store_streamed_news`:
dedup into stories against what is stored, sentiment, the symbols' watermarks in one transaction,
the stories' embeddings in the next); an article later fetched over REST is the same row and story.

Which bars are written, one source of truth per bar:
- 1-minute bars: the vendor's own minute bars when the ``bars`` dataset is streamed (Polygon ``AM``,
  Alpaca ``b``: the same bars its REST API serves, VWAP included), caught up over REST aggregates in
  hybrid mode; built from the trades by the windows otherwise. While a minute forms, the windows'
  bar of it is stored provisional (never over a vendor bar already stored final).
- the stream's own window (``streaming.window_seconds`` when it is not 60): built from the trades.
- without hybrid mode, a built bar whose window overlaps a span the stream missed (before its first
  trade; between the last trade before a reconnect and the first after) is never final: it is
  stored provisional when it closes (:func:`overlaps_gaps`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import orjson
import pandas as pd
from loguru import logger

from core.errors import RequestError, SourceError, StorageError
from core.model import BARS, TRADES, empty_frame, normalize_symbol
from streaming.gaps import (
    Gap,
    bars_within,
    connect_gaps,
    delivered,
    join_batches,
    marks_until,
    newest_bars,
    resume_point,
    spilled_gaps,
    split_at,
    whole_windows,
)

if TYPE_CHECKING:
    from core.settings import Settings
    from sources.stream import StreamBatch, StreamConnection, StreamEvent, StreamProtocol
    from storage.stream_gaps import StreamGap
    from storage.streams import StreamCommit

DATASETS = ("trades", "quotes", "bars", "news")
#: Datasets a vendor streams on an endpoint of their own (Alpaca's news): alone in a plan.
OWN_ENDPOINT = {"news": ("alpaca",)}
SOURCES = ("polygon", "alpaca")
_EPOCH = pd.Timestamp(0, tz="UTC")
STATUS_EVERY_S = 5.0
PROVISIONAL_EVERY_S = 1.0  # forming bars are rebuilt and rewritten at most this often
DATABASE_RETRY_S = 120.0  # how long a lost database is waited for before the stream gives up
# Micro-batches refused in a row before the stream stops: one bad row is dead-lettered and passed,
# a store that refuses everything (a schema or permission fault) is not a data problem.
REFUSED_IN_A_ROW_LIMIT = 10
# Hybrid mode: at most this many waits of the consumer for the oldest catch-up when too much is held,
# each up to CATCH_UP_WAIT_S; at the end, what is in flight is waited for up to CATCH_UP_WAIT_S.
HOLD_WAITS = 10
CATCH_UP_WAIT_S = 60.0
# Hybrid mode: a catch-up left open is fetched again in the background at most CATCH_UP_RETRIES
# times, the first CATCH_UP_RETRY_S after it was left open, each next one after twice the wait (at
# most CATCH_UP_RETRY_MAX_S), each try given what the first fetch was (HOLD_WAITS x CATCH_UP_WAIT_S):
# given up within about an hour.
CATCH_UP_RETRIES = 5
CATCH_UP_RETRY_S = 15.0
CATCH_UP_RETRY_MAX_S = 240.0
T = TypeVar("T")  # ops.stream_status is rewritten this often while the stream runs


def database_lost(exc: BaseException | None) -> bool:
    """The stream's connection is to be reopened and the action retried: it was lost, or one of
    its statements ran past ``streaming.database_statement_timeout_seconds`` (stuck behind a lock or
    a dead peer; db.connect.bounded_session). Elsewhere a cancelled statement is the work's own
    failure, not a lost connection (db.connect.connection_lost)."""
    from db.connect import connection_lost, statement_cancelled

    return connection_lost(exc) or statement_cancelled(exc)


@dataclass(frozen=True)
class StreamPlan:
    """What one stream service carries: a vendor, its symbols and datasets, and whether it joins
    the batch path (hybrid)."""

    source: str
    symbols: tuple[str, ...]
    datasets: tuple[str, ...] = ("trades", "quotes")
    hybrid: bool = False
    feed: str | None = None  # Alpaca: iex | sip | test
    url: str | None = None  # the stream endpoint; default from settings (the vendor, or the sandbox)

    @classmethod
    def of(
        cls,
        source: str,
        symbols: Sequence[str] | str,
        datasets: Sequence[str] | str = ("trades", "quotes"),
        **kwargs: Any,
    ) -> StreamPlan:
        """A plan from user input; a clear error names any value it refuses."""
        if source not in SOURCES:
            raise RequestError(f"unknown stream source {source!r}; streams exist for {', '.join(SOURCES)}")
        names = [s for s in (symbols.split(",") if isinstance(symbols, str) else symbols) if s and s.strip()]
        if not names:
            raise RequestError("no symbols to stream; pass e.g. --symbols AAPL,MSFT")
        wanted = [d.strip() for d in (datasets.split(",") if isinstance(datasets, str) else datasets) if d.strip()]
        unknown = sorted(set(wanted) - set(DATASETS))
        if unknown or not wanted:
            raise RequestError(f"unknown stream dataset(s) {unknown or wanted}; choose from {', '.join(DATASETS)}")
        for dataset, sources in OWN_ENDPOINT.items():
            if dataset in wanted and source not in sources:
                raise RequestError(f"{source} has no {dataset} stream; {dataset} streams from {', '.join(sources)}")
            if dataset in wanted and len(wanted) > 1:
                raise RequestError(
                    f"{dataset} streams on an endpoint of its own: run it as a stream of its own "
                    f"(--datasets {dataset}), apart from {', '.join(d for d in wanted if d != dataset)}"
                )
            if dataset in wanted and kwargs.get("hybrid"):
                raise RequestError(f"--hybrid catches up trades and bars; a {dataset} stream has no catch-up")
        return cls(source, tuple(dict.fromkeys(normalize_symbol(s.strip()) for s in names)), tuple(wanted), **kwargs)

    def rest_options(self) -> dict[str, Any]:
        """The options of the REST source that catches this stream up: Alpaca's trades and bars of the
        feed the stream reads (its default, iex, when the plan names none); REST left to its own
        default could fill an IEX stream's gaps with SIP prints. The stream-only ``test`` feed has
        no REST counterpart."""
        if self.source != "alpaca":
            return {}
        from sources.alpaca.stream import DEFAULT_FEED

        feed = self.feed or DEFAULT_FEED
        return {"feed": feed} if feed in ("iex", "sip") else {}


@dataclass
class StreamReport:
    """Counters of a running stream: heartbeats, health and the benchmark read them."""

    batches: int = 0
    messages: int = 0
    trades: int = 0
    quotes: int = 0
    final_bars: int = 0
    provisional_bars: int = 0
    duplicates: int = 0
    late_trades: int = 0
    dead: int = 0
    refused_batches: int = 0  # micro-batches the hot store refused for their data (frames dead-lettered)
    vendor_errors: int = 0  # error events the vendor sent on the stream (a refused subscription, ...)
    last_vendor_error: str | None = None
    connects: int = 0
    catchups: int = 0
    catchup_trades: int = 0
    held_rows: int = 0  # hybrid: rows read and not yet stored (behind a catch-up in flight)
    held_rows_peak: int = 0  # the most rows that waited behind a catch-up at once
    # hybrid: catch-ups left open (their spans unfilled, the trades and bars watermarks of their
    # symbols held before them): how many, the earliest span, since when, its failed retries and error
    open_spans: int = 0
    open_span: str | None = None
    open_span_since: pd.Timestamp | None = None
    open_span_retries: int = 0
    open_span_error: str | None = None
    reopened_spans: int = 0  # spans left open, then filled by a retry
    news: int = 0  # news items inserted or updated
    news_refused: int = 0  # news items refused (dead-lettered with their reason)
    database_retries: int = 0
    newest_event: pd.Timestamp | None = None
    # Since when the stream has had no connection (from its start until the first connect; from a
    # drop until the reconnect), as the status row's ticker saw it; None while connected.
    unconnected_since: pd.Timestamp | None = None
    commit_latency_ms: list[float] = field(default_factory=list)  # received -> committed, per batch sample
    connection: dict[str, Any] = field(default_factory=dict)  # the connection's counters (spilled, dropped, ...)

    def as_dict(self) -> dict[str, Any]:
        lat = np.array(self.commit_latency_ms) if self.commit_latency_ms else None
        return {
            "batches": self.batches,
            "messages": self.messages,
            "trades": self.trades,
            "quotes": self.quotes,
            "final_bars": self.final_bars,
            "provisional_bars": self.provisional_bars,
            "duplicates": self.duplicates,
            "late_trades": self.late_trades,
            "dead": self.dead,
            "refused_batches": self.refused_batches,
            "vendor_errors": self.vendor_errors,
            "last_vendor_error": self.last_vendor_error,
            "connects": self.connects,
            "catchups": self.catchups,
            "catchup_trades": self.catchup_trades,
            "held_rows": self.held_rows,
            "held_rows_peak": self.held_rows_peak,
            "open_spans": self.open_spans,
            "open_span": self.open_span,
            "open_span_since": self.open_span_since.isoformat() if self.open_span_since is not None else None,
            "open_span_retries": self.open_span_retries,
            "open_span_error": self.open_span_error,
            "reopened_spans": self.reopened_spans,
            "news": self.news,
            "news_refused": self.news_refused,
            "database_retries": self.database_retries,
            "newest_event": self.newest_event.isoformat() if self.newest_event is not None else None,
            "unconnected_since": self.unconnected_since.isoformat() if self.unconnected_since is not None else None,
            "commit_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat is not None else None,
            "commit_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat is not None else None,
            **self.connection,
        }


@dataclass(eq=False)
class CatchUp:
    """A span the stream missed, queued between the micro-batches read before and after it
    (hybrid mode). A connect's gaps are known once the new connection delivered its first event
    (``gaps`` None until then); a spill's at once. ``fetch`` is their REST fetch, running in the
    background; the span is closed once what it fetched is committed."""

    cause: str  # "connect" | "spill"
    trades_from: dict[str, pd.Timestamp] = field(default_factory=dict)  # a connect: newest delivered before it
    bars_from: dict[str, pd.Timestamp] = field(default_factory=dict)
    gaps: list[Gap] | None = None
    fetch: asyncio.Task[list[tuple[Gap, pd.DataFrame]]] | None = None
    span_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # its rows in ops.stream_gaps


@dataclass(eq=False)
class OpenSpan:
    """A catch-up left open (its fetch failed or did not end): its ``gaps`` are unfilled, and its
    symbols' trades and bars watermarks stay before them until a retry fills them."""

    cause: str
    gaps: list[Gap]
    since: pd.Timestamp  # when it was left open (wall clock)
    error: BaseException | None = None  # what its last fetch raised
    retries: int = 0  # retries that failed
    retry: asyncio.Task[None] | None = None
    span_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # its rows in ops.stream_gaps

    def describe(self) -> str:
        first = min(self.gaps, key=lambda gap: gap.start)
        end = max(gap.end for gap in self.gaps)
        symbols = sorted({gap.symbol for gap in self.gaps})
        named = ", ".join(symbols[:5]) + (f" and {len(symbols) - 5} more" if len(symbols) > 5 else "")
        return f"{named} from {first.start.isoformat()} to {end.isoformat()} (after a {self.cause})"


@dataclass(frozen=True)
class SpilledSpan:
    """A spill's catch-up before its place in the queue is known: frames read before
    ``received_ns`` (its first frame's) go ahead of it, those read after behind it; ``resume``: the
    first event in the spilled frames (where a connect before them resumed)."""

    received_ns: int
    catch_up: CatchUp
    resume: pd.Timestamp | None


@dataclass
class LocalStream:
    """A stream run in this process by the Python API: how it is stopped and seen from outside
    the flow run (the flow takes the key; Prefect parameters cannot carry an event)."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    service: StreamService | None = None
    flow_run_id: str | None = None  # the flow run hosting it, once started


_LOCAL_STREAMS: dict[str, LocalStream] = {}


def register_local_stream() -> tuple[str, LocalStream]:
    import uuid

    key = uuid.uuid4().hex
    _LOCAL_STREAMS[key] = LocalStream()
    return key, _LOCAL_STREAMS[key]


def local_stream(key: str) -> LocalStream:
    try:
        return _LOCAL_STREAMS[key]
    except KeyError:
        raise RequestError(f"no stream {key!r} runs in this process") from None


def release_local_stream(key: str) -> None:
    _LOCAL_STREAMS.pop(key, None)


class StreamService:
    """Runs one :class:`StreamPlan` until ``stop`` is set, then drains: every frame already read is
    parsed, windowed and committed; windows still open are stored provisional (not final: the
    market has not closed them)."""

    def __init__(
        self, settings: Settings, plan: StreamPlan, *, heartbeat: Callable[[StreamReport], None] | None = None
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.report = StreamReport()
        self.heartbeat = heartbeat
        # Hybrid: wall ns of (re)connects not yet placed in the queue; the queue of micro-batches and
        # catch-ups in the stream's order; the newest trade and vendor bars read so far; the
        # watermarks at the start (read once, before anything of this run is committed).
        self._connects: list[int] = []
        self._spills: list[SpilledSpan] = []  # spills not placed in the queue yet (by receive time)
        self._queue: deque[StreamBatch | CatchUp] = deque()
        self._catch_ups = 0  # in the queue
        self._unresumed: list[CatchUp] = []  # connects whose new connection delivered no trade yet
        self._delivered_trade: pd.Timestamp | None = None
        self._delivered_bars: dict[str, pd.Timestamp] = {}
        self._start_marks: dict[str, dict[str, pd.Timestamp]] | None = None
        self._order = asyncio.Lock()  # one micro-batch or catch-up applied at a time, in order
        self._fetch_slots: asyncio.Semaphore | None = None
        self._followers: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._closing = False  # the end: no follower starts; the queue is stored by the closing code
        self._open: list[OpenSpan] = []  # catch-ups left open: watermarks stay before them
        self._unrecorded: list[StreamGap] = []  # spans known, their rows written by the next commit
        self._first_event = asyncio.Event()  # the stream's clock is known (see _fetch_clock)
        self._windows: Any = None
        self._stream: Any = None
        # Without a catch-up (not hybrid): wall ns of (re)connects whose gap is not bounded yet, and
        # the event-time spans the stream missed (bars of windows overlapping them stay provisional).
        self._unbounded: list[int] = []
        self._gaps: list[tuple[pd.Timestamp, pd.Timestamp]] = []
        self._vendor_minute: dict[str, pd.Timestamp] = {}  # newest vendor minute bar per symbol
        self._conn: Any = None
        self._resilience: Any = None
        self.connected = asyncio.Event()  # set at the first connect
        self._started_at: Any = None
        self._status_at = 0.0
        self._forming_at = 0.0
        self._news_models: Any = None  # pipeline.news.NewsModels of a news stream, loaded at start
        self._refused_in_a_row = 0
        self._database = asyncio.Lock()  # one statement at a time on the stream's connection

    @property
    def streams_news(self) -> bool:
        return "news" in self.plan.datasets

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> StreamReport:
        from db.connect import database_connection
        from sources.stream import open_stream
        from streaming.windows import BarWindows

        streaming = self.settings.streaming
        windows = BarWindows(streaming.window_seconds, streaming.lateness_seconds, source=self.plan.source)
        from sources.factory import source_resilience

        # The stream shares its vendor's circuit breaker with the REST catch-up of this service.
        self._resilience = source_resilience(self.plan.source, self.settings)
        stream = open_stream(
            self.settings,
            self.plan.source,
            url=self.plan.url,
            feed=self.plan.feed,
            spill=self._spill if self.plan.hybrid else self.spill_frames,
            breaker=self._resilience.breaker,
            datasets=self.plan.datasets,
        )
        if self.streams_news:  # the sentiment lexicon and the embedding model load once, off the loop
            from pipeline.news import NewsModels

            self._news_models = await asyncio.to_thread(NewsModels.from_settings, self.settings)
        stream.on_connected = self._connected
        self._windows, self._stream = windows, stream
        self._conn = database_connection(self.settings, autocommit=True, **self._session)
        try:
            self.report.unconnected_since = pd.Timestamp.now(tz="UTC")
            await self._record_status("running", stream)
            if self.heartbeat is not None:  # arms the "stream stalled" automation: a stream that never
                self.heartbeat(self.report)  # connects sends no other (_tick beats while connected)
            if self.plan.hybrid:  # where the start's catch-up begins, before anything is committed
                await self._watermarks_at_start()
                await self._load_unfilled()
            stopper = asyncio.create_task(self._close_on(stop, stream))
            ticker = asyncio.create_task(self._report_unconnected(stream))
            failure: BaseException | None = None
            try:
                await stream.subscribe(self.plan.datasets, self.plan.symbols)
                async for batch in stream.batches(streaming.batch_max_rows, streaming.batch_max_delay_seconds):
                    await self._handle(batch, windows, stream)
                unfilled: SourceError | None = None
                if self.plan.hybrid:
                    try:
                        await self._settle()
                    except SourceError as exc:  # a span its fetch could not fill: said once all is stored
                        unfilled = exc
                # Stopping is not the end of the market: windows still open stay provisional (the
                # next run, in hybrid mode, refetches their trades and finishes them).
                if self.report.newest_event is not None and not self.streams_news:
                    async with self._order:  # after anything a catch-up's follower still stores
                        last = windows.advance(self.report.newest_event, provisional=True)
                        final, forming = self._bars_to_write(last, empty_frame(BARS))
                        removed = self._removed(last)
                        await self._store((), (), final_bars=final, provisional_bars=forming, removed_bars=removed)
                if self._unrecorded:  # spans known at the end, after the last commit
                    await self._commit()
                if unfilled is not None:
                    raise unfilled
            except BaseException as exc:
                failure = exc
                if self.plan.hybrid and isinstance(exc, Exception):
                    await self._release_on_failure(exc)
                raise
            finally:
                stopper.cancel()
                ticker.cancel()
                self._cancel_catch_ups()
                await stream.close()
                self.report.connection = _stats_dict(stream)
                await self._record_stopped(stream, failure)
        finally:
            self._conn.close()
        return self.report

    async def _db(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``action(connection, ...)`` in a worker thread (the event loop keeps reading). A lost
        database connection (a PostgreSQL restart; a statement past
        ``streaming.database_statement_timeout_seconds``) is reopened and the SAME action retried, with
        backoff, for up to ``DATABASE_RETRY_S``: the micro-batch is still in memory and the writes are
        idempotent, while the connection's buffer (and its spill) absorbs the stream meanwhile."""
        from db.connect import database_connection

        deadline = time.monotonic() + DATABASE_RETRY_S
        delay = 0.2
        while True:
            try:
                async with self._database:  # the status ticker writes beside the consumer
                    return await asyncio.to_thread(action, self._conn, *args, **kwargs)
            except Exception as exc:
                if not database_lost(exc) or time.monotonic() + delay > deadline:
                    raise
                logger.warning("stream {}: database connection lost ({}); retrying in {:.1f} s", self.name, exc, delay)
                self.report.database_retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            with contextlib.suppress(Exception):
                self._conn.close()
            with contextlib.suppress(Exception):
                self._conn = await asyncio.to_thread(
                    database_connection, self.settings, autocommit=True, **self._session
                )

    @property
    def _session(self) -> dict[str, Any]:
        """The stream's database connection never blocks for ever (db.connect.bounded_session)."""
        from db.connect import bounded_session

        return bounded_session(self.settings.streaming.database_statement_timeout_seconds)

    @property
    def name(self) -> str:
        """The stream's name in ops.stream_status and in events: the vendor, and the feed if any."""
        return self.plan.source + (f":{self.plan.feed}" if self.plan.feed else "")

    async def _record_status(self, state: str, stream: Any) -> None:
        from storage.streams import StreamStatus, record_stream_status

        self.report.connection = _stats_dict(stream)
        now = pd.Timestamp.now(tz="UTC").to_pydatetime()
        status = StreamStatus(
            stream=self.name,
            source=self.plan.source,
            state=state,
            symbols=len(self.plan.symbols),
            hybrid=self.plan.hybrid,
            started_at=self._started_at or now,
            updated_at=now,
            newest_event=self.report.newest_event.to_pydatetime() if self.report.newest_event is not None else None,
            counters=_jsonable(self.report.as_dict()),
        )
        self._started_at = status.started_at
        self._status_at = time.monotonic()
        await self._db(record_stream_status, status)

    async def _record_stopped(self, stream: Any, failure: BaseException | None) -> None:
        """The last status row. After a lost database it is not tried (it would wait out another
        ``DATABASE_RETRY_S``); after another failure, its own error is logged and the failure,
        the cause worth reporting, propagates."""
        if failure is not None and database_lost(failure):
            logger.warning("stream {}: the database is lost; its stopped status is not recorded", self.name)
            return
        try:
            await self._record_status("stopped", stream)
        except Exception as exc:
            if failure is None:
                raise
            logger.warning("stream {}: recording its stopped status failed too: {}", self.name, exc)

    async def _report_unconnected(self, stream: Any) -> None:
        """Every ``STATUS_EVERY_S`` until the service ends (cancelled then): see :meth:`_tick`."""
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            await self._tick(stream)

    async def _tick(self, stream: Any) -> None:
        """While connected, a heartbeat: a connected stream that reads nothing (the market closed,
        illiquid symbols) brings no micro-batch and so no other heartbeat, and the "stream stalled"
        automation, armed by the start's heartbeat, would fire for it. While the stream has no
        connection (every connect refused, a wrong URL, the vendor down) no heartbeat (that silence
        is the alert) and no micro-batch comes to write the status row: it is written here, with
        ``connected`` false and ``unconnected_since`` (pipeline.health.stream_issues alerts on it);
        a failed write waits for the next turn."""
        connection = _stats_dict(stream)
        if connection.get("connected"):
            self.report.unconnected_since = None
            if self.heartbeat is not None:
                self.report.connection = connection
                self.heartbeat(self.report)
            return
        if self.report.unconnected_since is None:
            self.report.unconnected_since = pd.Timestamp.now(tz="UTC")
        if time.monotonic() - self._status_at >= STATUS_EVERY_S:
            try:
                await self._record_status("running", stream)
            except StorageError as exc:
                logger.warning("stream {}: its status could not be recorded: {}", self.name, exc)

    async def _close_on(self, stop: asyncio.Event, stream: StreamConnection) -> None:
        await stop.wait()
        logger.info("stream {}: stop requested, draining", self.plan.source)
        await stream.close()

    def _connected(self, connected: Any = None) -> None:
        self.report.connects += 1
        self.report.unconnected_since = None
        self.connected.set()
        at_ns = int(getattr(connected, "at_ns", None) or time.time_ns())  # once authenticated and resubscribed
        if self.plan.hybrid:
            self._connects.append(at_ns)
        elif "trades" in self.plan.datasets:  # the windows build bars from trades alone
            self._unbounded.append(at_ns)

    async def _handle(self, batch: StreamBatch, windows: Any, stream: StreamConnection) -> None:
        if self.streams_news:
            await self._handle_news(batch, stream)
            return
        if not self.plan.hybrid:
            await self._process(batch, windows, stream)
            return
        self._windows, self._stream = windows, stream
        # Queued before waiting for the order: a spill meanwhile is placed by receive time, behind it.
        await self._enqueue(batch)
        self._raise_failure()  # what is queued is stored on the way out (_release_on_failure)
        async with self._order:
            await self._advance()
        await self._bound_hold()

    async def _process(self, batch: StreamBatch, windows: Any, stream: StreamConnection) -> None:
        """One micro-batch through the windows to the hot store (in hybrid mode, in its turn)."""
        report = self.report
        trades = batch.trades
        if self._unbounded:
            self._bound_gaps(batch)
        windows.add_trades(trades)
        if not batch.cancels.empty:
            windows.apply_cancels(batch.cancels)
        if not batch.corrections.empty:
            windows.apply_corrections(batch.corrections)
        newest = _newest(batch)
        if newest is not None and (report.newest_event is None or newest > report.newest_event):
            report.newest_event = newest
            self._first_event.set()
        forming = time.monotonic() - self._forming_at >= PROVISIONAL_EVERY_S
        out = windows.advance(report.newest_event, provisional=forming) if report.newest_event is not None else None
        if forming:
            self._forming_at = time.monotonic()
        final, provisional = self._bars_to_write(out, batch.bars)
        commit = await self._store(
            batch.frames,
            batch.frames_received_ns,
            trades=trades if "trades" in self.plan.datasets else None,
            quotes=batch.quotes if "quotes" in self.plan.datasets else None,
            final_bars=final,
            provisional_bars=provisional,
            removed_bars=self._removed(out),
        )
        if len(batch.received_ns):
            lag_ms = (time.time_ns() - int(np.min(batch.received_ns))) / 1e6
            report.commit_latency_ms.append(lag_ms)
            del report.commit_latency_ms[:-10_000]
        report.batches += 1
        report.messages += len(trades) + len(batch.quotes) + len(batch.bars)
        report.trades += commit.trades.changed
        report.quotes += commit.quotes.changed
        if out is not None:
            report.duplicates, report.late_trades = out.duplicates, out.late_trades
        await self._end_batch(batch, stream)

    async def _end_batch(self, batch: StreamBatch, stream: StreamConnection) -> None:
        """What every micro-batch ends with: the vendor's control events said, its dead letters
        stored, the status row now and then, the heartbeat."""
        report = self.report
        self._say(batch.events)
        if batch.dead:
            report.dead += len(batch.dead)
            await self._db(self._dead_letters, batch.dead)
        if time.monotonic() - self._status_at >= STATUS_EVERY_S:
            await self._record_status("running", stream)
        if self.heartbeat is not None:
            report.connection = _stats_dict(stream)
            self.heartbeat(report)

    def _say(self, events: Sequence[StreamEvent]) -> None:
        """The vendor's control events: an error (a subscription refused, a bad request) is logged
        and counted, not dropped; what the plan refuses for good ends the connection (sources.stream)."""
        for event in events:
            text = f"{event.message}" + (f" (code {event.code})" if event.code is not None else "")
            if event.kind in ("error", "plan_limit"):
                self.report.vendor_errors += 1
                self.report.last_vendor_error = text
                logger.error("stream {}: the vendor answered {}", self.name, text)
            elif event.kind == "slow_consumer":
                logger.warning("stream {}: the vendor says we read too slowly: {}", self.name, text)
            elif event.kind in ("subscribed", "unsubscribed", "status"):
                logger.info("stream {}: {}: {}", self.name, event.kind, text)

    async def _handle_news(self, batch: StreamBatch, stream: StreamConnection) -> None:
        """Articles take the batch path's news path (pipeline.news: dedup into stories, sentiment,
        the watermarks in one transaction per micro-batch, the embeddings in the next); malformed frames and
        messages are dead-lettered with their raw text, refused articles with their reason."""
        from pipeline.news import store_streamed_news

        report = self.report
        if not batch.news.empty:
            request = {"stream": self.plan.source, "feed": self.plan.feed, "dataset": "news"}
            written, rejected = await self._db(store_streamed_news, batch.news, self._news_models, request)
            report.news += written.inserted + written.updated
            report.news_refused += len(rejected)
            newest = batch.news["updated_ts"].max()
            if report.newest_event is None or newest > report.newest_event:
                report.newest_event = newest
        report.batches += 1
        report.messages += len(batch.news)
        await self._end_batch(batch, stream)

    def _bars_to_write(self, out: Any, vendor: pd.DataFrame) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """(final, provisional) bars of one micro-batch, by the rule in the module docstring."""
        built_final = out.final if out is not None else None
        built_forming = out.provisional if out is not None else None
        if self._gaps and built_final is not None and not built_final.empty:
            gapped = overlaps_gaps(built_final, self._gaps)
            if gapped.any():  # seen in part: stored provisional, never announced as the vendor's bar
                held = built_final[gapped]
                built_final = built_final[~gapped]
                parts = [f for f in (built_forming, held) if f is not None and not f.empty]
                built_forming = pd.concat(parts, ignore_index=True)
        if "bars" not in self.plan.datasets:
            return built_final, built_forming
        if not vendor.empty:
            newest = vendor.groupby("symbol", observed=True)["ts"].max()
            for symbol, ts in newest.items():
                if ts > self._vendor_minute.get(str(symbol), _EPOCH):
                    self._vendor_minute[str(symbol)] = ts
        final = _drop_minutes(built_final)
        forming = built_forming
        if forming is not None and not forming.empty:
            covered = forming["symbol"].astype(str).map(self._vendor_minute).fillna(_EPOCH)
            forming = forming[(forming["timeframe"] != "1min") | (forming["ts"] > covered)]
        parts = [f for f in (final, vendor) if f is not None and not f.empty]
        return (pd.concat(parts, ignore_index=True) if parts else None), forming

    def _bound_gaps(self, batch: StreamBatch) -> None:
        """Bound the event-time span each pending (re)connect missed, once trades received after it
        arrive: from the newest trade received before it (none at the first connect) to the
        earliest received after it. A connection that delivered nothing merges into the next gap."""
        trades = batch.trades
        if trades.empty:
            return
        received = np.asarray(batch.received_ns)
        ts = trades["ts"]
        before_batch = self.report.newest_event if self.report.newest_event is not None else _EPOCH
        while self._unbounded:
            connected_ns = self._unbounded[0]
            fresh = received >= connected_ns
            if not fresh.any():
                return
            older = ts[~fresh]
            start = max(before_batch, older.max()) if not older.empty else before_batch
            self._gaps.append((pd.Timestamp(start), pd.Timestamp(ts[fresh].min())))
            self._unbounded.pop(0)
        horizon = self._gaps[-1][1] - pd.Timedelta(hours=1)  # windows correct final bars for 60 s at most
        self._gaps = [g for g in self._gaps if g[1] >= horizon]

    def _removed(self, out: Any) -> pd.DataFrame | None:
        """Bars the windows withdrew (all their trades cancelled), unless the vendor's bars own them."""
        removed = out.removed if out is not None else None
        return _drop_minutes(removed) if "bars" in self.plan.datasets else removed

    async def _store(
        self,
        frames: Sequence[bytes],
        received_ns: Sequence[int],
        *,
        filled: Sequence[tuple[str, Gap]] = (),
        **parts: pd.DataFrame | None,
    ) -> StreamCommit:
        """Commit what ``frames`` produced. A commit the hot store refuses for its data (a value it
        cannot store; not a lost connection, which :meth:`_db` waits out) dead-letters ``frames``
        with the store's reason, and the stream goes on: one bad row must not end the service.
        ``REFUSED_IN_A_ROW_LIMIT`` refusals in a row raise the last: the store, not the data, is wrong."""
        from sources.stream import DeadFrame
        from storage.streams import StreamCommit

        try:
            commit = await self._commit(filled=filled, **parts)
        except StorageError as exc:
            self._refused_in_a_row += 1
            if database_lost(exc) or self._refused_in_a_row >= REFUSED_IN_A_ROW_LIMIT:
                raise
            reason = f"the hot store refused the micro-batch: {exc}"
        else:
            self._refused_in_a_row = 0
            return commit
        logger.error(
            "stream {}: {}; its {} frame(s) are dead-lettered (dataset=stream) and the stream goes on",
            self.name,
            reason,
            len(frames),
        )
        self.report.refused_batches += 1
        self.report.dead += len(frames)
        if frames:
            letters = [DeadFrame(f, reason, ns) for f, ns in zip(frames, received_ns, strict=True)]
            await self._db(self._dead_letters, letters)
        return StreamCommit()

    async def _commit(self, *, filled: Sequence[tuple[str, Gap]] = (), **parts: pd.DataFrame | None) -> StreamCommit:
        """Commit ``parts``, with the rows of the spans known since the last commit (ops.stream_gaps)
        and ``filled``: the (span id, gap) its data fills, set applied in the same transaction."""
        from storage.stream_gaps import GapChanges
        from storage.streams import commit_stream_batch

        until = marks_until(gap for span in self._open for gap in span.gaps)
        opened = tuple(self._unrecorded)  # the reader's spill may add more while this commit runs
        changes = GapChanges(opened, tuple((span_id, g.symbol, g.dataset) for span_id, g in filled))
        commit = await self._db(
            commit_stream_batch,
            precedence=self.settings.storage.source_precedence,
            marks_until=until,
            gaps=changes,
            **parts,
        )
        del self._unrecorded[: len(opened)]
        self.report.final_bars += commit.final_bars.changed
        self.report.provisional_bars += commit.provisional_bars.changed
        return commit

    # -- hybrid: what was missed, recorded when it happens, caught up in the background ----------
    @property
    def _protocol(self) -> StreamProtocol:
        from sources.stream import protocol_for

        skew_s = self.settings.streaming.max_event_skew_seconds  # as the connection's (sources.stream)
        return protocol_for(self.plan.source, self.plan.datasets).bounded(skew_s)

    async def _enqueue(self, batch: StreamBatch) -> None:
        """Queue ``batch`` behind what came before it, by receive time: a (re)connect or a spill it
        crosses (a frame read at or after the connect, or after the spill's first frame) becomes a
        catch-up between the frames read before and after it. The parser yields frames in the order
        read, and a spill takes the oldest frames buffered: every frame it yields after ``batch``
        was read after the frames of the spills so far, which are queued behind ``batch`` now (a
        catch-up of data read later is never ordered before data read earlier: its commit would
        move the watermarks past it)."""
        while (at_ns := self._next_mark()) is not None and delivered(batch, at_ns):
            before, batch = split_at(batch, at_ns, self._protocol.parse_frames)
            if before is not None:
                self._hold(before)
            await self._place_mark()
        self._hold(batch)
        await self._place_spills()

    def _next_mark(self) -> int | None:
        """When the oldest connect or spill not placed yet happened (wall ns)."""
        marks = [*self._connects[:1], *(spill.received_ns for spill in self._spills[:1])]
        return min(marks) if marks else None

    async def _place_mark(self) -> None:
        """Queue the oldest connect or spill not placed yet."""
        if self._spills and (not self._connects or self._spills[0].received_ns < self._connects[0]):
            spill = self._spills.pop(0)
            self._queue_catch_up(spill.catch_up)
            if spill.resume is not None:  # a connect before it resumed in the spilled frames
                self._resume(spill.resume)
            return
        self._connects.pop(0)
        catch_up = await self._connect_catch_up()
        self._queue_catch_up(catch_up)
        self._unresumed.append(catch_up)

    async def _place_spills(self) -> None:
        """Queue every spill not placed yet, and the connects before them, in the order they happened."""
        for _ in range(len(self._spills) + len(self._connects)):
            if not self._spills:
                return
            await self._place_mark()

    async def _connect_catch_up(self) -> CatchUp:
        """A (re)connect's catch-up, from the newest trade and minute bars delivered before it (the
        watermarks at the start for what nothing was delivered of yet); its end comes later."""
        marks = await self._watermarks_at_start()
        trades_from = dict(marks.get("trades", {}))
        if self._delivered_trade is not None:  # every symbol's trades up to it were delivered
            trades_from = dict.fromkeys(self.plan.symbols, self._delivered_trade)
        bars_from = {**marks.get("bars", {}), **self._delivered_bars}
        return CatchUp("connect", trades_from, bars_from)

    async def _watermarks_at_start(self) -> dict[str, dict[str, pd.Timestamp]]:
        """The committed trades and bars watermarks, read once at the start (at the latest at the
        first connect): nothing of this run is committed before, and later catch-ups start from what
        was delivered."""
        from storage.watermarks import read_watermarks

        if self._start_marks is None:
            marks: dict[str, dict[str, pd.Timestamp]] = {}
            for dataset in ("trades", "bars"):
                if dataset in self.plan.datasets:
                    got = await self._db(
                        read_watermarks, source=self.plan.source, dataset=dataset, symbols=list(self.plan.symbols)
                    )
                    marks[dataset] = {
                        k[2]: pd.Timestamp(m.high_water_ts) for k, m in got.items() if k[3] in ("", "1min")
                    }
            self._start_marks = marks
        return self._start_marks

    def _hold(self, batch: StreamBatch) -> None:
        """Queue a micro-batch read wholly after every catch-up queued before it: it names where a
        connect's catch-up ends (the first event the new connection delivered)."""
        resume = resume_point(batch, self.plan.datasets)
        if resume is not None:
            self._resume(resume)
        if not batch.trades.empty:
            newest = pd.Timestamp(batch.trades["ts"].max())
            if self._delivered_trade is None or newest > self._delivered_trade:
                self._delivered_trade = newest
        for symbol, ts in newest_bars(batch).items():
            if ts > self._delivered_bars.get(symbol, _EPOCH):
                self._delivered_bars[symbol] = ts
        self._queue.append(batch)
        self.report.held_rows += batch.rows
        if self._catch_ups:  # it waits behind one
            self.report.held_rows_peak = max(self.report.held_rows_peak, self.report.held_rows)

    def _resume(self, resume: pd.Timestamp) -> None:
        """The connects queued before an event read after them end at it (``resume``): fetched now."""
        for catch_up in self._unresumed:
            self._start_fetch(catch_up, self._connect_gaps(catch_up, resume))
        self._unresumed.clear()

    def _connect_gaps(self, catch_up: CatchUp, resume: pd.Timestamp) -> list[Gap]:
        streaming = self.settings.streaming
        return connect_gaps(
            self.plan.symbols,
            self.plan.datasets,
            catch_up.trades_from,
            catch_up.bars_from,
            resume,
            lateness=pd.Timedelta(seconds=streaming.lateness_seconds),
            widths=(streaming.window_seconds, 60.0),
        )

    async def _spill(self, frames: list[bytes], received_ns: list[int]) -> None:
        """The reader's spill in hybrid mode: the span of each symbol's trades and bars in the frames
        becomes a catch-up, fetched now and queued by receive time (:meth:`_enqueue`): behind every
        micro-batch read before the frames (the one the consumer holds, the one the parser builds)
        and ahead of those read after; the frames go to the lake's raw zone as without hybrid mode."""
        spilled = self._protocol.parse_frames(frames, received_ns)
        gaps = spilled_gaps(spilled, self.plan.datasets)
        catch_up = CatchUp("spill")
        self._start_fetch(catch_up, gaps)
        self._spills.append(SpilledSpan(received_ns[0], catch_up, resume_point(spilled, self.plan.datasets)))
        logger.warning(
            "stream {}: {} spilled frame(s) are caught up over REST ({} span(s))", self.name, len(frames), len(gaps)
        )
        await asyncio.to_thread(self.spill_frames, frames)

    def _queue_catch_up(self, catch_up: CatchUp) -> None:
        self._queue.append(catch_up)
        self._catch_ups += 1

    def _start_fetch(self, catch_up: CatchUp, gaps: list[Gap]) -> None:
        catch_up.gaps = gaps
        self._record(catch_up.span_id, gaps)
        catch_up.fetch = asyncio.ensure_future(self._fetch_gaps(gaps))
        catch_up.fetch.add_done_callback(self._fetched)

    def _fetched(self, fetch: asyncio.Future[Any]) -> None:
        """A fetch ended: what waited behind it goes on now, not at the next micro-batch (a quiet
        stream may send none for a while)."""
        if fetch.cancelled() or self._closing:  # closing: the closing code stores the queue
            return
        follower = asyncio.ensure_future(self._advance_in_order())
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)

    async def _advance_in_order(self) -> None:
        try:
            async with self._order:
                if not self._closing:
                    await self._advance()
        except Exception as exc:  # raised by the consumer at its next micro-batch, or at the end
            self._failure = self._failure or exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _advance(self, *, release: bool = False, give_up: CatchUp | None = None) -> None:
        """Apply the queue in order up to the first catch-up whose fetch has not ended (``release``:
        all of it; ``give_up``: past that one; a catch-up not ended left open). A catch-up whose
        fetch failed is left open (:meth:`_leave_open`) and what follows it is applied; its error
        ends the stream."""
        while self._queue:
            head = self._queue[0]
            if isinstance(head, CatchUp):
                fetch = head.fetch
                ended = fetch is not None and fetch.done() and not fetch.cancelled()
                if not ended and not release and head is not give_up:
                    return
                error = fetch.exception() if ended and fetch is not None else None
                if ended and fetch is not None and error is None:
                    await self._apply(head, fetch.result())
                else:
                    self._leave_open(head, error)
                self._catch_ups -= 1
                self._queue.popleft()
                continue
            run = self._batches_at_head()
            batch = join_batches(run)
            await self._process(batch, self._windows, self._stream)
            self.report.held_rows -= batch.rows
            for _ in run:
                self._queue.popleft()

    def _batches_at_head(self) -> list[StreamBatch]:
        """The micro-batches at the head of the queue, up to the next catch-up and together at most
        ``streaming.batch_max_rows`` rows (at least one)."""
        limit = self.settings.streaming.batch_max_rows
        run: list[StreamBatch] = []
        rows = 0
        for item in self._queue:
            if isinstance(item, CatchUp) or (run and rows + item.rows > limit):
                break
            run.append(item)
            rows += item.rows
        return run

    def _held(self) -> int:
        """Rows in memory for want of a catch-up: the micro-batches held behind one, and the rows of
        catch-ups fetched but waiting behind an earlier one (a start's or a spill's can be many)."""
        fetched = 0
        if self._catch_ups or self._spills:
            for item in [*self._queue, *(spill.catch_up for spill in self._spills)]:
                if isinstance(item, CatchUp) and item.fetch is not None and _fetched_rows(item.fetch):
                    fetched += sum(len(rows) for _, rows in item.fetch.result())
        return self.report.held_rows + fetched

    async def _bound_hold(self) -> None:
        """Past ``streaming.catch_up_hold_rows`` rows held (:meth:`_held`), the consumer waits for
        the oldest catch-up (a connect whose end is still unknown ends at the newest event held), at
        most ``HOLD_WAITS`` times ``CATCH_UP_WAIT_S``; then it is left open (:meth:`_leave_open`):
        what it held is stored and the next hybrid run fetches its span, rather than memory growing
        and the consumer stalling a micro-batch at a time."""
        limit = self.settings.streaming.catch_up_hold_rows
        head: CatchUp | None = None
        for _ in range(HOLD_WAITS):
            if self._held() <= limit:
                return
            head = next((item for item in self._queue if isinstance(item, CatchUp)), None)
            if head is None:
                return
            if head.fetch is None:
                self._end_at_newest_held(head)
            assert head.fetch is not None  # a spill's is started when it is queued
            logger.warning(
                "stream {}: {} row(s) wait for a catch-up; the consumer waits for it", self.name, self._held()
            )
            await asyncio.wait({head.fetch}, timeout=CATCH_UP_WAIT_S)
            self._raise_failure()
            async with self._order:
                await self._advance()
        if head is None or head not in self._queue or self._held() <= limit:
            return
        if head.fetch is not None and not head.fetch.done():
            head.fetch.cancel()
        async with self._order:
            await self._advance(give_up=head)

    def _end_at_newest_held(self, catch_up: CatchUp) -> None:
        """A connect's catch-up whose new connection delivered no trade (bar, in a plan without
        trades) yet ends at the newest event held behind it; with nothing behind it, it fetches
        nothing (the watermarks stay before it: the next hybrid run fetches it)."""
        behind = list(self._queue)[self._queue.index(catch_up) + 1 :]
        times = [
            rows["ts"].max()
            for item in behind
            if not isinstance(item, CatchUp)
            for rows in (item.trades, item.quotes, item.bars)
            if not rows.empty
        ]
        end = pd.Timestamp(max(times)) + pd.Timedelta(1, "ns") if times else None
        self._unresumed.remove(catch_up)
        self._start_fetch(catch_up, self._connect_gaps(catch_up, end) if end is not None else [])

    async def _settle(self) -> None:
        """At the end: catch-ups still in flight are waited for (up to ``CATCH_UP_WAIT_S``), then
        the queue is stored (:meth:`_release`): one not ended by then is left open, what waited
        behind it is stored all the same."""
        await self._place_spills()  # everything read is queued: the spills go behind it
        self._connects.clear()  # nothing was read after them
        for catch_up in list(self._unresumed):
            self._end_at_newest_held(catch_up)
        fetches = [item.fetch for item in self._queue if isinstance(item, CatchUp) and item.fetch is not None]
        if fetches:
            await asyncio.wait(fetches, timeout=CATCH_UP_WAIT_S)
        await self._release()
        self._raise_failure()
        failed = next((span.error for span in self._open if span.error is not None), None)
        if failed is not None:  # a span its fetch could not fill: the run says why (the next one fetches it)
            raise failed

    async def _release(self) -> None:
        """The end of the queue: no follower starts any more, fetches not ended are cancelled (they
        would store concurrently with the stream's last writes, on its connection), and everything
        queued is stored in order under the order lock, a catch-up not ended left open."""
        self._closing = True
        await self._place_spills()
        for item in self._queue:
            if isinstance(item, CatchUp) and item.fetch is not None and not item.fetch.done():
                item.fetch.cancel()
        async with self._order:
            await self._advance(release=True)

    async def _release_on_failure(self, failure: Exception) -> None:
        """The stream fails: what is queued (quotes included, which no catch-up fetches again) is
        stored before it ends, unless the database is what failed (logged, not raised: the failure
        is the cause worth reporting)."""
        if database_lost(failure) or not self._queue:
            return
        try:
            await self._release()
        except Exception as exc:
            logger.error("stream {}: {} row(s) read are not stored: {}", self.name, self.report.held_rows, exc)

    def _leave_open(self, catch_up: CatchUp, error: BaseException | None) -> None:
        """A catch-up whose fetch failed (``error``) or did not end: its span stays unfilled. What was
        read after it is stored all the same (quotes have no catch-up), its symbols' trades and bars
        watermarks moving only up to its start (:meth:`_commit`), and the windows' bars overlapping
        it stay provisional. Its span is fetched again in the background (:meth:`_retry`), unless
        the stream is ending (the next hybrid run fetches it) or ``error`` is not one a retry can
        cure (a refused key: it ends the stream, as any error it does not know)."""
        if catch_up.gaps is not None:
            gaps = catch_up.gaps
        else:  # a connect whose new connection delivered nothing yet (at the end): from before it on
            froms = [*catch_up.trades_from.values(), *catch_up.bars_from.values()]
            start, end = min(froms, default=_EPOCH), pd.Timestamp.max.tz_localize("UTC")
            datasets = [d for d in ("trades", "bars") if d in self.plan.datasets]
            gaps = [Gap(symbol, d, start, end, catch_up.cause) for symbol in self.plan.symbols for d in datasets]
            self._record(catch_up.span_id, gaps)
        self._gaps.extend((gap.start, gap.end) for gap in gaps)
        if not gaps:
            return
        span = OpenSpan(catch_up.cause, gaps, pd.Timestamp.now(tz="UTC"), error, span_id=catch_up.span_id)
        self._open.append(span)
        retried = not self._closing and catch_up.gaps is not None and _retryable(error)
        if error is not None and not _retryable(error):
            self._failure = self._failure or error
        elif retried:
            span.retry = asyncio.ensure_future(self._retry(span))
        self._report_open()
        logger.error(
            "stream {}: the catch-up of {} {}; the {} row(s) read after it are stored, the trades and bars "
            "watermarks of its symbols held before it; {}",
            self.name,
            span.describe(),
            f"failed: {error}" if error is not None else "did not end in time",
            self.report.held_rows,
            f"it is fetched again in {CATCH_UP_RETRY_S:g} s" if retried else "it is left to the next hybrid run",
        )

    async def _retry(self, span: OpenSpan, first_wait_s: float | None = None) -> None:
        """Fetch an open span again, at most ``CATCH_UP_RETRIES`` times with a doubling wait, each
        try bounded by ``HOLD_WAITS`` x ``CATCH_UP_WAIT_S`` (the first fetch's time); the first that
        succeeds is stored (:meth:`_apply_late`) and the span closed. Past the last, it is left to
        the next hybrid run (its rows in ops.stream_gaps given up: the next hybrid run loads them). An
        error a retry cannot cure ends the stream (raised by the consumer, like a follower's). A
        span a killed run left (:meth:`_load_unfilled`) is fetched at once, once the stream's clock
        is known (:meth:`_fetch_clock`: the bars of its windows are then final)."""
        from storage.stream_gaps import record_gap_retry

        widths = (self.settings.streaming.window_seconds, 60.0)
        gaps = [whole_windows(gap, widths) for gap in span.gaps]
        wait, bound_s = CATCH_UP_RETRY_S if first_wait_s is None else first_wait_s, HOLD_WAITS * CATCH_UP_WAIT_S
        try:
            for _ in range(CATCH_UP_RETRIES):
                await asyncio.sleep(wait)
                wait = min(max(wait, CATCH_UP_RETRY_S / 2) * 2, CATCH_UP_RETRY_MAX_S)
                clock = await self._fetch_clock()  # the windows the vendor closed before the fetch
                try:
                    async with asyncio.timeout(bound_s):
                        fetched = await self._fetch_gaps(gaps)
                except Exception as exc:
                    if not _retryable(exc):
                        raise
                    span.error = exc if not isinstance(exc, TimeoutError) else span.error
                    span.retries += 1
                    self._report_open()
                    error = str(span.error) if span.error is not None else None
                    await self._db(record_gap_retry, span.span_id, retries=span.retries, error=error, state="open")
                    logger.warning(
                        "stream {}: fetching {} again failed ({} of {} tries): {}",
                        self.name,
                        span.describe(),
                        span.retries,
                        CATCH_UP_RETRIES,
                        exc if not isinstance(exc, TimeoutError) else f"no answer in {bound_s:g} s",
                    )
                    continue
                async with self._order:
                    if self._closing:  # the closing code stores the queue; the span is the next run's
                        return
                    await self._apply_late(span, gaps, fetched, clock)
                return
            error = str(span.error) if span.error is not None else None
            await self._db(record_gap_retry, span.span_id, retries=span.retries, error=error, state="given_up")
            logger.error(
                "stream {}: {} could not be fetched in {} tries; it is left to the next hybrid run (the trades "
                "and bars watermarks of its symbols stay before it until then)",
                self.name,
                span.describe(),
                CATCH_UP_RETRIES,
            )
        except Exception as exc:  # raised by the consumer at its next micro-batch, or at the end
            self._failure = self._failure or exc

    async def _apply_late(
        self, span: OpenSpan, gaps: list[Gap], fetched: list[tuple[Gap, pd.DataFrame]], clock: pd.Timestamp | None
    ) -> None:
        """An open span fetched again, stored in one commit: its REST trades, the bars of the whole
        windows they cover, built afresh from them alone (the live windows closed those windows
        without them; the windows still open, or not wholly in ``gaps``, keep their provisional
        bars), and its vendor minute bars. The span closes with the commit: the watermarks it held
        move on with the next micro-batch."""
        streaming = self.settings.streaming
        trades = [rows for gap, rows in fetched if gap.dataset == "trades" and not rows.empty]
        bars = [rows for gap, rows in fetched if gap.dataset == "bars" and not rows.empty]
        got_trades = pd.concat(trades, ignore_index=True) if trades else empty_frame(TRADES)
        built = empty_frame(BARS)
        if not got_trades.empty:
            from streaming.windows import BarWindows

            windows = BarWindows(streaming.window_seconds, streaming.lateness_seconds, source=self.plan.source)
            windows.add_trades(got_trades)
            closed_by = clock - pd.Timedelta(seconds=streaming.lateness_seconds) if clock is not None else None
            built = bars_within(windows.flush().final, gaps, closed_by)
            if "bars" in self.plan.datasets:  # the vendor's minute bars are the minute bars
                built = built[built["timeframe"] != "1min"]
        parts = [f for f in (built, *bars) if not f.empty]
        final = pd.concat(parts, ignore_index=True) if parts else None
        self._open.remove(span)  # its own commit is not held by it
        self._report_open()
        self.report.catchups += 1
        self.report.catchup_trades += len(got_trades)
        self.report.reopened_spans += 1
        logger.info(
            "stream {}: fetched {} again: {} trade(s), {} bar(s) stored",
            self.name,
            span.describe(),
            len(got_trades),
            0 if final is None else len(final),
        )
        what = {"catch_up": [gap.describe() for gap in gaps]}
        try:
            filled = [(span.span_id, gap) for gap in span.gaps]
            await self._store(
                [orjson.dumps(what)], [time.time_ns()], filled=filled, trades=got_trades, final_bars=final
            )
        except BaseException:
            self._open.append(span)
            self.report.reopened_spans -= 1
            self._report_open()
            raise

    async def _fetch_clock(self) -> pd.Timestamp:
        """The vendor's clock before a span is fetched again: its newest event. A span a killed run
        left is loaded before any event came; while none comes for ``streaming.data_idle_timeout_seconds``
        (the market closed, the symbols quiet) the wall clock stands in, a live vendor's clock (the
        span ended in an earlier run), so a restart after the close fills it that night, not at the
        next session's first trade."""
        if not self._first_event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.streaming.data_idle_timeout_seconds):
                    await self._first_event.wait()
        newest = self.report.newest_event
        if newest is None:
            logger.info("stream {}: no event yet: a span left open is fetched by the wall clock", self.name)
            return pd.Timestamp.now(tz="UTC")
        return newest

    def _report_open(self) -> None:
        """The open spans in the status counters: how many, the earliest, its retries and error."""
        report = self.report
        report.open_spans = len(self._open)
        first = min(self._open, key=lambda span: min(gap.start for gap in span.gaps), default=None)
        report.open_span = first.describe() if first is not None else None
        report.open_span_since = first.since if first is not None else None
        report.open_span_retries = first.retries if first is not None else 0
        report.open_span_error = str(first.error) if first is not None and first.error is not None else None

    def _cancel_catch_ups(self) -> None:
        self._closing = True
        for item in [*self._queue, *(spill.catch_up for spill in self._spills)]:
            if isinstance(item, CatchUp) and item.fetch is not None:
                item.fetch.cancel()
        for follower in list(self._followers):
            follower.cancel()
        for span in self._open:
            if span.retry is not None:
                span.retry.cancel()

    async def _apply(self, catch_up: CatchUp, fetched: list[tuple[Gap, pd.DataFrame]]) -> None:
        """A catch-up's REST rows through the windows (before the micro-batches read after its span)
        and the writer: its span is closed once they are committed."""
        gaps = catch_up.gaps or []
        if not gaps:
            return
        trades = [rows for gap, rows in fetched if gap.dataset == "trades" and not rows.empty]
        bars = [rows for gap, rows in fetched if gap.dataset == "bars" and not rows.empty]
        got_trades = pd.concat(trades, ignore_index=True) if trades else empty_frame(TRADES)
        got_bars = pd.concat(bars, ignore_index=True) if bars else empty_frame(BARS)
        self.report.catchups += 1
        self.report.catchup_trades += len(got_trades)
        logger.info(
            "stream {}: caught up {} trade(s) and {} minute bar(s) over REST ({} after a {}, {} .. {})",
            self.name,
            len(got_trades),
            len(got_bars),
            len(gaps),
            catch_up.cause,
            min(g.start for g in gaps),
            max(g.end for g in gaps),
        )
        if not got_trades.empty:
            self._windows.add_trades(got_trades)
        final, _ = self._bars_to_write(None, got_bars)
        # Refused, the catch-up's dead letter says what to fetch again (REST rows have no frames).
        what = {"catch_up": [gap.describe() for gap in gaps]}
        filled = [(catch_up.span_id, gap) for gap in gaps]
        await self._store([orjson.dumps(what)], [time.time_ns()], filled=filled, trades=got_trades, final_bars=final)

    def _record(self, span_id: str, gaps: Sequence[Gap]) -> None:
        """A span's gaps, known now: their rows go into ops.stream_gaps with the next commit."""
        from storage.stream_gaps import StreamGap

        self._unrecorded.extend(
            StreamGap(
                span_id,
                self.name,
                self.plan.source,
                g.symbol,
                g.dataset,
                g.start.to_pydatetime(),
                g.end.to_pydatetime(),
                g.cause,
            )
            for g in gaps
        )

    async def _load_unfilled(self) -> None:
        """The spans a previous run of this stream left unfilled for these symbols (killed while
        one was open or its catch-up in flight, or its retries spent), from ops.stream_gaps: open
        spans again, holding the watermarks before them, each fetched at once in the background
        (:meth:`_retry`, bounded as a left-open span's retries) and applied with its data."""
        from storage.stream_gaps import prune_applied_gaps, read_unfilled_gaps

        await self._db(prune_applied_gaps)
        rows = await self._db(read_unfilled_gaps, stream=self.name, symbols=list(self.plan.symbols))
        spans: dict[str, list[Any]] = {}
        for row in rows:
            if row.dataset in self.plan.datasets:
                spans.setdefault(row.span_id, []).append(row)
        for span_id, span_rows in spans.items():
            gaps = [
                Gap(r.symbol, r.dataset, pd.Timestamp(r.span_start), pd.Timestamp(r.span_end), r.cause)
                for r in span_rows
            ]
            first = span_rows[0]  # its error was the previous run's: this run's retries say their own
            span = OpenSpan(first.cause, gaps, pd.Timestamp(first.recorded_at), None, first.retries, span_id=span_id)
            self._open.append(span)
            span.retry = asyncio.ensure_future(self._retry(span, first_wait_s=0.0))
            logger.warning(
                "stream {}: a previous run left {} unfilled; it is fetched first", self.name, span.describe()
            )
        self._report_open()

    def _rest_source(self) -> Any:
        """The REST source a catch-up fetches with (the seam tests answer)."""
        from sources.factory import build_source

        return build_source(
            self.plan.source, self.settings, resilience=self._resilience, options=self.plan.rest_options()
        )

    async def _fetch_gaps(self, gaps: Sequence[Gap]) -> list[tuple[Gap, pd.DataFrame]]:
        """Each gap's rows over REST, ``streaming.catch_up_parallel_symbols`` requests at a time
        (shared by every catch-up in flight)."""
        if not gaps:
            return []
        if self._fetch_slots is None:
            self._fetch_slots = asyncio.Semaphore(self.settings.streaming.catch_up_parallel_symbols)
        slots = self._fetch_slots
        source = self._rest_source()

        async def fetch(gap: Gap) -> tuple[Gap, pd.DataFrame]:
            async with slots:
                return gap, await _fetch_gap(self.plan.source, source, gap)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(fetch(gap)) for gap in gaps]
        except ExceptionGroup as errors:  # the first request's error (a SourceError), as the stream knows it
            if len(errors.exceptions) == 1:
                raise errors.exceptions[0] from None
            raise errors.exceptions[0] from errors
        finally:
            await source.aclose()
        return [task.result() for task in tasks]

    # -- the edges: spill and dead letters ---------------------------------------------------
    def spill_frames(self, frames: Sequence[bytes], received_ns: Sequence[int] = ()) -> None:
        """Frames the consumer could not keep up with: into the lake's raw zone, replayable (one
        gzip object of newline-separated frames under raw/source=<vendor>/dataset=stream/; when
        each was read is not kept)."""
        import gzip

        from storage.lake import Lake
        from storage.raw import GZIP_LEVEL

        lake = Lake.from_settings(self.settings.lake)
        now = pd.Timestamp.now(tz="UTC")
        key = f"raw/source={self.plan.source}/dataset=stream/date={now:%Y-%m-%d}/{now.value}.jsonl.gz"
        lake.put_bytes(key, gzip.compress(b"\n".join(frames), GZIP_LEVEL), "application/gzip")
        logger.warning("stream {}: spilled {} frame(s) to {}", self.plan.source, len(frames), key)

    def _dead_letters(self, conn: Any, dead: Collection[Any]) -> None:
        from sources.dead_letters import record_dead_letter_sync

        for letter in dead:
            record_dead_letter_sync(
                conn,
                source=self.plan.source,
                dataset="stream",
                # one letter per frame: the receive instant tells two bad frames apart
                request={
                    "stream": self.plan.source,
                    "feed": self.plan.feed,
                    "received_ns": int(getattr(letter, "received_ns", 0) or time.time_ns()),
                },
                error=str(getattr(letter, "reason", "malformed frame")),
                payload=_text(getattr(letter, "raw", letter)),
            )


async def _fetch_gap(vendor: str, source: Any, gap: Gap) -> pd.DataFrame:
    """One gap's trades, or the vendor's raw minute bars, over REST."""
    if gap.dataset == "trades":
        got = await source.client.trades(gap.symbol, gap.start, gap.end)
        if vendor == "polygon":
            # Polygon's WebSocket stamps trades in milliseconds, its REST API in nanoseconds: trades
            # caught up over REST are stored at the stream's resolution, so a trade has ONE key
            # whichever path delivered it (no duplicate at the join).
            from sources.polygon.stream import align_to_stream

            got = align_to_stream(got)
    else:
        got = await _raw_minute_bars(vendor, source, gap.symbol, gap.start, gap.end)
    return got[(got["ts"] >= gap.start) & (got["ts"] < gap.end)].reset_index(drop=True)


async def _raw_minute_bars(
    vendor: str, source: Any, symbol: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """The vendor's REST minute bars as traded (unadjusted), like its stream's and the batch path's."""
    if vendor == "polygon":
        return await source.client.aggregates(symbol, start, end, timeframe="1min", adjusted=False)
    return await source.client.bars(symbol, start, end, timeframe="1min", adjustment="raw")


def _retryable(error: BaseException | None) -> bool:
    """Whether a catch-up's fetch that ended with ``error`` (None: it did not end in time) may be
    tried again: a transient vendor failure or a timeout, not a refused key or a bug."""
    return error is None or isinstance(error, TimeoutError) or bool(getattr(error, "retryable", False))


def _fetched_rows(fetch: asyncio.Task[Any] | None) -> bool:
    """Whether ``fetch`` ended with rows to apply (not cancelled, not failed)."""
    return fetch is not None and fetch.done() and not fetch.cancelled() and fetch.exception() is None


def overlaps_gaps(bars: pd.DataFrame, gaps: Sequence[tuple[pd.Timestamp, pd.Timestamp]]) -> pd.Series:
    """Which ``bars`` (stamped at their window's start, ``timeframe`` its width) overlap one of the
    event-time ``gaps`` (start, end) a stream missed: their window holds trades it never saw."""
    starts = bars["ts"]
    ends = starts + pd.to_timedelta(bars["timeframe"].astype(str))
    hit = pd.Series(False, index=bars.index)
    for first, last in gaps:
        hit |= (starts < last) & (ends > first)
    return hit


def _drop_minutes(bars: pd.DataFrame | None) -> pd.DataFrame | None:
    if bars is None or bars.empty:
        return bars
    return bars[bars["timeframe"] != "1min"]


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool | type(None)) else str(v) for k, v in values.items()}


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)


def _newest(batch: StreamBatch) -> pd.Timestamp | None:
    times = [f["ts"].max() for f in (batch.trades, batch.quotes) if not f.empty]
    return max(times) if times else None


def _stats_dict(stream: Any) -> dict[str, Any]:
    stats = stream.stats()
    return dict(stats.__dict__) if hasattr(stats, "__dict__") else dict(stats)
