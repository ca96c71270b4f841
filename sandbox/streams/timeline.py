"""What one symbol's session streams, and when: vendor-neutral event tables over the REST market.

For a (symbol, session) every channel is a table of rows plus the market instant each row becomes
due, sorted by that instant: trades and quotes at their own time, a minute bar when its minute
ends, a second aggregate when its second ends, the running daily bar at every minute end. The tick
faults that change *which* events exist (late trades, corrections, cancels) are applied here,
seeded by (seed, symbol, session), so a chunk of the timeline can be built on its own and always
looks the same. The vendor modules render rows into wire messages.

Invariants (tested): the trade rows minus the cancelled extras, with corrections applied, are
`Market.trades`; the minute rows are `Market.minute_bars` (raw, as REST serves them with
`adjusted=false` / `adjustment=raw`, which equals the adjusted bars after a symbol's last split).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sandbox.market import Market
from sandbox.prices import Bars, round_price
from sandbox.streams.faults import drawn
from sandbox.ticks import Quotes, Trades

NS = 1_000_000_000
MINUTE_NS = 60 * NS
#: Alpaca ids of the extra trades that get cancelled, and of the wrong first prints that get corrected.
CANCELLED_ID_BASE = 1_000_000_000
CORRECTED_ID_BASE = 2_000_000_000
#: A correction or cancel follows its trade by this much market time.
AMEND_DELAY_NS = NS
CHANNELS = ("trades", "quotes", "bars", "seconds", "updatedBars", "dailyBars", "corrections", "cancels")


@dataclass(frozen=True)
class TickFaults:
    """The settings that change which events exist (all zero = the plain REST market)."""

    seed: int = 0
    late: float = 0.0
    late_s: float = 5.0
    corrections: float = 0.0
    cancels: float = 0.0


@dataclass(frozen=True)
class TradeRows:
    """Trades as streamed: the REST trades (corrected ones first printed wrong) plus cancelled extras."""

    t_ns: np.ndarray
    price: np.ndarray
    size: np.ndarray
    exchange: np.ndarray
    sequence: np.ndarray  # REST sequence (Polygon `q`, Alpaca REST `i`); extras copy their twin's
    alpaca_id: np.ndarray  # REST `i`, or a CANCELLED_/CORRECTED_ID_BASE id

    def take(self, index: np.ndarray) -> TradeRows:
        return TradeRows(*(getattr(self, f)[index] for f in TradeRows.__dataclass_fields__))


@dataclass(frozen=True)
class Amends:
    """Corrections (`c`) or cancels (`x`) of trades, one row each."""

    t_ns: np.ndarray
    exchange: np.ndarray
    old_id: np.ndarray
    old_price: np.ndarray
    size: np.ndarray
    new_id: np.ndarray  # corrections only (the REST id)
    new_price: np.ndarray  # corrections only (the REST price)

    def take(self, index: np.ndarray) -> Amends:
        return Amends(*(getattr(self, f)[index] for f in Amends.__dataclass_fields__))


@dataclass(frozen=True)
class Aggregates:
    """Bars with the running session figures Polygon attaches (accumulated volume, session VWAP)."""

    bars: Bars
    accumulated_volume: np.ndarray
    session_vwap: np.ndarray
    session_open: float


@dataclass(frozen=True)
class SymbolDay:
    symbol: str
    session: int
    tape: int
    midnight_ns: int
    trades: TradeRows
    quotes: Quotes
    minutes: Aggregates
    seconds: Aggregates
    daily: Bars  # the session so far, one row per minute end
    corrections: Amends
    cancels: Amends
    due: dict[str, np.ndarray] = field(default_factory=dict)  # channel -> due instants, sorted
    rows: dict[str, np.ndarray | None] = field(default_factory=dict)  # channel -> row index; None = in order

    def window(self, channel: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(due, row) of the events of `channel` due in [lo, hi)."""
        due = self.due[channel]
        a, b = (int(i) for i in np.searchsorted(due, [lo, hi]))
        rows = self.rows[channel]
        return due[a:b], np.arange(a, b) if rows is None else rows[a:b]

    def row_order(self, channel: str) -> np.ndarray:
        """Every row of `channel` in the order it is sent."""
        return self.window(channel, np.iinfo(np.int64).min, np.iinfo(np.int64).max)[1]

    @property
    def nbytes(self) -> int:
        """Bytes of every distinct array held (many are the market's own arrays, not copies)."""
        arrays: dict[int, int] = {}
        holders = [self.trades, self.quotes, self.minutes.bars, self.seconds.bars, self.daily]
        holders += [self.corrections, self.cancels]
        for holder in holders:
            for value in vars(holder).values():
                if isinstance(value, np.ndarray):
                    arrays[id(value)] = value.nbytes
        for table in (self.due, self.rows):
            for value in table.values():
                if value is not None:
                    arrays[id(value)] = value.nbytes
        return sum(arrays.values())


def _running(bars: Bars) -> tuple[np.ndarray, np.ndarray]:
    volume = np.cumsum(bars.volume)
    pv = np.cumsum(bars.vwap * bars.volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(volume > 0, np.round(pv / np.maximum(volume, 1), 4), bars.close)
    return volume, vwap


def second_bars(trades: Trades, session: int) -> Bars:
    """One bar per second that has trades, built from the trades (Polygon's `A` events)."""
    if len(trades) == 0:
        return Bars.empty()
    keys = trades.t_ns // NS
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    ends = np.concatenate([starts[1:], [len(keys)]]) - 1
    volume = np.add.reduceat(trades.size, starts)
    pv = np.add.reduceat(trades.price * trades.size, starts)
    return Bars(
        t_ns=keys[starts] * NS,
        open=trades.price[starts],
        high=np.maximum.reduceat(trades.price, starts),
        low=np.minimum.reduceat(trades.price, starts),
        close=trades.price[ends],
        volume=volume,
        trades=np.diff(np.concatenate([starts, [len(keys)]])),
        vwap=np.round(pv / np.maximum(volume, 1), 4),
        session=np.full(len(starts), session, dtype=np.int64),
    )


def running_daily(minutes: Bars, midnight_ns: int) -> Bars:
    """The session's daily bar as it stands at the end of each minute (Alpaca's `d` events)."""
    volume, vwap = _running(minutes)
    n = len(minutes)
    return Bars(
        t_ns=np.full(n, midnight_ns, dtype=np.int64),
        open=np.full(n, minutes.open[0] if n else 0.0),
        high=np.maximum.accumulate(minutes.high) if n else minutes.high,
        low=np.minimum.accumulate(minutes.low) if n else minutes.low,
        close=minutes.close,
        volume=volume,
        trades=np.cumsum(minutes.trades),
        vwap=vwap,
        session=minutes.session,
    )


def _aggregates(bars: Bars) -> Aggregates:
    volume, vwap = _running(bars)
    return Aggregates(bars, volume, vwap, float(bars.open[0]) if len(bars) else 0.0)


def _empty_amends() -> Amends:
    z = np.empty(0, dtype=np.int64)
    f = np.empty(0, dtype=np.float64)
    return Amends(z, z, z, f, z, z, f)


def symbol_day(market: Market, symbol: str, session: int, faults: TickFaults) -> SymbolDay:
    """Every event of `symbol` in `session`, with the tick faults applied."""
    cal = market.calendar
    midnight = int(cal.midnight_ns[session])
    if not market.exists(symbol):
        trades = Trades(*(np.empty(0, dtype=np.int64) for _ in range(5)))
        quotes = Quotes(*(np.empty(0, dtype=np.int64) for _ in range(8)))
        minutes, tape = Bars.empty(), 1
    else:
        trades, quotes = market.trades(symbol, session), market.quotes(symbol, session)
        minutes, tape = market.minute_bars(symbol, session), market.profile(symbol).tape
    n = len(trades)
    salt = (faults.seed, symbol, session)
    late = drawn(n, faults.late, *salt, "late")
    corrected = drawn(n, faults.corrections, *salt, "corrections")
    cancelled = np.flatnonzero(drawn(n, faults.cancels, *salt, "cancels"))
    late_ns = int(faults.late_s * NS)
    # Without tick faults the streamed trades are the market's own arrays (no copies: a liquid
    # symbol has over a million trades a session, and benchmarks replay many such symbols).
    trade_due = trades.t_ns + np.where(late, late_ns, 0) if late.any() else trades.t_ns
    wrong = round_price(trades.price + 0.05)
    if corrected.any() or len(cancelled):
        alpaca_id = np.where(corrected, CORRECTED_ID_BASE + trades.sequence, trades.sequence)
        rows = TradeRows(
            t_ns=np.concatenate([trades.t_ns, trades.t_ns[cancelled]]),
            price=np.concatenate([np.where(corrected, wrong, trades.price), trades.price[cancelled]]),
            size=np.concatenate([trades.size, trades.size[cancelled]]),
            exchange=np.concatenate([trades.exchange, trades.exchange[cancelled]]),
            sequence=np.concatenate([trades.sequence, trades.sequence[cancelled]]),
            alpaca_id=np.concatenate([alpaca_id, CANCELLED_ID_BASE + trades.sequence[cancelled]]),
        )
        all_due = np.concatenate([trade_due, trade_due[cancelled]])
    else:
        alpaca_id = trades.sequence
        rows = TradeRows(trades.t_ns, trades.price, trades.size, trades.exchange, trades.sequence, trades.sequence)
        all_due = trade_due

    fixed = np.flatnonzero(corrected)
    corrections = Amends(
        t_ns=trades.t_ns[fixed],
        exchange=trades.exchange[fixed],
        old_id=alpaca_id[fixed],
        old_price=wrong[fixed],
        size=trades.size[fixed],
        new_id=trades.sequence[fixed],
        new_price=trades.price[fixed],
    )
    cancels = (
        Amends(
            t_ns=trades.t_ns[cancelled],
            exchange=trades.exchange[cancelled],
            old_id=CANCELLED_ID_BASE + trades.sequence[cancelled],
            old_price=trades.price[cancelled],
            size=trades.size[cancelled],
            new_id=np.zeros(len(cancelled), dtype=np.int64),
            new_price=np.zeros(len(cancelled)),
        )
        if len(cancelled)
        else _empty_amends()
    )

    minute_due = minutes.t_ns + MINUTE_NS
    seconds = second_bars(trades, session)
    # A minute whose late trades arrive after its bar was sent gets an updated bar once they are in.
    minute_of = np.searchsorted(minutes.t_ns, trades.t_ns, side="right") - 1
    updated_due = np.full(len(minutes), -1, dtype=np.int64)
    if late.any():
        np.maximum.at(updated_due, minute_of[late], trade_due[late] + 1)
    updated = np.flatnonzero(updated_due > minute_due)

    due = {
        "trades": all_due,
        "quotes": quotes.t_ns,
        "bars": minute_due,
        "seconds": seconds.t_ns + NS,
        "updatedBars": updated_due[updated],
        "dailyBars": minute_due,
        "corrections": trade_due[fixed] + AMEND_DELAY_NS,
        "cancels": trade_due[cancelled] + AMEND_DELAY_NS,
    }
    base_rows = {"updatedBars": updated}
    order_due: dict[str, np.ndarray] = {}
    order_rows: dict[str, np.ndarray | None] = {}
    for channel, d in due.items():
        d = np.asarray(d, dtype=np.int64)
        base = base_rows.get(channel)
        if len(d) < 2 or bool(np.all(d[1:] >= d[:-1])):  # already in order (the common case): no copies
            order_due[channel], order_rows[channel] = d, base
            continue
        order = np.argsort(d, kind="stable")
        order_due[channel] = d[order]
        order_rows[channel] = order if base is None else base[order]
    return SymbolDay(
        symbol=symbol,
        session=session,
        tape=tape,
        midnight_ns=midnight,
        trades=rows,
        quotes=quotes,
        minutes=_aggregates(minutes),
        seconds=_aggregates(seconds),
        daily=running_daily(minutes, midnight),
        corrections=corrections,
        cancels=cancels,
        due=order_due,
        rows=order_rows,
    )
