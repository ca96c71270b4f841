"""The vendor side of a live stream: one WebSocket per vendor and key, read into a bounded buffer and
parsed into columnar micro-batches (issue 14). Vendor-neutral; the wire format of each vendor is a
:class:`StreamProtocol` of pure functions in ``sources/<vendor>/stream.py``.

Data flow, and why it is split this way:

1. **Reader** (one task per connection): receives frames and only appends them, with their wall-clock
   receive time, to a :class:`FrameBuffer` of ``streaming.buffer_size`` frames. A slow parser or
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
once, clearly, on a rejected key. It shares its source's circuit breaker: connect failures count as
the vendor's failures, a successful authentication closes the breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from loguru import logger

from core import model
from core.errors import ConfigurationError, PermanentSourceError, RequestError, RetryableSourceError

if TYPE_CHECKING:
    from core.settings import Settings, StreamingSettings
    from sources.resilience import CircuitBreaker

DATASETS = ("trades", "quotes", "bars")

# Alpaca trade corrections: the original print (as the trade row had it) and what it becomes.
CORRECTIONS: dict[str, str] = {
    "symbol": model.STR,
    "ts": model.TS,  # the message's time
    "exchange": model.STR,
    "original_trade_id": model.STR,  # spelled like TRADES.trade_id, so it finds the trade row
    "original_price": model.F64,
    "original_size": model.I64,
    "original_conditions": model.STR,
    "corrected_trade_id": model.STR,
    "corrected_price": model.F64,
    "corrected_size": model.I64,
    "corrected_conditions": model.STR,
    "tape": model.STR,
    "source": model.STR,
}

# Alpaca trade cancels and errors: the print named by (symbol, exchange, trade_id) is void.
CANCELS: dict[str, str] = {
    "symbol": model.STR,
    "ts": model.TS,  # the message's time
    "exchange": model.STR,
    "trade_id": model.STR,
    "price": model.F64,
    "size": model.I64,
    "action": model.STR,  # C cancel, E error
    "tape": model.STR,
    "source": model.STR,
}


# ---------------------------------------------------------------------------------------------
# What a parse produces


@dataclass(frozen=True)
class DeadFrame:
    """A frame (or one message of a frame, re-serialized) the parser could not read."""

    raw: bytes
    reason: str
    received_ns: int


@dataclass(frozen=True)
class StreamEvent:
    """A control message: ``kind`` is connected, authenticated, auth_failed, subscribed, unsubscribed,
    connection_limit (Alpaca 406, Polygon max_connections), slow_consumer (Alpaca 407, Polygon
    slow_consumer), error, or status (anything else the vendor says)."""

    kind: str
    message: str
    code: int | None = None
    received_ns: int = 0


@dataclass(frozen=True)
class StreamBatch:
    """One micro-batch of parsed frames. Duplicates and out-of-order messages pass through as sent
    (the writer's idempotent keys and the windows deal with them)."""

    source: str
    trades: pd.DataFrame  # core.model.TRADES
    quotes: pd.DataFrame  # core.model.QUOTES
    bars: pd.DataFrame  # core.model.BARS: the vendor's own minute bars (Polygon AM, Alpaca b and u)
    corrections: pd.DataFrame  # CORRECTIONS
    cancels: pd.DataFrame  # CANCELS
    dead: list[DeadFrame] = field(default_factory=list)
    received_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # per trade row
    events: list[StreamEvent] = field(default_factory=list)
    ignored: int = 0  # well-formed messages of types not modelled (Polygon A, Alpaca d, statuses, ...)

    @property
    def rows(self) -> int:
        return len(self.trades) + len(self.quotes) + len(self.bars) + len(self.corrections) + len(self.cancels)

    @classmethod
    def empty(cls, source: str) -> StreamBatch:
        return cls(
            source,
            model.empty_frame(model.TRADES),
            model.empty_frame(model.QUOTES),
            model.empty_frame(model.BARS),
            model.empty_frame(CORRECTIONS),
            model.empty_frame(CANCELS),
        )


@dataclass(frozen=True)
class Decoded:
    """Frames decoded to messages (one ``orjson.loads`` per frame): the parser's first half."""

    messages: list[Any]
    received_ns: list[int]  # per message
    dead: list[DeadFrame]


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic collector paused while a parse allocates: decoded messages are acyclic, yet every
    condition list is a tracked container, and the collections they trigger cost ~40 % of a decode."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decode_frames(frames: Sequence[bytes], received_ns: Sequence[int]) -> Decoded:
    """Each frame is a JSON array of messages (a bare object counts as an array of one); a frame that
    is no JSON, or JSON of another shape, is dead with its raw bytes."""
    with no_cyclic_gc():
        return _decode(frames, received_ns)


def _decode(frames: Sequence[bytes], received_ns: Sequence[int]) -> Decoded:
    messages: list[Any] = []
    per_message: list[int] = []
    dead: list[DeadFrame] = []
    loads = orjson.loads
    for frame, ns in zip(frames, received_ns, strict=True):
        try:
            decoded = loads(frame)
        except orjson.JSONDecodeError as exc:
            dead.append(DeadFrame(bytes(frame), f"not JSON: {exc}", ns))
            continue
        if type(decoded) is dict:
            decoded = [decoded]
        elif type(decoded) is not list:
            dead.append(DeadFrame(bytes(frame), f"a frame is a JSON array, not {type(decoded).__name__}", ns))
            continue
        messages += decoded
        per_message += [ns] * len(decoded)
    return Decoded(messages, per_message, dead)


def concat_decoded(parts: Sequence[Decoded]) -> Decoded:
    if len(parts) == 1:
        return parts[0]
    messages: list[Any] = []
    received: list[int] = []
    dead: list[DeadFrame] = []
    for part in parts:
        messages += part.messages
        received += part.received_ns
        dead += part.dead
    return Decoded(messages, received, dead)


# ---------------------------------------------------------------------------------------------
# Column helpers the vendor parsers share (pure). Messages are transposed into one tuple per field
# at C speed (``operator.itemgetter``), then each column is typed by numpy or Arrow in one call.


def fields(messages: list[dict[str, Any]], required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    """Each field's values across ``messages``, one list per field (a C-level ``itemgetter`` pass per
    field). A message lacking a required field raises KeyError; an optional field absent from a
    message is None there."""
    out: dict[str, Any] = {key: list(map(itemgetter(key), messages)) for key in required}
    for key in optional:
        try:
            out[key] = list(map(itemgetter(key), messages))
        except KeyError:
            out[key] = [m.get(key) for m in messages]
    return out


def _string_series(array: pa.Array) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(array))


def str_column(values: Sequence[Any]) -> pd.Series:
    """Identifiers as strings the way the REST parsers spell them: None stays null, integers (and
    integral floats) print without a fraction, strings as sent."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if array is not None:
        if pa.types.is_string(array.type):
            return _string_series(array)
        if pa.types.is_integer(array.type) or pa.types.is_null(array.type):
            return _string_series(array.cast(pa.string()))
    out = [v if type(v) is str else (None if v is None else _id_text(v)) for v in values]
    return _string_series(pa.array(out, pa.string()))


def id_column(values: Sequence[Any]) -> pd.Series:
    """Identifiers that name a print (a correction's original, a cancel's): a null raises."""
    column = str_column(values)
    if column.isna().any():
        raise ValueError("a null identifier")
    return column


def _id_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def conditions_column(values: Sequence[Any]) -> pd.Series:
    """Condition lists comma-joined, as ``core.model.join_list_column`` does for REST (None stays
    null, an empty list is the empty string)."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if array is not None and pa.types.is_list(array.type):
        if not pa.types.is_string(array.type.value_type):
            array = array.cast(pa.list_(pa.string()))
        return _string_series(pc.binary_join(array, ","))
    if array is not None and pa.types.is_null(array.type):
        return _string_series(array.cast(pa.string()))
    out = [None if v is None else ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v) for v in values]
    return _string_series(pa.array(out, pa.string()))


def symbol_column(values: Sequence[Any]) -> pd.Series:
    """Symbols normalized with ``core.model.normalize_symbol``, once per distinct symbol."""
    array = pa.array(values, pa.string())
    if array.null_count:
        raise ValueError("a null symbol")
    distinct = pc.unique(array)
    names = distinct.to_pylist()
    canonical = [model.normalize_symbol(s) for s in names]
    if canonical != names:
        array = pa.array(canonical, pa.string()).take(pc.index_in(array, value_set=distinct))
    return _string_series(array)


def constant_column(value: str, length: int) -> pd.Series:
    return _string_series(pa.array([value], pa.string()).take(pa.array(np.zeros(length, np.int32))))


def float_column(values: Sequence[Any]) -> np.ndarray:
    """Required numbers: a null or NaN raises."""
    out = np.array(values, dtype=np.float64)
    if np.isnan(out).any():
        raise ValueError("a null or NaN number")
    return out


def optional_float_column(values: Sequence[Any]) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # None becomes NaN


def int_column(values: Sequence[Any]) -> np.ndarray:
    """Required counts (sizes, volumes), rounded as ``core.model.frame`` rounds REST counts."""
    return np.round(float_column(values)).astype(np.int64)


def optional_count_column(values: Sequence[Any]) -> pd.Series:
    return pd.Series(pd.array(np.round(optional_float_column(values)), dtype="Float64")).astype(model.NULLABLE_I64)


def epoch_column(values: Sequence[Any], unit_ns: int) -> pd.Series:
    """Unix epoch integers (``unit_ns`` nanoseconds each) as UTC timestamps."""
    ns = np.array(values, dtype=np.int64) * unit_ns
    return pd.Series(ns.view("datetime64[ns]")).dt.tz_localize("UTC")


def rfc3339_column(values: Sequence[Any]) -> pd.Series:
    """RFC 3339 strings with up to nanoseconds (``Z`` or an offset) as UTC timestamps."""
    stamps = pa.array(values, pa.string()).cast(pa.timestamp("ns", "UTC"))
    if stamps.null_count:
        raise ValueError("a null time")
    return epoch_column(stamps.cast(pa.int64()).to_numpy(), 1)


def with_default(values: Sequence[Any], default: Any) -> Sequence[Any]:
    """``values`` with None replaced by ``default`` (REST's ``raw.get(key, default)``)."""
    return [default if v is None else v for v in values] if None in values else values


def columns_frame(schema: dict[str, str], columns: dict[str, Any]) -> pd.DataFrame:
    """A frame of exactly ``schema`` from columns the parser already typed (``core.model.frame``
    without its per-column coercion, which would copy each column again)."""
    if list(columns) != list(schema):
        raise AssertionError(f"columns {list(columns)} are not the schema's {list(schema)}")
    return pd.DataFrame(columns, copy=False)


def latest_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """One bar per (symbol, minute) in a batch, the last sent: an updated bar (Alpaca ``u``) or a
    repeated one supersedes the earlier, and the writer's upsert can take the batch in one statement."""
    if len(bars) < 2:
        return bars
    repeated = bars.duplicated(["symbol", "ts"], keep="last")
    return bars[~repeated].reset_index(drop=True) if repeated.any() else bars


def message_text(message: Any) -> bytes:
    try:
        return orjson.dumps(message)
    except TypeError:
        return repr(message).encode()


_BUILD_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError, pa.ArrowException)


def build_checked(
    messages: list[Any],
    received_ns: list[int],
    build: Callable[[list[Any]], pd.DataFrame],
    check: Callable[[Any], str | None],
    what: str,
) -> tuple[pd.DataFrame, list[DeadFrame], list[int]]:
    """Columns of ``messages`` in one pass; when that fails, each message is checked, the bad ones
    become dead (re-serialized, with the reason) and the rest are built. Returns the frame, the dead
    and the received times of the rows kept."""
    try:
        return build(messages), [], received_ns
    except _BUILD_ERRORS:
        pass
    good: list[Any] = []
    kept: list[int] = []
    dead: list[DeadFrame] = []
    for message, ns in zip(messages, received_ns, strict=True):
        reason = check(message)
        if reason is None:
            try:
                build([message])
            except _BUILD_ERRORS as exc:
                reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            good.append(message)
            kept.append(ns)
        else:
            dead.append(DeadFrame(message_text(message), f"malformed {what}: {reason}", ns))
    return build(good), dead, kept


def missing_keys(message: Any, keys: Sequence[str]) -> str | None:
    if not isinstance(message, dict):
        return f"not an object: {type(message).__name__}"
    missing = [k for k in keys if message.get(k) is None]
    return f"lacks {missing}" if missing else None


# ---------------------------------------------------------------------------------------------
# A vendor's wire format


@dataclass(frozen=True)
class StreamProtocol:
    """A vendor's stream wire format, as pure functions (``sources/<vendor>/stream.py``)."""

    source: str
    default_url: str  # production endpoint; Alpaca's holds {feed}
    path: str  # the endpoint's path on a sandbox or another local server; may hold {feed}
    auth_message: Callable[[str, str | None], bytes]
    subscription_messages: Callable[[str, Collection[str], Collection[str]], list[bytes]]  # action, datasets, syms
    control_events: Callable[[bytes, int], list[StreamEvent]]  # a frame's control messages
    build_batch: Callable[[Decoded], StreamBatch]
    default_feed: str | None = None
    feeds: tuple[str, ...] = ()  # the endpoints {feed} may name (Alpaca: iex, sip, test)
    extra_headers: dict[str, str] = field(default_factory=dict)

    def parse_frames(self, frames: Sequence[bytes], received_ns: Sequence[int]) -> StreamBatch:
        """Frames -> one batch (pure): ``orjson.loads`` per frame, then column by column."""
        with no_cyclic_gc():
            return self.build(decode_frames(frames, received_ns))

    def build(self, decoded: Decoded) -> StreamBatch:
        with no_cyclic_gc():
            return self.build_batch(decoded)


def check_datasets(source: str, datasets: Collection[str]) -> list[str]:
    wanted = [d.strip() for d in datasets if d and d.strip()]
    unknown = sorted(set(wanted) - set(DATASETS))
    if unknown or not wanted:
        raise RequestError(
            f"{source} stream: unknown dataset(s) {unknown or list(datasets)}; choose from {', '.join(DATASETS)}"
        )
    return wanted


# ---------------------------------------------------------------------------------------------
# Counters


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
    malformed: int  # dead frames and dead messages
    connects: int
    reconnects: int  # connects after the first
    idle_timeouts: int  # reconnects because the socket went silent
    connection_limits: int  # 406 / max_connections met
    buffered: int  # frames waiting for the parser now
    buffer_size: int
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
    connects: int = 0
    idle_timeouts: int = 0
    connection_limits: int = 0
    last_connected_ns: int | None = None
    last_frame_ns: int | None = None
    last_error: str | None = None


# ---------------------------------------------------------------------------------------------
# The bounded buffer and its backpressure policy

# Called with the spilled frames, oldest first: a coroutine function is awaited, a plain function
# runs in a worker thread (it may block on storage).
Spill = Callable[[list[bytes]], "Awaitable[None] | None"]


class FrameBuffer:
    """Frames read ahead of the parser, at most ``capacity``. :meth:`put` waits while full (so the
    reader stops reading); past ``lag_limit_s`` of waiting it takes the oldest half out and hands it
    to ``spill`` (counted spilled; dropped when there is no spill or it raises) and returns."""

    def __init__(
        self,
        capacity: int,
        *,
        lag_limit_s: float,
        spill: Spill | None = None,
        counters: _Counters | None = None,
        source: str = "stream",
    ) -> None:
        if capacity < 1:
            raise ConfigurationError(f"streaming.buffer_size must be >= 1, got {capacity}")
        self.capacity = capacity
        self.lag_limit_s = lag_limit_s
        self.spill = spill
        self.counters = counters or _Counters()
        self.source = source
        self._frames: deque[bytes] = deque()
        self._received: deque[int] = deque()
        self._room = asyncio.Event()
        self._data = asyncio.Event()
        self._closed = False
        self.blocked = False  # the reader waits for room (the idle watchdog ignores that time)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, frame: bytes, received_ns: int) -> None:
        while len(self._frames) >= self.capacity and not self._closed:
            self._room.clear()
            self.blocked = True
            try:
                await asyncio.wait_for(self._room.wait(), timeout=self.lag_limit_s)
            except TimeoutError:
                await self._spill_oldest()
            finally:
                self.blocked = False
        self._frames.append(frame)
        self._received.append(received_ns)
        self.counters.received += 1
        self._data.set()

    async def _spill_oldest(self) -> None:
        if len(self._frames) < self.capacity:  # the parser took frames as the lag limit passed
            return
        count = max(1, len(self._frames) // 2)
        frames = [self._frames.popleft() for _ in range(count)]
        for _ in range(count):
            self._received.popleft()
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
                await self.spill(frames)
            else:  # a blocking spill (the lake's client) must not stall the event loop
                await asyncio.to_thread(self.spill, frames)
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

    def take(self, max_frames: int) -> tuple[list[bytes], list[int]]:
        """Up to ``max_frames`` frames, oldest first, without waiting."""
        n = min(max_frames, len(self._frames))
        frames = [self._frames.popleft() for _ in range(n)]
        received = [self._received.popleft() for _ in range(n)]
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
            await asyncio.wait_for(self._data.wait(), timeout=timeout)
        except TimeoutError:
            return False
        return bool(self._frames)

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
        self.protocol = protocol
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
        wanted, names = check_datasets(self.source, datasets), _symbols(self.source, symbols)
        for dataset in wanted:
            self._wanted.setdefault(dataset, set()).update(names)
        await self._send_if_open("subscribe", wanted, names)

    async def unsubscribe(self, datasets: Collection[str], symbols: Collection[str]) -> None:
        wanted, names = check_datasets(self.source, datasets), _symbols(self.source, symbols)
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
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    def _note_error(self, text: str) -> None:
        self._counters.last_error = text

    async def _open(self) -> Any:
        """Connect, read the welcome, authenticate; raises _Refused on the connection limit and
        PermanentSourceError on a rejected key."""
        connect = self._connect or _websockets_connect()
        s = self.settings
        ws = await asyncio.wait_for(
            connect(
                self.url,
                ping_interval=s.ping_interval_seconds,
                ping_timeout=s.ping_timeout_seconds,
                open_timeout=s.open_timeout_seconds,
                close_timeout=2,
                max_queue=16,  # small: a full buffer stops websockets reading the socket soon
                max_size=2**24,
                compression=None,  # loopback and LAN: inflating every frame costs more CPU than it saves
                additional_headers=self.protocol.extra_headers or None,
            ),
            timeout=s.open_timeout_seconds,
        )
        self._opening = ws  # close() during the handshake closes it too
        try:
            await asyncio.wait_for(self._authenticate(ws), timeout=s.open_timeout_seconds)
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
        its first frame, whichever comes first (nothing while no frame arrives). Ends after
        :meth:`close` once the frames already read are yielded; raises the reader's fatal error
        (a rejected key) after yielding what came before it."""
        self.start()
        buffer = self.buffer
        while True:
            if not await buffer.wait_for_data():
                break
            deadline = time.monotonic() + max_delay_s
            parts: list[Decoded] = []
            rows = 0
            while True:
                frames, received = buffer.take(256)
                if frames:
                    part = decode_frames(frames, received)
                    parts.append(part)
                    rows += len(part.messages)
                    self._counters.parsed += len(frames)
                if rows >= max_rows:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
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
            yield batch
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
            connects=c.connects,
            reconnects=max(0, c.connects - 1),
            idle_timeouts=c.idle_timeouts,
            connection_limits=c.connection_limits,
            buffered=len(self.buffer),
            buffer_size=self.buffer.capacity,
            last_connected_ns=c.last_connected_ns,
            last_frame_ns=c.last_frame_ns,
            last_error=c.last_error,
        )

    async def close(self) -> None:
        """Stop reading and close the socket; :meth:`batches` still yields the frames already read,
        then ends. Idempotent."""
        self._closing.set()
        for ws in (self._ws, self._opening):
            if ws is not None:
                await _close_quietly(ws)
        runner = self._runner
        if runner is not None and not runner.done():
            try:
                await asyncio.wait_for(asyncio.shield(runner), timeout=2.0)
            except TimeoutError:  # stuck in a connect: nothing read is lost by cancelling it
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
            except Exception:  # reported through batches()
                pass
        self.buffer.close()
        for task in list(self._hook_tasks):
            task.cancel()


# ---------------------------------------------------------------------------------------------
# Wiring from settings


def protocol_for(source: str) -> StreamProtocol:
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
) -> StreamConnection:
    """A connection of ``source`` with its credentials from settings (the same as its REST source's,
    the sandbox's placeholder when routed there). Pass the REST source's breaker
    (``source.context.resilience.breaker``) to share it. Nothing connects until ``batches``."""
    from sources.factory import source_context

    protocol = protocol_for(source)
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
