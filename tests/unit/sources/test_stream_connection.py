"""The vendor-neutral stream connection: reconnect policy, the bounded buffer's backpressure and
spill policy, and the connection's life cycle through its transport seam (an in-memory socket that
speaks Polygon's protocol). No network; every wait is bounded."""

import asyncio
import random
import time

import orjson
import pytest
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from core.errors import ConfigurationError, PermanentSourceError, RequestError
from core.settings import Settings, StreamingSettings
from sources.alpaca.stream import PROTOCOL as ALPACA
from sources.polygon.stream import PROTOCOL as POLYGON
from sources.resilience import BreakerState, CircuitBreaker
from sources.stream import FrameBuffer, ReconnectPolicy, StreamConnection, open_stream, stream_url

WAIT_S = 10.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, WAIT_S))


# -- the reconnect policy ------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_its_cap():
    policy = ReconnectPolicy(base_s=1.0, max_s=8.0, rng=random.Random(7))
    delays = [policy.delay_s() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    again = ReconnectPolicy(base_s=1.0, max_s=8.0, rng=random.Random(7))
    assert [again.delay_s() for _ in range(6)] == delays  # seeded: the same schedule


def test_a_healthy_connection_resets_the_backoff_and_a_short_one_does_not():
    policy = ReconnectPolicy(base_s=1.0, max_s=64.0, healthy_s=60.0, rng=random.Random(1))
    for _ in range(4):
        policy.delay_s()
    assert 8.0 <= policy.delay_s(connected_for_s=5.0) <= 16.0  # still climbing
    assert 0.5 <= policy.delay_s(connected_for_s=60.0) <= 1.0  # back to the base


def test_the_connection_limit_waits_the_long_pause_without_advancing_the_backoff():
    policy = ReconnectPolicy(base_s=1.0, max_s=8.0, limit_pause_s=90.0, rng=random.Random(2))
    assert policy.delay_s(connection_limit=True) == 90.0
    assert policy.attempt == 0


# -- the bounded buffer ---------------------------------------------------------------------------


def test_a_full_buffer_stops_the_reader_until_the_parser_takes_a_frame():
    async def scenario():
        buffer = FrameBuffer(2, lag_limit_s=60.0)
        await buffer.put(b"1", 1)
        await buffer.put(b"2", 2)
        reader = asyncio.create_task(buffer.put(b"3", 3))
        for _ in range(20):
            await asyncio.sleep(0)
        blocked = (reader.done(), buffer.blocked, len(buffer))
        assert buffer.take(1) == ([b"1"], [1])
        await asyncio.wait_for(reader, 5)
        return blocked, buffer.take(10), buffer.counters

    blocked, rest, counters = run(scenario())
    assert blocked == (False, True, 2)
    assert rest == ([b"2", b"3"], [2, 3])
    assert (counters.received, counters.spilled, counters.dropped) == (3, 0, 0)


@pytest.mark.parametrize("waiting", ["the parser for a frame", "the reader for room"])
def test_a_cancel_that_lands_as_the_wait_ends_stops_the_waiting_task(waiting):
    """Python 3.11's asyncio.wait_for returned what it awaited when a cancellation landed in the
    loop turn the wait ended in, and the cancelled task went on: a stream service cancelled while a
    frame arrived kept reading until its market closed (stop 36's CI). Both of the buffer's waits
    end cancelled when the frame, or the room, comes in the turn of the cancel."""

    async def scenario():
        buffer = FrameBuffer(1, lag_limit_s=60.0)
        if waiting == "the parser for a frame":
            task = asyncio.create_task(buffer.wait_for_data(30.0))
        else:
            await buffer.put(b"1", 1)
            task = asyncio.create_task(buffer.put(b"2", 2))
        await asyncio.sleep(0)  # the task is in its wait
        if waiting == "the parser for a frame":
            await buffer.put(b"1", 1)  # what it waits for comes...
        else:
            buffer.take(1)
        task.cancel()  # ...and the cancel, in the same turn
        await asyncio.wait({task}, timeout=2.0)
        return task.done() and task.cancelled(), len(buffer)

    cancelled, buffered = run(scenario())
    assert cancelled
    assert buffered == (1 if waiting == "the parser for a frame" else 0)  # the cancelled put stored nothing


def test_past_the_lag_limit_the_oldest_half_is_spilled_in_order_and_reading_resumes():
    spilled: list[tuple[list[bytes], list[int]]] = []

    async def scenario():
        buffer = FrameBuffer(4, lag_limit_s=0.01, spill=lambda frames, received: spilled.append((frames, received)))
        for i in range(5):  # the fifth waits past the lag limit: nobody takes
            await asyncio.wait_for(buffer.put(str(i).encode(), i), 5)
        return buffer.take(10), buffer.counters

    (frames, received), counters = run(scenario())
    assert spilled == [([b"0", b"1"], [0, 1])]  # with when each was read
    assert frames == [b"2", b"3", b"4"] and received == [2, 3, 4]
    assert (counters.received, counters.spilled, counters.dropped) == (5, 2, 0)


def test_the_buffer_is_bounded_in_bytes_too_and_spills_down_to_half_of_them():
    spilled: list[list[bytes]] = []

    async def scenario():
        buffer = FrameBuffer(100, capacity_bytes=10, lag_limit_s=0.01, spill=lambda frames, _: spilled.append(frames))
        for frame in (b"aaa", b"bbb", b"ccc"):  # 9 bytes: room in count and bytes
            await asyncio.wait_for(buffer.put(frame, 1), 5)
        held = (len(buffer), buffer.size_bytes)
        await asyncio.wait_for(buffer.put(b"dddd", 2), 5)  # 13 bytes would pass 10: the reader waits, spills
        return held, buffer.take(10), buffer.size_bytes, buffer.counters

    held, (frames, _), left, counters = run(scenario())
    assert held == (3, 9)
    assert spilled == [[b"aaa", b"bbb"]]  # the oldest, down to at most 5 bytes held
    assert frames == [b"ccc", b"dddd"] and left == 0
    assert (counters.received, counters.spilled, counters.dropped) == (4, 2, 0)


def test_a_frame_of_over_half_the_byte_bound_is_let_in_after_one_spill():
    """The spill makes room for the frame that waits too (it took one lag-limit wait per halving,
    each spill a catch-up of its own in hybrid mode)."""
    spilled: list[int] = []

    async def scenario():
        buffer = FrameBuffer(
            100, capacity_bytes=100, lag_limit_s=0.01, spill=lambda frames, _: spilled.append(len(frames))
        )
        for n in range(6):
            await asyncio.wait_for(buffer.put(b"x" * 15, n), 5)
        await asyncio.wait_for(buffer.put(b"y" * 90, 99), 5)
        return len(buffer), buffer.size_bytes

    assert run(scenario()) == (1, 90)
    assert spilled == [6]


def test_a_frame_larger_than_the_byte_bound_is_taken_alone():
    async def scenario():
        buffer = FrameBuffer(100, capacity_bytes=4, lag_limit_s=60.0)
        await asyncio.wait_for(buffer.put(b"0123456789", 1), 5)
        return buffer.take(1)

    assert run(scenario()) == ([b"0123456789"], [1])


def test_an_async_spill_is_awaited():
    spilled: list[bytes] = []

    async def spill(frames, received):
        await asyncio.sleep(0)
        spilled.extend(frames)

    async def scenario():
        buffer = FrameBuffer(2, lag_limit_s=0.01, spill=spill)
        for i in range(3):
            await asyncio.wait_for(buffer.put(bytes([i]), i), 5)
        return buffer.counters.spilled

    assert run(scenario()) == 1 and spilled == [b"\x00"]


@pytest.mark.parametrize("spill", [None, "raises"])
def test_without_a_working_spill_the_oldest_frames_are_dropped_and_counted(spill):
    def broken(frames, received):
        raise OSError("lake unreachable")

    async def scenario():
        buffer = FrameBuffer(2, lag_limit_s=0.01, spill=broken if spill else None)
        for i in range(3):
            await asyncio.wait_for(buffer.put(bytes([i]), i), 5)
        return buffer.take(10)[0], buffer.counters

    frames, counters = run(scenario())
    assert frames == [b"\x01", b"\x02"]
    assert (counters.spilled, counters.dropped) == (0, 1)


def test_draining_keeps_the_blocked_readers_frame_past_the_capacity_instead_of_spilling_it():
    spilled: list[list[bytes]] = []

    async def scenario():
        buffer = FrameBuffer(1, lag_limit_s=60.0, spill=lambda frames, received: spilled.append(frames))
        await buffer.put(b"a", 1)
        reader = asyncio.create_task(buffer.put(b"b", 2))
        await asyncio.sleep(0)
        buffer.drain()
        await asyncio.wait_for(reader, 5)
        return buffer.take(10)[0]

    assert run(scenario()) == [b"a", b"b"] and spilled == []


def test_a_lag_limit_past_the_ping_timeout_is_refused():
    with pytest.raises(ValidationError, match=r"lag_limit_seconds .* must be below ping_timeout_seconds"):
        StreamingSettings(lag_limit_seconds=20.0, ping_timeout_seconds=20.0)


def test_a_closed_buffer_releases_the_reader_and_reports_no_more_data():
    async def scenario():
        buffer = FrameBuffer(1, lag_limit_s=60.0)
        await buffer.put(b"a", 1)
        reader = asyncio.create_task(buffer.put(b"b", 2))
        await asyncio.sleep(0)
        buffer.close()
        await asyncio.wait_for(reader, 5)
        first = await buffer.wait_for_data()
        buffer.take(10)
        return first, await buffer.wait_for_data()

    assert run(scenario()) == (True, False)


# -- the connection through its transport seam --------------------------------------------------


def trades_frame(*ids):
    return orjson.dumps(
        [{"ev": "T", "sym": "AAPL", "i": i, "x": 4, "p": 1.5, "s": 10, "t": 1_717_421_400_000, "z": 3} for i in ids]
    )


def status(status, message=""):
    return orjson.dumps([{"ev": "status", "status": status, "message": message}])


class FakeSocket:
    """One server-side connection: frames the vendor queued, and what the client sent."""

    def __init__(self, vendor):
        self.vendor = vendor
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sent: list[dict] = []
        self.closed = False
        self.subscribed = False

    async def recv(self, decode=None):
        item = await self.inbox.get()
        if isinstance(item, BaseException):
            self.closed = True
            raise item
        return item

    async def send(self, text):
        message = orjson.loads(text)
        self.sent.append(message)
        self.vendor.answer(self, message)

    async def close(self):
        if not self.closed:
            self.closed = True
            close = Close(1000, "")
            self.inbox.put_nowait(ConnectionClosedOK(close, close, True))

    def drop(self):
        self.inbox.put_nowait(ConnectionClosedError(None, None))


class FakePolygon:
    """Polygon's handshake: welcome, auth (accepted, refused, or the connection limit), a subscription
    ack, then the frames ``data`` gives for each connection."""

    def __init__(self, *, auth="ok", data=(), fail_connects=0):
        self.auth = auth
        self.data = list(data)  # per connection: frames queued after the subscription ack
        self.fail_connects = fail_connects
        self.sockets: list[FakeSocket] = []
        self.attempts = 0
        self.options: dict = {}

    async def connect(self, url, **options):
        self.attempts += 1
        self.options = options
        if self.attempts <= self.fail_connects:
            raise ConnectionRefusedError("connection refused")
        socket = FakeSocket(self)
        self.sockets.append(socket)
        socket.inbox.put_nowait(status("connected", "Connected Successfully"))
        return socket

    def answer(self, socket, message):
        if message["action"] == "auth":
            if self.auth == "ok":
                socket.inbox.put_nowait(status("auth_success", "authenticated"))
            elif self.auth == "limit":
                socket.inbox.put_nowait(status("max_connections", "Maximum number of connections exceeded."))
                socket.inbox.put_nowait(ConnectionClosedError(Close(1008, "max connections"), None))
            else:
                socket.inbox.put_nowait(status("auth_failed", "authentication failed"))
                socket.inbox.put_nowait(ConnectionClosedError(Close(1008, "auth failed"), None))
        elif message["action"] == "subscribe":
            socket.inbox.put_nowait(status("success", f"subscribed to: {message['params']}"))
            index = self.sockets.index(socket)
            if not socket.subscribed:  # this connection's data follows its first subscription
                socket.subscribed = True
                for frame in self.data[index] if index < len(self.data) else ():
                    socket.inbox.put_nowait(frame)


def streaming(**overrides):
    values = {
        "buffer_size": 100,
        "reconnect_base_seconds": 0.01,
        "reconnect_max_seconds": 0.02,
        "data_idle_timeout_seconds": 30.0,
        "open_timeout_seconds": 5.0,
        "connection_limit_pause_seconds": 60.0,
        **overrides,
    }
    return StreamingSettings(**values)


def connection(vendor, breaker=None, connect=None, **settings):
    return StreamConnection(
        POLYGON,
        "ws://127.0.0.1:1/stocks",
        api_key="KEY",
        streaming=streaming(**settings),
        connect=connect or vendor.connect,
        breaker=breaker,
        rng=random.Random(0),
    )


async def collect_trades(conn, count):
    """Trade ids from the batches until ``count`` arrived (bounded by the caller's wait_for)."""
    ids: list[str] = []
    async for batch in conn.batches(max_rows=1000, max_delay_s=0.01):
        ids += batch.trades["trade_id"].tolist()
        if len(ids) >= count:
            break
    return ids


def test_the_connection_authenticates_subscribes_and_yields_the_vendors_trades():
    vendor = FakePolygon(data=[[trades_frame("1", "2"), trades_frame("3")]])
    connected = []

    async def scenario():
        conn = connection(vendor)
        conn.on_connected = connected.append
        await conn.subscribe(["trades", "quotes"], ["AAPL", "brk.b"])
        ids = await collect_trades(conn, 3)
        await conn.close()
        return ids, conn.stats()

    ids, stats = run(scenario())
    assert ids == ["1", "2", "3"]
    assert vendor.sockets[0].sent == [
        {"action": "auth", "params": "KEY"},
        {"action": "subscribe", "params": "T.AAPL,T.BRK.B,Q.AAPL,Q.BRK.B"},
    ]
    assert [c.number for c in connected] == [1]
    assert (stats.connects, stats.reconnects, stats.received, stats.dropped) == (1, 0, 3, 0)
    assert vendor.options["ping_interval"] == 10.0 and vendor.options["ping_timeout"] == 20.0


def test_each_batch_keeps_the_frames_it_was_parsed_from_as_read():
    frames = [trades_frame("1", "2"), b'[{"ev":"T","sym":"AA', trades_frame("3")]
    vendor = FakePolygon(data=[frames])

    async def scenario():
        conn = connection(vendor)
        await conn.subscribe(["trades"], ["AAPL"])
        kept: list[bytes] = []
        received: list[int] = []
        async for batch in conn.batches(max_rows=1000, max_delay_s=0.01):
            kept += batch.frames
            received += batch.frames_received_ns
            if frames[-1] in kept:
                break
        await conn.close()
        return kept, received

    kept, received = run(scenario())
    assert [f for f in kept if f in frames] == frames  # beside the vendor's status frames
    assert len(received) == len(kept) and received == sorted(received)


def test_a_dropped_socket_is_reconnected_and_resubscribed():
    vendor = FakePolygon(data=[[trades_frame("1")], [trades_frame("2")]])
    connected = []

    async def scenario():
        conn = connection(vendor)
        conn.on_connected = connected.append
        await conn.subscribe(["trades"], ["AAPL"])
        ids = []
        async for batch in conn.batches(max_rows=1000, max_delay_s=0.01):
            ids += batch.trades["trade_id"].tolist()
            if ids == ["1"]:
                vendor.sockets[0].drop()
            if len(ids) >= 2:
                break
        await conn.close()
        return ids, conn.stats()

    ids, stats = run(scenario())
    assert ids == ["1", "2"]
    assert [s.sent for s in vendor.sockets] == [
        [{"action": "auth", "params": "KEY"}, {"action": "subscribe", "params": "T.AAPL"}]
    ] * 2
    assert [c.number for c in connected] == [1, 2]
    assert (stats.connects, stats.reconnects) == (2, 1)
    assert "disconnected" in (stats.last_error or "")


def test_subscriptions_change_while_connected_and_only_the_current_ones_are_replayed():
    vendor = FakePolygon(data=[[trades_frame("1")], [trades_frame("2")]])

    async def scenario():
        conn = connection(vendor)
        await conn.subscribe(["trades"], ["AAPL"])
        ids, changed = [], False
        async for batch in conn.batches(max_rows=1000, max_delay_s=0.01):
            ids += batch.trades["trade_id"].tolist()
            if ids == ["1"] and not changed:  # once: the new connection's acks may come in a batch of their own
                changed = True
                await conn.subscribe(["quotes"], ["MSFT"])
                await conn.unsubscribe(["trades"], ["AAPL"])
                vendor.sockets[0].drop()
            if len(ids) >= 2:
                break
        await conn.close()
        return conn.subscriptions

    subscriptions = run(scenario())
    first, second = vendor.sockets[0].sent, vendor.sockets[1].sent
    assert first[2:] == [
        {"action": "subscribe", "params": "Q.MSFT"},
        {"action": "unsubscribe", "params": "T.AAPL"},
    ]
    assert second[1:] == [{"action": "subscribe", "params": "Q.MSFT"}]
    assert subscriptions == {"quotes": frozenset({"MSFT"})}


def test_a_rejected_key_is_a_clear_error_and_is_not_retried():
    vendor = FakePolygon(auth="fail")
    breaker = CircuitBreaker("polygon", failure_threshold=1)

    async def scenario():
        conn = connection(vendor, breaker)
        await conn.subscribe(["trades"], ["AAPL"])
        with pytest.raises(PermanentSourceError, match=r"rejected the credentials.*vendors\.polygon\.api_key"):
            await collect_trades(conn, 1)
        await asyncio.sleep(0.1)  # a retry, if any, would have happened by now (backoff 0.01 s)
        await conn.close()

    run(scenario())
    assert vendor.attempts == 1
    assert breaker.state is BreakerState.CLOSED  # the vendor answered: no outage


class FakeAlpaca(FakePolygon):
    """Alpaca's handshake: welcome, auth (accepted, or refused with ``auth_error``), a subscription
    ack (or ``subscribe_error``), then the frames ``data`` gives."""

    def __init__(self, *, auth_error=None, subscribe_error=None, data=()):
        super().__init__(data=data)
        self.auth_error = auth_error
        self.subscribe_error = subscribe_error

    async def connect(self, url, **options):
        self.attempts += 1
        socket = FakeSocket(self)
        self.sockets.append(socket)
        socket.inbox.put_nowait(orjson.dumps([{"T": "success", "msg": "connected"}]))
        return socket

    def answer(self, socket, message):
        def reply(*messages):
            socket.inbox.put_nowait(orjson.dumps(list(messages)))

        if message["action"] == "auth":
            reply(self.auth_error or {"T": "success", "msg": "authenticated"})
        elif message["action"] == "subscribe":
            reply({"T": "subscription", "trades": message.get("trades", [])})
            for frame in self.data[0] if self.data else ():
                socket.inbox.put_nowait(frame)
            if self.subscribe_error is not None:
                reply(self.subscribe_error)


def alpaca_connection(vendor):
    return StreamConnection(
        ALPACA,
        "ws://127.0.0.1:1/v2/sip",
        api_key="KEY",
        secret_key="SECRET",
        streaming=streaming(),
        connect=vendor.connect,
        rng=random.Random(0),
    )


def alpaca_trades(*ids):
    return orjson.dumps(
        [{"T": "t", "S": "AAPL", "i": i, "x": "V", "p": 1.5, "s": 10, "t": "2024-06-03T13:30:00Z"} for i in ids]
    )


def test_an_insufficient_subscription_at_auth_is_a_clear_error_and_is_not_retried():
    vendor = FakeAlpaca(auth_error={"T": "error", "code": 409, "msg": "insufficient subscription"})

    async def scenario():
        conn = alpaca_connection(vendor)
        await conn.subscribe(["trades"], ["AAPL"])
        with pytest.raises(PermanentSourceError, match=r"insufficient subscription.*code 409.*feed=iex") as raised:
            await collect_trades(conn, 1)
        await asyncio.sleep(0.1)  # a retry, if any, would have happened by now (backoff 0.01 s)
        await conn.close()
        return raised.value

    error = run(scenario())
    assert vendor.attempts == 1 and error.status_code == 409


def test_a_symbol_limit_after_subscribing_ends_the_stream_after_the_frames_read_before_it():
    vendor = FakeAlpaca(
        data=[[alpaca_trades(1, 2)]], subscribe_error={"T": "error", "code": 405, "msg": "symbol limit exceeded"}
    )

    async def scenario():
        conn = alpaca_connection(vendor)
        await conn.subscribe(["trades"], ["AAPL"])
        ids: list[str] = []
        with pytest.raises(PermanentSourceError, match=r"symbol limit exceeded.*code 405.*fewer symbols"):
            async for batch in conn.batches(max_rows=1000, max_delay_s=0.01):
                ids += batch.trades["trade_id"].tolist()
        await asyncio.sleep(0.1)
        return ids, conn.stats()

    ids, stats = run(scenario())
    assert ids == ["1", "2"]
    assert vendor.attempts == 1 and "code 405" in (stats.last_error or "")


def test_the_connection_limit_pauses_long_instead_of_reconnecting():
    vendor = FakePolygon(auth="limit")

    async def scenario():
        conn = connection(vendor, connection_limit_pause_seconds=60.0)
        await conn.subscribe(["trades"], ["AAPL"])
        conn.start()
        for _ in range(500):
            if conn.stats().connection_limits:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # twenty base backoffs: a storm would reconnect here
        stats = conn.stats()
        await conn.close()  # the pause is interruptible
        return stats

    stats = run(scenario())
    assert vendor.attempts == 1
    assert stats.connection_limits == 1 and stats.connects == 0
    assert "Maximum number of connections" in (stats.last_error or "")


def test_failed_connects_are_retried_and_count_against_the_shared_breaker():
    vendor = FakePolygon(data=[[trades_frame("1")]], fail_connects=2)
    breaker = CircuitBreaker("polygon", failure_threshold=5)
    seen = []

    async def observing(url, **options):
        seen.append(breaker.consecutive_failures)
        return await vendor.connect(url, **options)

    async def scenario():
        conn = connection(vendor, breaker, connect=observing)
        await conn.subscribe(["trades"], ["AAPL"])
        ids = await collect_trades(conn, 1)
        await conn.close()
        return ids

    assert run(scenario()) == ["1"]
    assert seen == [0, 1, 2]  # each refused connect was a failure of the vendor
    assert breaker.consecutive_failures == 0  # the authenticated connection closed the breaker


def test_a_socket_that_sends_nothing_is_reconnected_after_the_data_idle_timeout():
    vendor = FakePolygon(data=[[], [trades_frame("1")]])

    async def scenario():
        conn = connection(vendor, data_idle_timeout_seconds=0.2)
        await conn.subscribe(["trades"], ["AAPL"])
        ids = await collect_trades(conn, 1)
        await conn.close()
        return ids, conn.stats()

    ids, stats = run(scenario())
    assert ids == ["1"]
    assert stats.idle_timeouts == 1 and stats.connects == 2
    assert vendor.sockets[0].closed


def test_close_drains_the_frames_already_read_then_ends():
    vendor = FakePolygon(data=[[trades_frame(str(i)) for i in range(5)]])

    async def scenario():
        conn = connection(vendor)
        await conn.subscribe(["trades"], ["AAPL"])
        conn.start()
        for _ in range(500):
            if conn.stats().received >= 6:  # the ack and five trade frames
                break
            await asyncio.sleep(0.01)
        await conn.close()
        ids = []
        async for batch in conn.batches(max_rows=2, max_delay_s=0.01):
            ids += batch.trades["trade_id"].tolist()
        return ids, conn.stats()

    ids, stats = run(scenario())
    assert ids == ["0", "1", "2", "3", "4"]
    assert stats.parsed == stats.received == 6 and not stats.connected


# -- wiring from settings -------------------------------------------------------------------------


def test_stream_urls_follow_the_rest_routing():
    routed = Settings(sandbox={"port": 9999})
    assert stream_url(routed, POLYGON) == "ws://127.0.0.1:9999/stocks"
    assert open_stream(routed, "alpaca", feed="sip").url == "ws://127.0.0.1:9999/v2/sip"
    assert open_stream(routed, "alpaca").url == "ws://127.0.0.1:9999/v2/iex"
    local = Settings(vendors={"polygon": {"api_key": "k", "base_url": "http://127.0.0.1:8000"}})
    assert open_stream(local, "polygon").url == "ws://127.0.0.1:8000/stocks"
    vendor = Settings(sandbox={"route_vendors": False}, vendors={"polygon": {"api_key": "k"}})
    assert open_stream(vendor, "polygon").url == "wss://socket.polygon.io/stocks"
    explicit = Settings(vendors={"alpaca": {"api_key": "k", "secret_key": "s", "stream_url": "ws://h:1/v2/{feed}"}})
    assert open_stream(explicit, "alpaca", feed="test").url == "ws://h:1/v2/test"


def test_open_stream_refuses_unknown_sources_feeds_and_missing_keys():
    settings = Settings(sandbox={"route_vendors": False})
    with pytest.raises(RequestError, match="yahoo"):
        open_stream(settings, "yahoo")
    with pytest.raises(RequestError, match="iex, sip, test"):
        open_stream(Settings(), "alpaca", feed="otc")
    with pytest.raises(ConfigurationError, match="MARKETPIPE_VENDORS__POLYGON__API_KEY"):
        open_stream(settings, "polygon")


def test_subscriptions_name_known_datasets_and_at_least_one_symbol():
    async def scenario():
        conn = connection(FakePolygon())
        with pytest.raises(RequestError, match="trades, quotes, bars"):
            await conn.subscribe(["news"], ["AAPL"])
        with pytest.raises(RequestError, match="at least one symbol"):
            await conn.subscribe(["trades"], [])

    run(scenario())


def test_a_trade_stamped_in_the_future_is_dead_lettered_and_counted_not_yielded():
    ahead_ms = time.time_ns() // 1_000_000 + 3_600_000  # an hour after the wall clock: a bad print
    future = orjson.dumps([{"ev": "T", "sym": "AAPL", "i": "2", "x": 4, "p": 1.5, "s": 10, "t": ahead_ms, "z": 3}])
    vendor = FakePolygon(data=[[trades_frame("1"), future, trades_frame("3")]])

    async def scenario():
        conn = connection(vendor)
        await conn.subscribe(["trades"], ["AAPL"])
        ids: list[str] = []
        dead = []
        async for batch in conn.batches(max_rows=1000, max_delay_s=0.01):
            ids += batch.trades["trade_id"].tolist()
            dead += batch.dead
            if "3" in ids:
                break
        await conn.close()
        return ids, dead, conn.stats()

    ids, dead, stats = run(scenario())
    assert ids == ["1", "3"]
    assert [orjson.loads(letter.raw)["trade_id"] for letter in dead] == ["2"]
    assert dead[0].reason.startswith("bad timestamp: trade of AAPL stamped")
    assert (stats.future_events, stats.malformed) == (1, 1)


def test_a_batch_mostly_stamped_in_the_future_marks_the_connection_with_when_and_its_share():
    """A host clock behind the vendor's: the connection's counters say so (health names the stream)."""
    ahead_ms = time.time_ns() // 1_000_000 + 3_600_000
    future = orjson.dumps(
        [
            {"ev": "T", "sym": "AAPL", "i": f"f{k}", "x": 4, "p": 1.5, "s": 10, "t": ahead_ms + k, "z": 3}
            for k in range(3)
        ]
    )
    vendor = FakePolygon(data=[[future, trades_frame("3")]])

    async def scenario():
        conn = connection(vendor)
        await conn.subscribe(["trades"], ["AAPL"])
        ids: list[str] = []
        async for batch in conn.batches(max_rows=1000, max_delay_s=0.5):
            ids += batch.trades["trade_id"].tolist()
            if "3" in ids:
                break
        await conn.close()
        return conn.stats()

    stats = run(scenario())
    assert stats.future_events == 3
    assert stats.future_heavy_ns is not None and stats.future_heavy_share is not None
    assert stats.future_heavy_share > 0.5


def test_a_lone_future_print_in_a_batch_is_no_clock():
    ahead_ms = time.time_ns() // 1_000_000 + 3_600_000
    good = [
        {"ev": "T", "sym": "AAPL", "i": i, "x": 4, "p": 1.5, "s": 10, "t": 1_717_421_400_000, "z": 3} for i in "145"
    ]
    one_frame = orjson.dumps(
        [*good, {"ev": "T", "sym": "AAPL", "i": "2", "x": 4, "p": 1.5, "s": 10, "t": ahead_ms, "z": 3}]
    )
    vendor = FakePolygon(data=[[one_frame, trades_frame("3")]])  # a batch holds a frame whole

    async def scenario():
        conn = connection(vendor)
        await conn.subscribe(["trades"], ["AAPL"])
        ids: list[str] = []
        async for batch in conn.batches(max_rows=1000, max_delay_s=0.5):
            ids += batch.trades["trade_id"].tolist()
            if "3" in ids:
                break
        await conn.close()
        return conn.stats()

    stats = run(scenario())
    assert stats.future_events == 1 and stats.future_heavy_ns is None
