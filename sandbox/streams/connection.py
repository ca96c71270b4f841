"""One stream connection: read client actions, replay the market on a clock, deliver with faults.

Three tasks share a connection: the reader (client actions: auth, subscribe), the producer (builds
a minute of events at a time in a worker thread, sends what the clock says is due, in frames) and
the sender (drains a server-side frame buffer into the socket). How a connection ends is decided
once (`_end`): the client went away (with or without a close frame) or the server ends it (a
vendor limit, a fault, the end of the replay), with final messages, a close code or no close
frame at all (an abrupt drop). The vendor subclasses add the protocol details.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from sandbox.streams import alpaca, news, polygon
from sandbox.streams.clock import ReplayClock, Segment, TokenBucket, plan_news_segments
from sandbox.streams.faults import DeliveryFaults
from sandbox.streams.hub import StreamHub
from sandbox.streams.protocol import Action, Subscriptions
from sandbox.streams.settings import StreamSettings
from sandbox.streams.timeline import MINUTE_NS, TickFaults

#: Longest nap of the producer, so subscription changes, stalls and kills are seen promptly.
MAX_NAP_S = 0.2
#: How long a server-side close may wait on a client that does not read.
CLOSE_WAIT_S = 5.0
ABRUPT = 0
#: Data frames in flight when slow readers are not kicked: a small buffer, then TCP backpressure.
OUTBOX_FRAMES = 4


@dataclass
class Ending:
    by_client: bool
    code: int  # the client's close code (1005: it vanished), or ours (ABRUPT: no close frame)
    reason: str = ""
    final: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Chunk:
    """Events of [lo, hi) of one session for the current subscriptions, in due order."""

    lo: int
    hi: int
    dues: list[int]
    pairs: list[tuple[str, str]]
    messages: list[dict[str, Any]]


async def _parked() -> None:
    """Wait to be cancelled: the connection is ending and its run() cancels every task."""
    await asyncio.get_running_loop().create_future()


class Pacer:
    """When the events of a chunk may go: how many now, else how long to nap (None: the chunk is over)."""

    def ready(self, chunk: Chunk, i: int, seg_index: int, wall: float) -> tuple[int, float | None]:
        raise NotImplementedError

    def resume_at(self, start: int, seg_index: int, hi: int, wall: float) -> int:
        """Where streams subscribed mid-chunk begin (never before what was already sent)."""
        return start


class MarketPacer(Pacer):
    """Events go when the replay clock passes their due instant, in frames of up to `batch`, and
    never before the market's own clock (`market_now`, the clock REST serves by) reaches it: a
    replay of today's session faster than real time waits at the market's now, as a live feed
    would. `speed=0` (as fast as the socket takes it) is a benchmark's replay, not a feed: no cap."""

    def __init__(
        self, clock: ReplayClock, settings: StreamSettings, market_now: Callable[[], int] | None = None
    ) -> None:
        self.clock = clock
        self.batch = settings.batch
        self.tick = settings.tick_ms / 1000.0
        self.market_now = market_now

    def _limit(self, seg_index: int, hi: int, wall: float) -> int:
        here = self.clock.now(wall)
        limit = hi if here is None or here[0] > seg_index else here[1]
        return limit if self.market_now is None else min(limit, self.market_now() + 1)

    def ready(self, chunk: Chunk, i: int, seg_index: int, wall: float) -> tuple[int, float | None]:
        pending = len(chunk.dues) - i
        limit = self._limit(seg_index, chunk.hi, wall)
        if not pending and limit >= chunk.hi:
            return 0, None
        k = bisect.bisect_right(chunk.dues, limit - 1, i, i + min(self.batch, pending)) - i
        if k:
            return k, 0.0
        wait = self.clock.wall_at(seg_index, chunk.dues[i] if pending else chunk.hi) - wall
        if wait <= 0:  # due by the replay, not yet by the market's clock: look again shortly
            return 0, MAX_NAP_S
        return 0, min(MAX_NAP_S, max(self.tick, wait))

    def resume_at(self, start: int, seg_index: int, hi: int, wall: float) -> int:
        return max(start, min(hi, self._limit(seg_index, hi, wall)))


class RatePacer(Pacer):
    """Events go in order at `rate` per second whatever their due instants (benchmarks)."""

    def __init__(self, settings: StreamSettings, now: float) -> None:
        # a quarter second of tokens banked covers building the next chunk without losing pace
        self.bucket = TokenBucket(settings.rate, max(float(settings.batch), settings.rate * 0.25), now)
        self.batch = settings.batch
        self.tick = settings.tick_ms / 1000.0

    def ready(self, chunk: Chunk, i: int, seg_index: int, wall: float) -> tuple[int, float | None]:
        want = min(self.batch, len(chunk.dues) - i)
        if not want:
            return 0, None
        k = self.bucket.take(wall, want)
        return k, (0.0 if k else min(MAX_NAP_S, max(self.tick, self.bucket.wait_s(wall, want))))


def _step(
    segments: list[Segment], index: int, cursor: int, chunk_ns: int = MINUTE_NS
) -> tuple[int, tuple[int, int] | None]:
    """The end of the chunk starting at `cursor` (the next `chunk_ns` boundary) and where the next starts."""
    segment = segments[index]
    hi = min(segment.end_ns, (cursor // chunk_ns + 1) * chunk_ns)
    if hi < segment.end_ns:
        return hi, (index, hi)
    return hi, ((index + 1, segments[index + 1].start_ns) if index + 1 < len(segments) else None)


class Connection:
    vendor = ""
    #: The producer builds this much market time of events at once.
    chunk_ns = MINUTE_NS

    def __init__(self, hub: StreamHub, ws: WebSocket, path: str) -> None:
        self.hub = hub
        self.ws = ws
        self.path = path
        self.query = dict(ws.query_params)
        self.key = ""
        self.settings = StreamSettings()
        self.subs = Subscriptions()
        self.authed = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.messages = 0
        self.frames = 0
        self.market_ns: int | None = None
        self.done = False
        self.state = "connected"
        self.close_code: int | None = None
        self.opened_at = time.monotonic()
        self.authed_at: float | None = None
        self._ending: Ending | None = None
        self._ended = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[str | bytes, bool]] = asyncio.Queue()
        self._room = asyncio.Semaphore(OUTBOX_FRAMES)
        self._stalled = False
        self._stamped_ahead = False  # the future_after fault, once per connection
        self._carry: list[dict[str, Any]] = []
        self.id = hub.register(self)

    # ---- vendor hooks -------------------------------------------------------------------------
    def greeting(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def parse(self, frame: str | bytes) -> Action:
        raise NotImplementedError

    async def on_action(self, action: Action) -> None:
        raise NotImplementedError

    def encode(self, messages: list[dict[str, Any]]) -> str | bytes:
        raise NotImplementedError

    def render(self, day: Any, channel: str, rows: np.ndarray) -> list[dict[str, Any]]:
        raise NotImplementedError

    def restamp(self, messages: list[dict[str, Any]], wall_ns: int) -> None:
        raise NotImplementedError

    def replayed(self, channel: str) -> tuple[str, ...]:
        raise NotImplementedError

    def tick_faults(self) -> TickFaults:
        s = self.settings
        return TickFaults(s.seed, s.late, s.late_s, s.corrections, s.cancels)

    def make_clock(self, now: float) -> ReplayClock:
        """The connection's replay clock (a shared one by name, else its own over the sessions' hours)."""
        return self.hub.clock_for(self.settings, now)

    def kick_message(self) -> dict[str, Any]:
        raise NotImplementedError

    def on_closed(self, ending: Ending) -> None:
        """Vendor bookkeeping once the connection is over (Alpaca: keep a half-dead slot)."""

    # ---- ending -------------------------------------------------------------------------------
    def _end(self, ending: Ending) -> None:
        if self._ending is None:
            self._ending = ending
            self._ended.set()

    def end_by_server(self, code: int, reason: str = "", final: list[dict[str, Any]] | None = None) -> None:
        self._end(Ending(False, code, reason, list(final or [])))

    # ---- sending ------------------------------------------------------------------------------
    async def _write(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            await self.ws.send_bytes(payload)
        else:
            await self.ws.send_text(payload)

    async def send_control(self, messages: list[dict[str, Any]]) -> None:
        await self._queue(self.encode(messages), control=True)

    async def _queue(self, payload: str | bytes, control: bool = False) -> None:
        kick = self.settings.kick_slow
        if control:
            self._outbox.put_nowait((payload, False))
        elif kick:
            if self._outbox.qsize() >= kick:
                self.end_by_server(1008, "slow consumer", [self.kick_message()])
                await _parked()
            self._outbox.put_nowait((payload, False))
            await asyncio.sleep(0)  # let the sender drain: only a blocked socket should fill the buffer
        else:
            await self._room.acquire()
            self._outbox.put_nowait((payload, True))

    async def _sender(self) -> None:
        while True:
            payload, permit = await self._outbox.get()
            try:
                await self._write(payload)
            except (WebSocketDisconnect, OSError, RuntimeError):
                self._end(Ending(True, 1006))
                return
            if permit:
                self._room.release()

    # ---- reading ------------------------------------------------------------------------------
    async def _reader(self) -> None:
        while True:
            try:
                message = await self.ws.receive()
            except (RuntimeError, OSError):
                self._end(Ending(True, 1006))
                return
            if message["type"] == "websocket.disconnect":
                self._end(Ending(True, int(message.get("code") or 1005)))
                return
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            await self.on_action(self.parse(frame))

    # ---- producing ----------------------------------------------------------------------------
    def _build(self, session: int, lo: int, hi: int, pairs: list[tuple[str, str]]) -> Chunk:
        """Render every event due in [lo, hi) for `pairs` (runs in a worker thread)."""
        faults = self.tick_faults()
        dues: list[np.ndarray] = []
        owners: list[tuple[str, str]] = []
        counts: list[int] = []
        messages: list[dict[str, Any]] = []
        for symbol, channel in pairs:
            day = self.hub.day(symbol, session, faults)
            due, rows = day.window(channel, lo, hi)
            if not len(due):
                continue
            dues.append(due)
            owners.append((symbol, channel))
            counts.append(len(due))
            messages += self.render(day, channel, rows)
        if not dues:
            return Chunk(lo, hi, [], [], [])
        all_due = np.concatenate(dues)
        order = np.argsort(all_due, kind="stable")
        owner_of = np.repeat(np.arange(len(owners)), counts)[order].tolist()
        return Chunk(
            lo, hi, all_due[order].tolist(), [owners[i] for i in owner_of], [messages[i] for i in order.tolist()]
        )

    def _pairs(self) -> list[tuple[str, str]]:
        return [
            (symbol, channel)
            for symbol, sub in self.subs.pairs(self.settings.universe)
            for channel in self.replayed(sub)
        ]

    async def _merge_new_subscriptions(self, chunk: Chunk, index: int, session: int, start: int) -> Chunk:
        """Drop unsubscribed streams from the rest of the chunk and add new ones from `start` on."""
        wanted = self._pairs()
        keep = set(wanted)
        had = set(chunk.pairs)
        rest = [
            (d, p, m)
            for d, p, m in zip(chunk.dues[index:], chunk.pairs[index:], chunk.messages[index:], strict=True)
            if p in keep
        ]
        added = [p for p in wanted if p not in had]
        if added and start < chunk.hi:
            extra = await asyncio.to_thread(self._build, session, start, chunk.hi, added)
            rest += zip(extra.dues, extra.pairs, extra.messages, strict=True)
            rest.sort(key=lambda r: r[0])
        return Chunk(chunk.lo, chunk.hi, [r[0] for r in rest], [r[1] for r in rest], [r[2] for r in rest])

    async def _maybe_stall(self) -> None:
        s = self.settings
        if self._stalled:
            return
        by_count = s.stall_after and self.messages >= s.stall_after
        by_time = (
            s.stall_after_s and self.authed_at is not None and time.monotonic() - self.authed_at >= s.stall_after_s
        )
        if not (by_count or by_time):
            return
        self._stalled = True
        self.state = "stalled"
        if s.stall_s:
            await asyncio.sleep(s.stall_s)
        else:
            await self._ended.wait()
        self.state = "streaming"

    def _stamp_one_ahead(self, messages: list[dict[str, Any]]) -> None:
        """The ``future_after`` fault: once per connection, the first trade past that many data messages
        is stamped ``future_s`` after the wall clock (a vendor's bad print, a skewed clock); a copy, so
        the replay's own events stay as they are."""
        s = self.settings
        if not s.future_after or self._stamped_ahead or self.messages + len(messages) < s.future_after:
            return
        for i, message in enumerate(messages):
            if self.messages + i >= s.future_after and message.get("ev", message.get("T")) in ("T", "t"):
                ahead = dict(message)
                self.restamp([ahead], time.time_ns() + round(s.future_s * 1e9))
                messages[i] = ahead
                self._stamped_ahead = True
                return

    async def _emit(self, frame: list[dict[str, Any]], faults: DeliveryFaults) -> None:
        await self._maybe_stall()
        messages = self._carry + frame
        messages, self._carry = faults.disturb(self.frames, messages)
        if self.settings.stamp == "send":
            self.restamp(messages, time.time_ns())
        self._stamp_one_ahead(messages)
        payload = self.encode(messages)
        broken = faults.corrupt(self.frames, payload)
        await self._queue(broken if broken is not None else payload)
        self.frames += 1
        self.messages += len(messages)
        s = self.settings
        if s.disconnect_after and self.messages >= s.disconnect_after:
            self.end_by_server(s.disconnect_code, "disconnect_after")
            await _parked()

    async def _producer(self) -> None:
        await self.subscribed.wait()
        self.state = "streaming"
        s = self.settings
        now = time.monotonic()
        clock = self.make_clock(now)
        segments = clock.segments
        faults = DeliveryFaults(s.seed, s.duplicate, s.reorder, s.malformed)
        pacer: Pacer = (
            RatePacer(s, now) if s.rate else MarketPacer(clock, s, self.hub.market.now_ns if s.speed > 0 else None)
        )
        where = clock.now(now)
        if (s.rate or s.speed <= 0) and segments:
            where = (0, segments[0].start_ns)
        ahead: tuple[tuple[int, int, int], asyncio.Task[Chunk]] | None = None
        while where is not None:
            seg_index, cursor = where
            session = segments[seg_index].session
            hi, following = _step(segments, seg_index, cursor, self.chunk_ns)
            version = self.subs.version
            if ahead is not None and ahead[0] == (seg_index, cursor, version):
                chunk = await ahead[1]
            else:
                if ahead is not None:
                    ahead[1].cancel()
                chunk = await asyncio.to_thread(self._build, session, cursor, hi, self._pairs())
            ahead = None
            if following is not None:  # build the next minute while this one streams
                n_index, n_cursor = following
                n_hi, _ = _step(segments, n_index, n_cursor, self.chunk_ns)
                build = asyncio.to_thread(self._build, segments[n_index].session, n_cursor, n_hi, self._pairs())
                ahead = ((n_index, n_cursor, version), asyncio.create_task(build))
            i = 0
            while True:
                wall = time.monotonic()
                if self.subs.version != version:
                    version = self.subs.version
                    start = pacer.resume_at(chunk.dues[i - 1] + 1 if i else cursor, seg_index, chunk.hi, wall)
                    chunk = await self._merge_new_subscriptions(chunk, i, session, start)
                    i = 0
                k, nap = pacer.ready(chunk, i, seg_index, wall)
                if k:
                    await self._emit(chunk.messages[i : i + k], faults)
                    self.market_ns = chunk.dues[i + k - 1]
                    i += k
                elif nap is None:
                    break
                else:
                    await asyncio.sleep(nap)
            where = following
        await self._finish_replay()

    async def _finish_replay(self) -> None:
        self.done = True
        self.state = "done"
        if self._carry:
            await self._queue(self.encode(self._carry))
            self.messages += len(self._carry)
            self._carry = []
        if self.settings.at_end == "close":
            while not self._outbox.empty() and self._ending is None:
                await asyncio.sleep(0.01)
            self.end_by_server(1000, "replay done")

    async def _timer(self, seconds: float, code: int, reason: str) -> None:
        await asyncio.sleep(seconds)
        self.end_by_server(code, reason)

    # ---- the connection's life ----------------------------------------------------------------
    async def run(self) -> None:
        await self.ws.accept()
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                self.settings = self.hub.settings(self.query)
            except ValueError as exc:
                await self.ws.close(1008, str(exc)[:120])
                self._end(Ending(False, 1008, str(exc)))
                return
            await self._write(self.encode(self.greeting()))
            tasks = [asyncio.create_task(t) for t in (self._reader(), self._producer(), self._sender())]
            tasks += self.start_timers()
            tasks[1].add_done_callback(self._producer_done)
            await self._ended.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            await self._finish()

    def start_timers(self) -> list[asyncio.Task[None]]:
        return []

    def _producer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.end_by_server(1011, f"internal error: {task.exception()!r}"[:120])

    async def _finish(self) -> None:
        ending = self._ending or Ending(True, 1006)
        self.state = "closing"
        if not ending.by_client and self.ws.application_state == WebSocketState.CONNECTED:
            try:
                if ending.final:
                    async with asyncio.timeout(CLOSE_WAIT_S):
                        await self._write(self.encode(ending.final))
                if ending.code != ABRUPT:
                    async with asyncio.timeout(CLOSE_WAIT_S):
                        await self.ws.close(ending.code, ending.reason[:120])
            except (TimeoutError, WebSocketDisconnect, OSError, RuntimeError):
                pass
        self.state = "closed"
        self.close_code = ending.code
        self.on_closed(ending)
        self.hub.unregister(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "vendor": self.vendor,
            "path": self.path,
            "key": self.key,
            "state": self.state,
            "messages": self.messages,
            "frames": self.frames,
            "market_ns": self.market_ns,
            "done": self.done,
            "close_code": self.close_code,
        }


class PolygonConnection(Connection):
    vendor = polygon.VENDOR

    def greeting(self) -> list[dict[str, Any]]:
        return polygon.connected()

    def parse(self, frame: str | bytes) -> Action:
        return polygon.parse_client(frame)

    def encode(self, messages: list[dict[str, Any]]) -> str:
        return polygon.encode(messages)

    def render(self, day: Any, channel: str, rows: np.ndarray) -> list[dict[str, Any]]:
        return polygon.render(day, channel, rows)

    def restamp(self, messages: list[dict[str, Any]], wall_ns: int) -> None:
        polygon.restamp(messages, wall_ns)

    def replayed(self, channel: str) -> tuple[str, ...]:
        return polygon.REPLAYED.get(channel, ())

    def tick_faults(self) -> TickFaults:
        s = self.settings
        return TickFaults(s.seed, s.late, s.late_s)

    def kick_message(self) -> dict[str, Any]:
        return polygon.status("slow_consumer", "client is consuming too slowly; disconnecting")

    async def on_action(self, action: Action) -> None:
        if action.kind == "auth":
            if self.authed.is_set():
                await self.send_control([polygon.status("error", "already authenticated")])
                return
            if not self.hub.key_is_valid(action.key):
                failed = polygon.status("auth_failed", "authentication failed")
                self.end_by_server(1008, "authentication failed", [failed])
                return
            try:
                self.settings = self.hub.settings(self.query, action.key)
            except ValueError as exc:
                self.end_by_server(1008, str(exc))
                return
            self.key = action.key
            others = self.hub.authenticated(self.vendor, self.key)
            limit = self.settings.max_connections
            for old in others[: max(0, len(others) - limit + 1)]:
                message = polygon.MAX_CONNECTIONS_MESSAGE.format(n=limit)
                old.end_by_server(1008, "max_connections", [polygon.status("max_connections", message)])
            self.authed.set()
            self.authed_at = time.monotonic()
            self.state = "authenticated"
            await self.send_control([polygon.status("auth_success", "authenticated")])
        elif action.kind in ("subscribe", "unsubscribe"):
            if not self.authed.is_set():
                await self.send_control([polygon.status("error", "not authorized")])
                return
            (self.subs.add if action.kind == "subscribe" else self.subs.remove)(action.topics)
            await self.send_control(polygon.subscription_replies(action))
            if self.subs:
                self.subscribed.set()
        else:
            await self.send_control([polygon.status("error", action.error)])

    def start_timers(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._disconnect_timer())]

    async def _disconnect_timer(self) -> None:
        await self.authed.wait()
        if self.settings.disconnect_after_s:
            await self._timer(self.settings.disconnect_after_s, self.settings.disconnect_code, "disconnect_after_s")


class AlpacaConnection(Connection):
    vendor = alpaca.VENDOR

    def __init__(self, hub: StreamHub, ws: WebSocket, path: str) -> None:
        super().__init__(hub, ws, path)
        self.msgpack = ws.headers.get("content-type", "").lower().startswith("application/msgpack")
        self.codec = "msgpack" if self.msgpack else "json"

    def greeting(self) -> list[dict[str, Any]]:
        return alpaca.connected()

    def parse(self, frame: str | bytes) -> Action:
        return alpaca.parse_client(frame)

    def encode(self, messages: list[dict[str, Any]]) -> str | bytes:
        return alpaca.encode_msgpack(messages) if self.msgpack else alpaca.encode_json(messages)

    def render(self, day: Any, channel: str, rows: np.ndarray) -> list[dict[str, Any]]:
        return alpaca.render(day, channel, rows, self.codec)

    def restamp(self, messages: list[dict[str, Any]], wall_ns: int) -> None:
        alpaca.restamp(messages, wall_ns, self.codec)

    def replayed(self, channel: str) -> tuple[str, ...]:
        return alpaca.REPLAYED.get(channel, ())

    def kick_message(self) -> dict[str, Any]:
        return alpaca.error(407)

    def subscription_reply(self) -> dict[str, Any]:
        return alpaca.subscription(self.subs.symbols)

    async def on_action(self, action: Action) -> None:
        if action.kind == "auth":
            if self.authed.is_set():
                await self.send_control([alpaca.error(403)])
                return
            if not self.hub.key_is_valid(action.key, action.secret):
                self.end_by_server(1008, "auth failed", [alpaca.error(402)])
                return
            try:
                settings = self.hub.settings(self.query, action.key)
            except ValueError as exc:
                self.end_by_server(1008, str(exc), [alpaca.error(400, str(exc))])
                return
            now = time.monotonic()
            taken = len(self.hub.authenticated(self.vendor, action.key, self.path))
            taken += self.hub.held_slots(self.vendor, self.path, action.key, now)
            if taken >= settings.max_connections:
                self.end_by_server(1008, "connection limit exceeded", [alpaca.error(406)])
                return
            self.settings = settings
            self.key = action.key
            self.authed.set()
            self.authed_at = now
            self.state = "authenticated"
            await self.send_control([alpaca.success("authenticated")])
        elif action.kind in ("subscribe", "unsubscribe"):
            if not self.authed.is_set():
                await self.send_control([alpaca.error(401)])
                return
            (self.subs.add if action.kind == "subscribe" else self.subs.remove)(action.topics)
            await self.send_control([self.subscription_reply()])
            if self.subs:
                self.subscribed.set()
        else:
            await self.send_control([alpaca.error(400)])

    def start_timers(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._auth_timeout()), asyncio.create_task(self._disconnect_timer())]

    async def _auth_timeout(self) -> None:
        try:
            async with asyncio.timeout(self.settings.auth_timeout_s or None):
                await self.authed.wait()
        except TimeoutError:
            self.end_by_server(1008, "auth timeout", [alpaca.error(404)])

    async def _disconnect_timer(self) -> None:
        await self.authed.wait()
        if self.settings.disconnect_after_s:
            await self._timer(self.settings.disconnect_after_s, self.settings.disconnect_code, "disconnect_after_s")

    def on_closed(self, ending: Ending) -> None:
        half_dead = (ending.by_client and ending.code in (1005, 1006)) or (
            not ending.by_client and ending.code == ABRUPT
        )
        if half_dead and self.authed.is_set():
            self.hub.hold_slot(self.vendor, self.path, self.key, self.settings.reap_s)


class AlpacaNewsConnection(AlpacaConnection):
    """Alpaca's news stream (``/v1beta1/news``, see :mod:`sandbox.streams.news`): the Alpaca protocol
    with one channel, replaying each session's news day (not its trading hours) on a private clock."""

    chunk_ns = 3_600 * 1_000_000_000

    def __init__(self, hub: StreamHub, ws: WebSocket, path: str) -> None:
        super().__init__(hub, ws, path)
        self._days: dict[tuple[str, int], news.NewsDay] = {}

    def parse(self, frame: str | bytes) -> Action:
        return alpaca.parse_client(frame, news.CHANNELS)

    def subscription_reply(self) -> dict[str, Any]:
        return {"T": "subscription", "news": self.subs.symbols("news")}

    def replayed(self, channel: str) -> tuple[str, ...]:
        return (channel,) if channel in news.CHANNELS else ()

    def make_clock(self, now: float) -> ReplayClock:
        s = self.settings
        market = self.hub.market
        segments = plan_news_segments(market.calendar, market.last_session, s.session, s.sessions, s.from_time)
        return ReplayClock(segments, s.speed, now)

    def _build(self, session: int, lo: int, hi: int, pairs: list[tuple[str, str]]) -> Chunk:
        """The news of `pairs`' symbols due in [lo, hi) (runs in a worker thread)."""
        rows: list[tuple[int, tuple[str, str], news.NewsItem]] = []
        for symbol, channel in pairs:
            day = self._days.get((symbol, session))
            if day is None:
                day = self._days[(symbol, session)] = news.news_day(self.hub.market, symbol, session)
            due, items = day.window(lo, hi)
            rows += zip(due.tolist(), [(symbol, channel)] * len(items), items, strict=True)
        rows.sort(key=lambda r: (r[0], str(r[2].id)))
        messages = news.render([r[2] for r in rows], self.codec)
        return Chunk(lo, hi, [r[0] for r in rows], [r[1] for r in rows], messages)
