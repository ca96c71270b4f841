"""The pure half of a live stream: what a parse produces (:class:`StreamBatch` and its parts), a
vendor's wire format as a :class:`StreamProtocol` of pure functions, and the columnar helpers the
vendor parsers (``sources/<vendor>/stream.py``) share. No I/O: the connection is :mod:`sources.stream`.

Performance (the stream's budget is ~10 µs per message from socket to committed row): one
``orjson.loads`` per frame; messages grouped by type in one pass; each field transposed by one
C-level ``itemgetter`` pass and typed by one numpy or Arrow call (ids cast to strings, condition
lists joined by ``binary_join``, RFC 3339 parsed by Arrow); no Python object per message past that;
the cyclic collector paused while a parse allocates. A malformed message, or a trade or quote
lacking a field of its key (which the hot store would refuse, and the micro-batch with it), sends
its group down a slow path that checks each message and dead-letters the bad ones alone.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core import model
from core.errors import RequestError

DATASETS = ("trades", "quotes", "bars")
#: Datasets with an endpoint of their own (Alpaca's news stream, ``/v1beta1/news``).
NEWS_DATASETS = ("news",)

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
    slow_consumer), plan_limit (what the key's plan refuses for good: Alpaca 405 symbol limit, 409
    insufficient subscription; ``message`` says what to do), error, or status (anything else the
    vendor says)."""

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
    news: pd.DataFrame = field(default_factory=lambda: model.empty_frame(model.NEWS))  # Alpaca n, as REST parses
    # The frames this batch was parsed from, as read (set by the connection): dead-lettered as they
    # came if the hot store refuses the batch.
    frames: tuple[bytes, ...] = ()
    frames_received_ns: tuple[int, ...] = ()
    future: int = 0  # rows stamped past their receive time plus the allowed skew (dead, in ``dead``)

    @property
    def rows(self) -> int:
        frames = (self.trades, self.quotes, self.bars, self.corrections, self.cancels, self.news)
        return sum(len(f) for f in frames)

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


@dataclass(frozen=True)
class Wire:
    """How a vendor spells the messages both vendors share: trades (``p s x i c z``), quotes (``bp bs bx
    ap as ax c z``) and minute bars (``o h l c v vw n``) use the same keys at Polygon and Alpaca; the
    symbol key, the bar's time key and the time encoding differ."""

    source: str
    symbol: str  # Polygon "sym", Alpaca "S"
    bar_time: str  # Polygon "s" (window start), Alpaca "t"
    times: Callable[[Sequence[Any]], pd.Series]  # a time column from its wire values
    time: str = "t"

    def check(self, *keys: str) -> Callable[[Any], str | None]:
        """The per-message check of the slow path: ``keys`` present and not null, the symbol a string."""

        def check(message: Any) -> str | None:
            reason = missing_keys(message, (self.symbol, *keys))
            if reason is None and not isinstance(message[self.symbol], str):
                reason = f"{self.symbol!r} is {type(message[self.symbol]).__name__}, not a string"
            return reason

        return check


def trades_frame(messages: list[Any], wire: Wire) -> pd.DataFrame:
    if not messages:
        return model.empty_frame(model.TRADES)
    f = fields(messages, (wire.symbol, wire.time, "p", "s"), ("x", "i", "c", "z"))
    return columns_frame(
        model.TRADES,
        {
            "symbol": symbol_column(f[wire.symbol]),
            "ts": wire.times(f[wire.time]),
            "price": float_column(f["p"]),
            "size": int_column(f["s"]),
            "exchange": str_column(f["x"]),
            "trade_id": str_column(f["i"]),
            "conditions": conditions_column(f["c"]),
            "tape": str_column(f["z"]),
            "source": constant_column(wire.source, len(messages)),
        },
    )


def quotes_frame(messages: list[Any], wire: Wire) -> pd.DataFrame:
    if not messages:
        return model.empty_frame(model.QUOTES)
    f = fields(messages, (wire.symbol, wire.time, "bp", "ap"), ("bs", "bx", "as", "ax", "c", "z"))
    return columns_frame(
        model.QUOTES,
        {
            "symbol": symbol_column(f[wire.symbol]),
            "ts": wire.times(f[wire.time]),
            "bid_price": float_column(f["bp"]),
            "bid_size": int_column(with_default(f["bs"], 0)),
            "bid_exchange": str_column(f["bx"]),
            "ask_price": float_column(f["ap"]),
            "ask_size": int_column(with_default(f["as"], 0)),
            "ask_exchange": str_column(f["ax"]),
            "conditions": conditions_column(f["c"]),
            "tape": str_column(f["z"]),
            "source": constant_column(wire.source, len(messages)),
        },
    )


def minute_bars_frame(messages: list[Any], wire: Wire) -> pd.DataFrame:
    """The vendor's own minute bars (Polygon ``AM``, Alpaca ``b``/``u``), stamped at the minute's start."""
    if not messages:
        return model.empty_frame(model.BARS)
    f = fields(messages, (wire.symbol, wire.bar_time, "o", "h", "l", "c", "v"), ("vw", "n"))
    return columns_frame(
        model.BARS,
        {
            "symbol": symbol_column(f[wire.symbol]),
            "ts": wire.times(f[wire.bar_time]),
            "timeframe": constant_column("1min", len(messages)),
            "open": float_column(f["o"]),
            "high": float_column(f["h"]),
            "low": float_column(f["l"]),
            "close": float_column(f["c"]),
            "volume": int_column(f["v"]),
            "vwap": optional_float_column(f["vw"]),
            "trade_count": optional_count_column(f["n"]),
            "source": constant_column(wire.source, len(messages)),
        },
    )


def shared_frames(
    wire: Wire,
    trades: tuple[list[Any], list[int]],
    quotes: tuple[list[Any], list[int]],
    bars: tuple[list[Any], list[int]],
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, pd.DataFrame, list[DeadFrame]]:
    """Trades (with each kept row's receive time), quotes and minute bars of grouped messages, and
    the messages that could not be read."""
    trade_frame, dead, trade_ns = build_checked(
        trades[0],
        trades[1],
        lambda ms: trades_frame(ms, wire),
        wire.check(wire.time, "p", "s"),
        "trade",
        key=model.TRADE_KEY,
    )
    quote_frame, bad, _ = build_checked(
        quotes[0],
        quotes[1],
        lambda ms: quotes_frame(ms, wire),
        wire.check(wire.time, "bp", "ap"),
        "quote",
        key=model.QUOTE_KEY,
    )
    dead += bad
    bar_keys = (wire.bar_time, "o", "h", "l", "c", "v")
    bar_frame, bad, _ = build_checked(
        bars[0], bars[1], lambda ms: minute_bars_frame(ms, wire), wire.check(*bar_keys), "bar"
    )
    dead += bad
    return trade_frame, np.asarray(trade_ns, dtype=np.int64), quote_frame, latest_bars(bar_frame), dead


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
    *,
    key: Sequence[str] = (),
) -> tuple[pd.DataFrame, list[DeadFrame], list[int]]:
    """Columns of ``messages`` in one pass; when that fails, or leaves a column of the row's ``key``
    null (the hot store refuses such a row, and with it the whole micro-batch), each message is
    checked, the bad ones become dead (re-serialized, with the reason) and the rest are built.
    Returns the frame, the dead and the received times of the rows kept."""
    try:
        built = build(messages)
    except _BUILD_ERRORS:
        pass
    else:
        if not _null_key_columns(built, key):
            return built, [], received_ns
    good: list[Any] = []
    kept: list[int] = []
    dead: list[DeadFrame] = []
    for message, ns in zip(messages, received_ns, strict=True):
        reason = check(message)
        if reason is None:
            try:
                nulls = _null_key_columns(build([message]), key)
            except _BUILD_ERRORS as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if nulls:
                    reason = f"no {', '.join(nulls)}, part of a {what}'s key {tuple(key)}: the hot store refuses it"
        if reason is None:
            good.append(message)
            kept.append(ns)
        else:
            dead.append(DeadFrame(message_text(message), f"malformed {what}: {reason}", ns))
    return build(good), dead, kept


def _null_key_columns(rows: pd.DataFrame, key: Sequence[str]) -> list[str]:
    """The columns of ``key`` that are null in some row of ``rows``."""
    return [column for column in key if rows[column].isna().any()]


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
    datasets: tuple[str, ...] = DATASETS  # what this endpoint streams
    # Trades, quotes and bars stamped more than this after they were received are refused
    # (:func:`refuse_future`); None: not checked (see :meth:`bounded`).
    max_event_skew_ns: int | None = None

    def bounded(self, max_event_skew_s: float) -> StreamProtocol:
        """This protocol refusing rows stamped more than ``max_event_skew_s`` after they were received."""
        return replace(self, max_event_skew_ns=round(max_event_skew_s * 1e9))

    def parse_frames(self, frames: Sequence[bytes], received_ns: Sequence[int]) -> StreamBatch:
        """Frames -> one batch (pure): ``orjson.loads`` per frame, then column by column."""
        with no_cyclic_gc():
            return self.build(decode_frames(frames, received_ns))

    def build(self, decoded: Decoded) -> StreamBatch:
        with no_cyclic_gc():
            batch = self.build_batch(decoded)
        if self.max_event_skew_ns is None or not decoded.received_ns:
            return batch
        return refuse_future(batch, max(decoded.received_ns), self.max_event_skew_ns)


# Future-stamped rows of one batch dead-lettered one by one up to this many; past it, in one letter
# holding them all: a host clock behind the vendor's refuses every row, thousands a second.
FUTURE_LETTERS_PER_BATCH = 10


def refuse_future(batch: StreamBatch, newest_received_ns: int, max_skew_ns: int) -> StreamBatch:
    """``batch`` without the trades, quotes and vendor bars stamped more than ``max_skew_ns`` after
    they were received (trades: their own frame's receive time; quotes and bars: the newest frame of
    the batch): those become dead, with the reason (one letter each, or past
    ``FUTURE_LETTERS_PER_BATCH`` one letter holding them all; ``future`` counts rows). Nothing is
    stamped after it happened, so such a row is a bad timestamp (a vendor's bad print, a skewed
    clock); let through, it would move the stream's event clock ahead and with it close every open
    bar window early and make every later trade of every symbol "late" (dropped past the correction
    horizon)."""
    refused: list[tuple[pd.DataFrame, np.ndarray, str]] = []
    received_ns = np.asarray(batch.received_ns, dtype=np.int64)
    trades = batch.trades
    if not trades.empty:
        per_row = len(received_ns) == len(trades)
        received = received_ns if per_row else np.full(len(trades), newest_received_ns, dtype=np.int64)
        ahead = _nanoseconds(trades["ts"]) > received + max_skew_ns
        if ahead.any():
            refused.append((trades[ahead], received[ahead], "trade"))
            trades = trades[~ahead].reset_index(drop=True)
            if per_row:
                received_ns = received_ns[~ahead]
    parts: dict[str, pd.DataFrame] = {}
    for name, what in (("quotes", "quote"), ("bars", "minute bar")):
        rows: pd.DataFrame = getattr(batch, name)
        if rows.empty:
            continue
        ahead = _nanoseconds(rows["ts"]) > newest_received_ns + max_skew_ns
        if ahead.any():
            refused.append((rows[ahead], np.full(int(ahead.sum()), newest_received_ns, dtype=np.int64), what))
            parts[name] = rows[~ahead].reset_index(drop=True)
    if not refused:
        return batch
    count = sum(len(rows) for rows, _, _ in refused)
    if count <= FUTURE_LETTERS_PER_BATCH:
        dead = [letter for rows, at, what in refused for letter in _future_rows(rows, at, what, max_skew_ns)]
    else:
        dead = [_future_letter(refused, count, max_skew_ns)]
    return replace(
        batch,
        trades=trades,
        received_ns=received_ns,
        dead=[*batch.dead, *dead],
        future=batch.future + count,
        **parts,
    )


def _future_letter(refused: list[tuple[pd.DataFrame, np.ndarray, str]], count: int, max_skew_ns: int) -> DeadFrame:
    """One dead letter for the many future-stamped rows of a batch: the rows as parsed (JSON, all of
    them) and a reason summarising them (how many, first and last stamps, when received, the setting)."""
    records = [_future_record(row, what) for rows, _, what in refused for row in rows.to_dict("records")]
    stamps = pd.DatetimeIndex(pd.concat([rows["ts"] for rows, _, _ in refused], ignore_index=True))
    received = np.concatenate([at for _, at, _ in refused])
    first_at, last_at = pd.Timestamp(int(received.min()), tz="UTC"), pd.Timestamp(int(received.max()), tz="UTC")
    kinds = ", ".join(f"{len(rows)} {what}(s)" for rows, _, what in refused)
    ahead = (stamps.max() - first_at).total_seconds()
    reason = (
        f"bad timestamps: {count} rows of one micro-batch ({kinds}) stamped {stamps.min().isoformat()} to "
        f"{stamps.max().isoformat()}, up to {ahead:.3f} s after they were received ({first_at.isoformat()} to "
        f"{last_at.isoformat()}); streaming.max_event_skew_seconds allows {max_skew_ns / 1e9:g} s. Kept out of "
        "the bar windows, all of them in this letter's payload (rows). So many at once is most likely this "
        "host's clock running behind the vendor's: check its time sync (NTP: timedatectl, chronyc tracking), "
        "or raise streaming.max_event_skew_seconds"
    )
    payload = orjson.dumps(
        {
            "kind": "future-stamped rows",
            "count": count,
            "first_ts": stamps.min().isoformat(),
            "last_ts": stamps.max().isoformat(),
            "received_from": first_at.isoformat(),
            "received_to": last_at.isoformat(),
            "max_event_skew_seconds": max_skew_ns / 1e9,
            "rows": records,
        },
        default=str,
    )
    return DeadFrame(payload, reason, int(received.min()))


def _future_record(row: dict[str, Any], what: str) -> dict[str, Any]:
    fields_ = {key: None if pd.isna(value) else value for key, value in row.items()}
    return {"kind": what, **fields_, "ts": pd.Timestamp(row["ts"]).isoformat()}


def _nanoseconds(ts: pd.Series) -> np.ndarray:
    return np.asarray(ts.dt.as_unit("ns").array.asi8, dtype=np.int64)


def _future_rows(rows: pd.DataFrame, received_ns: np.ndarray, what: str, max_skew_ns: int) -> list[DeadFrame]:
    """Dead letters of rows stamped in the future: the row as parsed (JSON) and why it was refused."""
    dead = []
    for row, ns in zip(rows.to_dict("records"), received_ns.tolist(), strict=True):
        ts = pd.Timestamp(row["ts"])
        at = pd.Timestamp(ns, tz="UTC")
        reason = (
            f"bad timestamp: {what} of {row['symbol']} stamped {ts.isoformat()}, "
            f"{(ts - at).total_seconds():.3f} s after it was received ({at.isoformat()}); "
            f"streaming.max_event_skew_seconds allows {max_skew_ns / 1e9:g} s. Kept out of the bar windows "
            "(it would close every open window early); if this host's clock runs behind the vendor's, "
            "fix its time sync or raise streaming.max_event_skew_seconds"
        )
        payload = orjson.dumps(_future_record(row, what), default=str)
        dead.append(DeadFrame(payload, reason, ns))
    return dead


def check_datasets(source: str, datasets: Collection[str], allowed: Collection[str] = DATASETS) -> list[str]:
    wanted = [d.strip() for d in datasets if d and d.strip()]
    unknown = sorted(set(wanted) - set(allowed))
    if unknown or not wanted:
        raise RequestError(
            f"{source} stream: unknown dataset(s) {unknown or list(datasets)}; choose from {', '.join(allowed)}"
        )
    return wanted
