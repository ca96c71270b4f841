"""The vendor side of a live stream: one WebSocket per vendor and key, read into a bounded buffer and
parsed into columnar micro-batches (issue 14). Vendor-neutral; the wire format of each vendor is a
:class:`StreamProtocol` of pure functions in ``sources/<vendor>/stream.py``; the batch types and the
columnar helpers they share are :mod:`sources.stream_parsing` (its public names are re-exported here).

Data flow, and why it is split this way:

1. **Reader** (one task per connection): receives frames and only appends them, with their wall-clock
   receive time, to a :class:`FrameBuffer` of at most ``streaming.buffer_size`` frames and
   ``streaming.buffer_bytes`` bytes (a frame may be up to 16 MiB). A slow parser or
   writer never stalls the socket: vendors delay, then disconnect a slow consumer (Polygon's
   server-side buffer, Alpaca 407).
2. **Backpressure policy** (explicit): when the buffer is full the reader stops reading; websockets
   then stops reading the socket (its own queue is small) and TCP pushes back on the vendor. If the
   reader stays blocked past ``streaming.lag_limit_seconds``, the oldest half of the buffer is handed
   to the ``spill`` callback (the service writes it to the lake's raw zone, replayable) and reading
   resumes. Without a spill callback, or when the spill fails, those frames are dropped. Every spilled
   or dropped frame is counted in :class:`StreamStats`. (A blocked reader reads no pongs either, so
   the lag limit must stay below the ping timeout.)
3. **Parser** (:meth:`StreamConnection.batches`): takes frames from the buffer, one ``orjson.loads``
   per frame, and builds one :class:`StreamBatch` of pandas frames in the ``core.model`` layouts per
   ``max_rows`` messages or ``max_delay_s``, whichever comes first. Column building runs in a worker
   thread for large batches so the reader keeps reading.

The connection authenticates, (re)subscribes after every connect, reconnects without limit with
jittered exponential backoff (:class:`ReconnectPolicy`; the attempt counter resets after a healthy
period), pauses long after the vendor's connection limit (Alpaca 406, Polygon ``max_connections``),
detects dead peers by ping timeout and silent sockets by a separate data-idle timeout, and fails
once, clearly, on a rejected key or on what the key's plan refuses (Alpaca 409 insufficient
subscription at auth, 405 symbol limit after a subscribe: kind ``plan_limit``). Given its REST
source's circuit breaker (``open_stream(..., breaker=)``) it shares it: failed connects count as
the vendor's failures, an authenticated connection closes the breaker, and an open breaker delays
the next connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from loguru import logger

from core import model
from core.errors import ConfigurationError, PermanentSourceError, RequestError, RetryableSourceError
from sources.stream_parsing import (
    CANCELS,
    CORRECTIONS,
    DATASETS,
    NEWS_DATASETS,
    DeadFrame,
    Decoded,
    StreamBatch,
    StreamEvent,
    StreamProtocol,
    check_datasets,
    concat_decoded,
    decode_frames,
)

if TYPE_CHECKING:
    from core.settings import Settings, StreamingSettings
    from sources.resilience import CircuitBreaker


# ---------------------------------------------------------------------------------------------
# Counters

# A micro-batch more than this share of whose messages were stamped in the future is no vendor's bad
# print but a clock (StreamStats.future_heavy_ns).
FUTURE_HEAVY_SHARE = 0.5


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of a connection's counters, for health and heartbeats. Frames are WebSocket
    messages (each a JSON array of vendor messages); ``messages`` counts vendor messages parsed."""

    source: str
    connected: bool
    received: int  # frames read from the socket
    parsed: int  # frames parsed
    messages: int  # vendor messages in parsed frames
    spilled: int  # frames handed to the spill past the lag limit
    dropped: int  # frames lost (no spill, or the spill failed)
    malformed: int  # dead letters: dead frames, dead messages, future-stamped rows
    future_events: int  # rows stamped in the future (streaming.max_event_skew_seconds), exact; dead-lettered
    # one by one, or past FUTURE_LETTERS_PER_BATCH of a batch in one letter
    # The newest micro-batch more than half of whose messages were stamped in the future (a host
    # clock behind the vendor's: pipeline.health.stream_issues names it): when (wall ns), its share.
    future_heavy_ns: int | None
    future_heavy_share: float | None
    connects: int
    reconnects: int  # connects after the first
    idle_timeouts: int  # reconnects because the socket went silent
    connection_limits: int  # 406 / max_connections met
    buffered: int  # frames waiting for the parser now
    buffer_size: int
    buffered_bytes: int  # their bytes
    buffer_bytes: int
    last_connected_ns: int | None
    last_frame_ns: int | None
    last_error: str | None


@dataclass
class _Counters:
    received: int = 0
    parsed: int = 0
    messages: int = 0
    spilled: int = 0
    dropped: int = 0
    malformed: int = 0
    future_events: int = 0
    future_heavy_ns: int | None = None
    future_heavy_share: float | None = None
    connects: int = 0
    idle_timeouts: int = 0
    connection_limits: int = 0
    last_connected_ns: int | None = None
    last_frame_ns: int | None = None
    last_error: str | None = None


# ---------------------------------------------------------------------------------------------
# The bounded buffer and its backpressure policy

# Called with the spilled frames, oldest first, and when each was read (wall ns): a coroutine
# function is awaited, a plain function runs in a worker thread (it may block on storage).
Spill = Callable[[list[bytes], list[int]], "Awaitable[None] | None"]


class FrameBuffer:
    """Frames read ahead of the parser, at most ``capacity`` frames and ``capacity_bytes`` bytes (a
    frame larger than that alone is still taken into an empty buffer). :meth:`put` waits while full
    (so the reader stops reading); past ``lag_limit_s`` of waiting it takes the oldest half out (by
    count, and by bytes: down to half of ``capacity_bytes``) and hands it to ``spill`` (counted
    spilled; dropped when there is no spill or it raises) and returns."""

    def __init__(
        self,
        capacity: int,
        *,
        lag_limit_s: float,
        capacity_bytes: int | None = None,
        spill: Spill | None = None,
        counters: _Counters | None = None,
        source: str = "stream",
    ) -> None:
        if capacity < 1:
            raise ConfigurationError(f"streaming.buffer_size must be >= 1, got {capacity}")
        if capacity_bytes is not None and capacity_bytes < 1:
            raise ConfigurationError(f"streaming.buffer_bytes must be >= 1, got {capacity_bytes}")
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes if capacity_bytes is not None else 2**62
        self.size_bytes = 0  # of the frames buffered now
        self.lag_limit_s = lag_limit_s
        self.spill = spill
        self.counters = counters or _Counters()
        self.source = source
        self._frames: deque[bytes] = deque()
        self._received: deque[int] = deque()
        self._room = asyncio.Event()
        self._data = asyncio.Event()
        self._closed = False
        self._draining = False  # closing: the last frames read are kept past the capacity
        self.blocked = False  # the reader waits for room (the idle watchdog ignores that time)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        return self._closed

    def _full(self, incoming_bytes: int) -> bool:
        """No room for a frame of ``incoming_bytes``: the frame count, or the bytes, would pass the bound."""
        return len(self._frames) >= self.capacity or (
            bool(self._frames) and self.size_bytes + incoming_bytes > self.capacity_bytes
        )

    async def put(self, frame: bytes, received_ns: int) -> None:
        while self._full(len(frame)) and not self._closed and not self._draining:
            self._room.clear()
            self.blocked = True
            try:
                async with asyncio.timeout(self.lag_limit_s):
                    await self._room.wait()
            except TimeoutError:
                await self._spill_oldest(len(frame))
            finally:
                self.blocked = False
        self._frames.append(frame)
        self._received.append(received_ns)
        self.size_bytes += len(frame)
        self.counters.received += 1
        self._data.set()

    async def _spill_oldest(self, incoming_bytes: int) -> None:
        if not self._full(incoming_bytes):  # the parser took frames as the lag limit passed
            return
        half = max(1, len(self._frames) // 2)
        frames: list[bytes] = []
        received: list[int] = []
        # the oldest half, more down to half the bytes, and more while the frame waiting to come in
        # would not fit (it waited a lag limit for each halving)
        while self._frames and (
            len(frames) < half
            or self.size_bytes > self.capacity_bytes // 2
            or self.size_bytes + incoming_bytes > self.capacity_bytes
        ):
            frames.append(self._frames.popleft())
            received.append(self._received.popleft())
            self.size_bytes -= len(frames[-1])
        count = len(frames)
        if self.spill is None:
            self.counters.dropped += count
            logger.error(
                "{} stream: the parser fell {} s behind; dropped the {} oldest frame(s) (no spill configured)",
                self.source,
                self.lag_limit_s,
                count,
            )
            return
        try:
            if inspect.iscoroutinefunction(self.spill):
                await self.spill(frames, received)
            else:  # a blocking spill (the lake's client) must not stall the event loop
                await asyncio.to_thread(self.spill, frames, received)
        except Exception as exc:
            self.counters.dropped += count
            logger.error("{} stream: spilling {} frame(s) failed, dropped: {!r}", self.source, count, exc)
            return
        self.counters.spilled += count
        logger.warning(
            "{} stream: the parser fell {} s behind; spilled the {} oldest frame(s)",
            self.source,
            self.lag_limit_s,
            count,
        )

    def oldest_received_ns(self) -> int | None:
        """When the oldest buffered frame was read (wall ns), or None when empty."""
        return self._received[0] if self._received else None

    def take(self, max_frames: int) -> tuple[list[bytes], list[int]]:
        """Up to ``max_frames`` frames, oldest first, without waiting."""
        n = min(max_frames, len(self._frames))
        frames = [self._frames.popleft() for _ in range(n)]
        received = [self._received.popleft() for _ in range(n)]
        self.size_bytes -= sum(len(frame) for frame in frames)
        if not self._frames:
            self._data.clear()
        if n:
            self._room.set()
        return frames, received

    async def wait_for_data(self, timeout: float | None = None) -> bool:
        """True once a frame is buffered; False on timeout, or when closed and empty."""
        if self._frames:
            return True
        if self._closed:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self._data.wait()
        except TimeoutError:
            return False
        return bool(self._frames)

    def drain(self) -> None:
        """The connection is closing: a reader blocked on a full buffer appends its last frame anyway
        (the parser drains it) rather than waiting for room or spilling."""
        self._draining = True
        self._room.set()

    def close(self) -> None:
        """No more frames: waiting readers return, the parser drains what is buffered."""
        self._closed = True
        self._data.set()
        self._room.set()


# ---------------------------------------------------------------------------------------------
# Reconnects


@dataclass
class ReconnectPolicy:
    """Unlimited reconnects: jittered exponential backoff (equal jitter: half the ceiling plus a
    random half, so no retry is immediate), reset after a connection that stayed up ``healthy_s``;
    the vendor's connection limit waits ``limit_pause_s`` instead."""

    base_s: float = 0.5
    max_s: float = 30.0
    healthy_s: float = 60.0
    limit_pause_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    @classmethod
    def from_settings(cls, streaming: StreamingSettings, rng: random.Random | None = None) -> ReconnectPolicy:
        return cls(
            base_s=streaming.reconnect_base_seconds,
            max_s=streaming.reconnect_max_seconds,
            healthy_s=streaming.healthy_seconds,
            limit_pause_s=streaming.connection_limit_pause_seconds,
            rng=rng or random.Random(),
        )

    def delay_s(self, *, connected_for_s: float | None = None, connection_limit: bool = False) -> float:
        """The wait before the next attempt, after a failed attempt (``connected_for_s`` None) or a
        connection that lasted ``connected_for_s``."""
        if connected_for_s is not None and connected_for_s >= self.healthy_s:
            self.attempt = 0
        if connection_limit:
            return self.limit_pause_s
        ceiling = min(self.max_s, self.base_s * 2**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)


class _Refused(Exception):
    """The vendor refused this connection for now (connection limit)."""

    def __init__(self, event: StreamEvent) -> None:
        super().__init__(event.message)
        self.event = event


# ---------------------------------------------------------------------------------------------
# The connection


@dataclass(frozen=True)
class Connected:
    """Passed to ``on_connected`` at every (re)connect, once authenticated and resubscribed."""

    at_ns: int  # wall clock, UTC ns
    number: int  # 1 for the first connection


Connect = Callable[..., Any]  # websockets.asyncio.client.connect, or a test double with its signature


class StreamConnection:
    """One vendor connection (one key), shared by every symbol. Subscriptions may change while
    connected; they are replayed after every reconnect. See the module docstring for the policies.

    ``on_connected`` (settable attribute) is called with a :class:`Connected` at every (re)connect;
    it must not block (a coroutine it returns is scheduled as a task)."""

    def __init__(
        self,
        protocol: StreamProtocol,
        url: str,
        *,
        api_key: str,
        secret_key: str | None = None,
        streaming: StreamingSettings,
        spill: Spill | None = None,
        breaker: CircuitBreaker | None = None,
        connect: Connect | None = None,
        rng: random.Random | None = None,
    ) -> None:
        # Rows stamped past their receive time plus the allowed skew are dead (refuse_future).
        self.protocol = protocol.bounded(streaming.max_event_skew_seconds)
        self.source = protocol.source
        self.url = url
        self._api_key = api_key
        self._secret_key = secret_key
        self.settings = streaming
        self.breaker = breaker
        self._connect = connect
        self.policy = ReconnectPolicy.from_settings(streaming, rng)
        self._counters = _Counters()
        self.buffer = FrameBuffer(
            streaming.buffer_size,
            capacity_bytes=streaming.buffer_bytes,
            lag_limit_s=streaming.lag_limit_seconds,
            spill=spill,
            counters=self._counters,
            source=self.source,
        )
        self.on_connected: Callable[[Connected], Any] | None = None
        self._wanted: dict[str, set[str]] = {}
        self._ws: Any = None
        self._opening: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._error: BaseException | None = None
        self._hook_tasks: set[asyncio.Task[Any]] = set()
        self._last_activity = time.monotonic()  # the last frame read, or the reader still blocked
        self._went_idle = False

    def __repr__(self) -> str:
        return f"StreamConnection(source={self.source!r}, url={_redact(self.url)!r})"

    # -- subscriptions ---------------------------------------------------------------------
    async def subscribe(self, datasets: Collection[str], symbols: Collection[str]) -> None:
        """Add ``datasets`` x ``symbols`` (``*`` = every symbol); sent now when connected, and
        after every reconnect."""
        wanted, names = check_datasets(self.source, datasets, self.protocol.datasets), _symbols(self.source, symbols)
        for dataset in wanted:
            self._wanted.setdefault(dataset, set()).update(names)
        await self._send_if_open("subscribe", wanted, names)

    async def unsubscribe(self, datasets: Collection[str], symbols: Collection[str]) -> None:
        wanted, names = check_datasets(self.source, datasets, self.protocol.datasets), _symbols(self.source, symbols)
        for dataset in wanted:
            self._wanted.get(dataset, set()).difference_update(names)
        await self._send_if_open("unsubscribe", wanted, names)

    @property
    def subscriptions(self) -> dict[str, frozenset[str]]:
        return {d: frozenset(s) for d, s in self._wanted.items() if s}

    async def _send_if_open(self, action: str, datasets: list[str], symbols: list[str]) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            for message in self.protocol.subscription_messages(action, datasets, symbols):
                await ws.send(message.decode())
        except Exception as exc:  # the connection went away; the reconnect resubscribes
            logger.info("{} stream: {} not sent ({!r}); it is sent again after the reconnect", self.source, action, exc)

    async def _resubscribe(self, ws: Any) -> None:
        by_symbols: dict[frozenset[str], list[str]] = {}
        for dataset, wanted in self._wanted.items():
            if wanted:
                by_symbols.setdefault(frozenset(wanted), []).append(dataset)
        for names, datasets in by_symbols.items():
            for message in self.protocol.subscription_messages("subscribe", datasets, sorted(names)):
                await ws.send(message.decode())

    # -- the reader ------------------------------------------------------------------------
    def start(self) -> None:
        """Start connecting and reading (``batches`` does it on first use)."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"{self.source}-stream-reader")

    async def _run(self) -> None:
        number = 0
        try:
            while not self._closing.is_set():
                if self.breaker is not None:
                    try:
                        self.breaker.before_call()
                    except RetryableSourceError as exc:
                        await self._pause(exc.retry_after_seconds or self.policy.delay_s())
                        continue
                try:
                    ws = await self._open()
                except _Refused as refused:
                    self._counters.connection_limits += 1
                    self._note_error(
                        f"{self.source} stream refused: {refused.event.message} (code {refused.event.code})"
                    )
                    if self.breaker is not None:
                        self.breaker.record_success()  # the vendor answered: no outage
                    await self._pause(self.policy.delay_s(connection_limit=True), why="connection limit")
                    continue
                except PermanentSourceError as exc:
                    if self.breaker is not None:
                        self.breaker.record_success()
                    self._note_error(str(exc))
                    self._error = exc
                    return
                except Exception as exc:
                    if self.breaker is not None:
                        self.breaker.record_failure()
                    self._note_error(f"{self.source} stream connect to {_redact(self.url)} failed: {_describe(exc)}")
                    await self._pause(self.policy.delay_s(), why="connect failed")
                    continue
                if self.breaker is not None:
                    self.breaker.record_success()
                number += 1
                started = time.monotonic()
                cause = await self._serve(ws, number)
                if self._closing.is_set():
                    break
                limit = cause is not None and cause.kind == "connection_limit"
                if limit:
                    self._counters.connection_limits += 1
                reason = cause.message if cause is not None else "closed"
                self._note_error(f"{self.source} stream disconnected: {reason}")
                delay = self.policy.delay_s(connected_for_s=time.monotonic() - started, connection_limit=limit)
                await self._pause(delay, why=reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it through batches() rather than hang
            self._error = exc
            logger.exception("{} stream reader failed", self.source)
        finally:
            self._ws = None
            self.buffer.close()

    async def _pause(self, seconds: float, *, why: str = "") -> None:
        if why:
            logger.warning("{} stream: {}; reconnecting in {:.2f} s", self.source, why, seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    def _note_error(self, text: str) -> None:
        self._counters.last_error = text

    async def _open(self) -> Any:
        """Connect, read the welcome, authenticate; raises _Refused on the connection limit and
        PermanentSourceError on a rejected key."""
        connect = self._connect or _websockets_connect()
        s = self.settings
        async with asyncio.timeout(s.open_timeout_seconds):
            ws = await connect(
                self.url,
                ping_interval=s.ping_interval_seconds,
                ping_timeout=s.ping_timeout_seconds,
                open_timeout=s.open_timeout_seconds,
                close_timeout=2,
                max_queue=16,  # small: a full buffer stops websockets reading the socket soon
                max_size=2**24,
                compression=None,  # loopback and LAN: inflating every frame costs more CPU than it saves
                additional_headers=self.protocol.extra_headers or None,
            )
        self._opening = ws  # close() during the handshake closes it too
        try:
            async with asyncio.timeout(s.open_timeout_seconds):
                await self._authenticate(ws)
        except BaseException:
            await _close_quietly(ws)
            raise
        finally:
            self._opening = None
        return ws

    async def _authenticate(self, ws: Any) -> None:
        sent = False
        while True:
            try:
                frame = await ws.recv(decode=False)
            except Exception as exc:
                close = _close_of(exc)
                if close is not None and close[0] == 1008 and sent:
                    raise self._auth_error(StreamEvent("auth_failed", close[1] or "closed 1008", 1008)) from exc
                raise
            now = time.time_ns()
            events = self.protocol.control_events(frame, now)
            for event in events:
                if event.kind == "auth_failed":
                    raise self._auth_error(event)
                if event.kind == "plan_limit":
                    raise self._plan_error(event)
                if event.kind == "connection_limit":
                    raise _Refused(event)
                if event.kind == "authenticated":
                    return
                if event.kind == "error" and sent:  # not a verdict on the key: try again later
                    raise RetryableSourceError(f"{self.source} stream answered the auth with {event.message!r}")
            if not sent:
                await ws.send(self.protocol.auth_message(self._api_key, self._secret_key).decode())
                sent = True

    def _auth_error(self, event: StreamEvent) -> PermanentSourceError:
        setting = "vendors.alpaca.api_key / secret_key" if self.source == "alpaca" else f"vendors.{self.source}.api_key"
        env = f"MARKETPIPE_VENDORS__{self.source.upper()}__API_KEY"
        return PermanentSourceError(
            f"{self.source} stream {_redact(self.url)} rejected the credentials: {event.message!r}"
            f"{f' (code {event.code})' if event.code else ''}; check {setting} ({env}); not retrying",
            status_code=event.code,
        )

    def _plan_error(self, event: StreamEvent) -> PermanentSourceError:
        return PermanentSourceError(
            f"{self.source} stream {_redact(self.url)} refused: {event.message}; not retrying",
            status_code=event.code,
        )

    async def _serve(self, ws: Any, number: int) -> StreamEvent | None:
        """Resubscribe, announce the connection, read until it closes; returns why it closed."""
        self._ws = ws
        now = time.time_ns()
        self._counters.connects += 1
        self._counters.last_connected_ns = now
        self._last_activity = time.monotonic()
        self._went_idle = False
        watchdog = asyncio.create_task(self._watch_idle(ws))
        cause: StreamEvent | None = None
        try:
            await self._resubscribe(ws)
            self._announce(Connected(now, number))
            cause = await self._read(ws)
        except Exception as exc:
            cause = StreamEvent("error", _describe(exc))
        finally:
            self._ws = None
            watchdog.cancel()
            await _close_quietly(ws)
        if self._went_idle:
            self._counters.idle_timeouts += 1
            return StreamEvent("idle", f"no data for {self.settings.data_idle_timeout_seconds} s")
        return cause

    async def _read(self, ws: Any) -> StreamEvent | None:
        buffer, counters = self.buffer, self._counters
        last: bytes | None = None
        while True:
            try:
                frame = await ws.recv(decode=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return self._close_cause(exc, last)
            now = time.time_ns()
            counters.last_frame_ns = now
            self._last_activity = time.monotonic()
            last = frame
            await buffer.put(frame, now)

    def _close_cause(self, exc: BaseException, last: bytes | None) -> StreamEvent:
        """Why the socket closed: the vendor's last status (max_connections, slow consumer) when it
        sent one, else the close code."""
        close = _close_of(exc)
        if last is not None and len(last) < 4096:
            for event in self.protocol.control_events(last, time.time_ns()):
                if event.kind in ("connection_limit", "slow_consumer", "error"):
                    return event
        if close is not None:
            return StreamEvent("closed", f"close code {close[0]} {close[1]!r}".strip(), close[0])
        return StreamEvent("closed", _describe(exc))

    async def _watch_idle(self, ws: Any) -> None:
        """Closes the socket (so the reader reconnects) when it sent nothing for the data-idle timeout;
        the time the reader spends blocked on a full buffer does not count."""
        limit = self.settings.data_idle_timeout_seconds
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            if self.buffer.blocked:
                self._last_activity = time.monotonic()
                continue
            if time.monotonic() - self._last_activity >= limit:
                logger.warning(
                    "{} stream: no data for {} s (pings may still be answered); reconnecting",
                    self.source,
                    self.settings.data_idle_timeout_seconds,
                )
                self._went_idle = True
                await _close_quietly(ws)
                return

    def _announce(self, connected: Connected) -> None:
        hook = self.on_connected
        if hook is None:
            return
        try:
            result = hook(connected)
        except Exception:
            logger.exception("{} stream: the on_connected hook failed", self.source)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    # -- the parser ------------------------------------------------------------------------
    async def batches(self, max_rows: int, max_delay_s: float) -> AsyncIterator[StreamBatch]:
        """Run the reader and yield a micro-batch per ``max_rows`` messages or ``max_delay_s`` after
        its first frame was READ, whichever comes first (nothing while no frame arrives): a backlog
        that waited while the previous batch was written goes out at once, with every frame already
        buffered (up to ``max_rows``), instead of waiting another ``max_delay_s``. Ends after
        :meth:`close` once the frames already read are yielded; raises the reader's fatal error
        (a rejected key) after yielding what came before it."""
        self.start()
        buffer = self.buffer
        while True:
            if not await buffer.wait_for_data():
                break
            oldest = buffer.oldest_received_ns() or time.time_ns()
            deadline = time.monotonic() + max_delay_s - max(0.0, (time.time_ns() - oldest) / 1e9)
            parts: list[Decoded] = []
            raw: list[bytes] = []
            raw_ns: list[int] = []
            rows = 0
            while True:
                frames, received = buffer.take(8)  # a slice: decoding it holds the event loop ~10 ms at most
                if frames:
                    part = decode_frames(frames, received)
                    parts.append(part)
                    raw += frames
                    raw_ns += received
                    rows += len(part.messages)
                    self._counters.parsed += len(frames)
                if rows >= max_rows:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if frames and len(buffer):  # overdue: take what is already buffered, then go
                        await asyncio.sleep(0)
                        continue
                    break
                if not frames and not await buffer.wait_for_data(remaining):
                    break
                if frames:
                    await asyncio.sleep(0)  # let the reader run between slices
            decoded = concat_decoded(parts)
            if len(decoded.messages) > 2000:
                batch = await asyncio.to_thread(self.protocol.build, decoded)
            else:
                batch = self.protocol.build(decoded)
            self._counters.messages += len(decoded.messages)
            self._counters.malformed += len(batch.dead)
            self._counters.future_events += batch.future
            if batch.future and batch.future > FUTURE_HEAVY_SHARE * len(decoded.messages):
                self._counters.future_heavy_ns = time.time_ns()
                self._counters.future_heavy_share = round(batch.future / len(decoded.messages), 3)
            if batch.future:
                logger.error(
                    "{} stream: {} row(s) stamped in the future dead-lettered: {}",
                    self.source,
                    batch.future,
                    batch.dead[-1].reason,
                )
            refusal = next((e for e in batch.events if e.kind == "plan_limit"), None)
            yield replace(batch, frames=tuple(raw), frames_received_ns=tuple(raw_ns))
            if refusal is not None and self._error is None:
                # A subscription the plan refuses (Alpaca 405): the connection stops like on a
                # rejected key; the frames already read are still yielded, then it is raised.
                self._error = self._plan_error(refusal)
                self._note_error(str(self._error))
                logger.error("{}", self._error)
                await self.close()
        if self._error is not None:
            raise self._error

    # -- state -----------------------------------------------------------------------------
    def stats(self) -> StreamStats:
        c = self._counters
        return StreamStats(
            source=self.source,
            connected=self._ws is not None,
            received=c.received,
            parsed=c.parsed,
            messages=c.messages,
            spilled=c.spilled,
            dropped=c.dropped,
            malformed=c.malformed,
            future_events=c.future_events,
            future_heavy_ns=c.future_heavy_ns,
            future_heavy_share=c.future_heavy_share,
            connects=c.connects,
            reconnects=max(0, c.connects - 1),
            idle_timeouts=c.idle_timeouts,
            connection_limits=c.connection_limits,
            buffered=len(self.buffer),
            buffer_size=self.buffer.capacity,
            buffered_bytes=self.buffer.size_bytes,
            buffer_bytes=self.buffer.capacity_bytes,
            last_connected_ns=c.last_connected_ns,
            last_frame_ns=c.last_frame_ns,
            last_error=c.last_error,
        )

    async def close(self) -> None:
        """Stop reading and close the socket; :meth:`batches` still yields the frames already read,
        then ends. Idempotent."""
        self._closing.set()
        self.buffer.drain()
        for ws in (self._ws, self._opening):
            if ws is not None:
                await _close_quietly(ws)
        runner = self._runner
        if runner is not None and not runner.done():
            await asyncio.wait({runner}, timeout=2.0)  # its failure is reported through batches()
            if not runner.done():  # stuck in a connect: nothing read is lost by cancelling it
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
        self.buffer.close()
        for task in list(self._hook_tasks):
            task.cancel()


# ---------------------------------------------------------------------------------------------
# Wiring from settings


def protocol_for(source: str, datasets: Collection[str] = ()) -> StreamProtocol:
    """The wire format of ``source``'s stream endpoint carrying ``datasets`` (Alpaca's news has its
    own endpoint, ``/v1beta1/news``; trades, quotes and bars share ``/v2/{feed}``)."""
    if source == "alpaca" and set(datasets) & set(NEWS_DATASETS):
        from sources.alpaca.news_stream import PROTOCOL as alpaca_news

        return alpaca_news
    if source == "polygon":
        from sources.polygon.stream import PROTOCOL as polygon

        return polygon
    if source == "alpaca":
        from sources.alpaca.stream import PROTOCOL as alpaca

        return alpaca
    raise RequestError(f"no stream for source {source!r}; streams exist for polygon and alpaca")


def stream_url(settings: Settings, protocol: StreamProtocol, feed: str | None = None) -> str:
    """``vendors.<name>.stream_url``; else the sandbox's when REST is routed there; else derived from a
    plain-http ``base_url`` (a local server such as the sandbox); else the vendor's endpoint."""
    feed = feed or protocol.default_feed or ""
    vendor = settings.vendors.get(protocol.source)
    if vendor is not None and vendor.stream_url:
        return vendor.stream_url.replace("{feed}", feed)
    base = vendor.base_url if vendor is not None else None
    if base is None and settings.sandbox.route_vendors:
        base = settings.sandbox.base_url
    if base is not None and urlsplit(base).scheme == "http":
        parts = urlsplit(base)
        return f"ws://{parts.netloc}{protocol.path.replace('{feed}', feed)}"
    return protocol.default_url.replace("{feed}", feed)


def open_stream(
    settings: Settings,
    source: str,
    *,
    url: str | None = None,
    feed: str | None = None,
    spill: Spill | None = None,
    breaker: CircuitBreaker | None = None,
    connect: Connect | None = None,
    rng: random.Random | None = None,
    datasets: Collection[str] = (),
) -> StreamConnection:
    """A connection of ``source`` with its credentials from settings (the same as its REST source's,
    the sandbox's placeholder when routed there), to the endpoint of ``datasets`` (Alpaca's
    ``news``: its news stream). Pass the REST source's breaker (``source.context.resilience.breaker``)
    to share it. Nothing connects until ``batches``."""
    from sources.factory import source_context

    protocol = protocol_for(source, datasets)
    if feed is not None and protocol.feeds and feed not in protocol.feeds:
        raise RequestError(f"unknown {source} stream feed {feed!r}; choose from {', '.join(protocol.feeds)}")
    context = source_context(source, settings, resilience=_no_resilience(source))
    if not context.api_key:
        raise ConfigurationError(
            f"the {source} stream needs vendors.{source}.api_key; set it in .env as "
            f"MARKETPIPE_VENDORS__{source.upper()}__API_KEY"
        )
    if source == "alpaca" and not context.secret_key:
        raise ConfigurationError(
            "the alpaca stream needs vendors.alpaca.secret_key; "
            "set it in .env as MARKETPIPE_VENDORS__ALPACA__SECRET_KEY"
        )
    return StreamConnection(
        protocol,
        url or stream_url(settings, protocol, feed),
        api_key=context.api_key,
        secret_key=context.secret_key,
        streaming=settings.streaming,
        spill=spill,
        breaker=breaker,
        connect=connect,
        rng=rng,
    )


def _no_resilience(source: str) -> Any:
    from sources.resilience import Resilience

    return Resilience(source)  # only the credentials and URL of the context are used here


def _websockets_connect() -> Connect:
    from websockets.asyncio.client import connect

    return connect


def _symbols(source: str, symbols: Collection[str]) -> list[str]:
    if isinstance(symbols, str):
        symbols = symbols.split(",")
    names = [s.strip() for s in symbols if s and s.strip()]
    if not names:
        raise RequestError(f"{source} stream: name at least one symbol (or '*')")
    return ["*" if s == "*" else model.vendor_symbol(s, source) for s in names]


def _close_of(exc: BaseException) -> tuple[int, str] | None:
    """(code, reason) of the close frame a ConnectionClosed received, or sent (keepalive timeout)."""
    for attr in ("rcvd", "sent"):
        frame = getattr(exc, attr, None)
        if frame is not None:
            return int(frame.code), str(frame.reason)
    return None


def _describe(exc: BaseException) -> str:
    close = _close_of(exc)
    if close is not None:
        return f"{type(exc).__name__}: close code {close[0]} {close[1]!r}"
    return f"{type(exc).__name__}: {exc}"


async def _close_quietly(ws: Any) -> None:
    try:
        await ws.close()
    except Exception as exc:
        logger.debug("closing a stream socket: {!r}", exc)


def _redact(url: str) -> str:
    from sources.http import redact_url

    return redact_url(url)


__all__ = [
    "CANCELS",
    "CORRECTIONS",
    "DATASETS",
    "Connected",
    "DeadFrame",
    "Decoded",
    "FrameBuffer",
    "ReconnectPolicy",
    "StreamBatch",
    "StreamConnection",
    "StreamEvent",
    "StreamProtocol",
    "StreamStats",
    "decode_frames",
    "open_stream",
    "stream_url",
]
