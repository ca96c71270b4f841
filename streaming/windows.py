"""Trades -> bars of the stream's window and of 1 minute, live: final, provisional, corrected.

:class:`BarWindows` is the stream service's pure core between the parser and the writer, one per
stream, fed micro-batches in any order. Its rules:

**Windows.** Each timeframe (``streaming.window_seconds`` and 60 s by default; whole seconds) cuts
time into windows aligned to the Unix epoch, like the vendors' clock-anchored bars: ``[start,
start + width)``; a bar is stamped at its window's start. Sessions need no special case: a window
exists only where trades are, the overnight gap yields no bar, and a session's last window closes
when the clock passes it (the next session's first trade, a wall clock, or :meth:`~BarWindows.flush`).

**Final vs provisional.** A window is final once its end plus the allowed lateness has passed by
the clock of :meth:`~BarWindows.advance`: the newest trade time seen (the event-time watermark) or
a later instant passed in (a wall clock; explicit, never read here). The clock never runs back.
``advance`` returns each window that became final (once), and as provisional the still-open
windows whose bar changed since the previous call; the caller stores provisional bars marked so,
and they never advance a watermark.

**Late trades (a window already final): corrected, within a horizon.** Trades of a final window
are kept ``correction_horizon_s`` longer (default 60 s). A trade arriving for a final window in
that time is added and the window's bar is emitted again, FINAL, with the new values (counted in
``late_trades`` and ``corrected_bars``); later than that it is dropped (counted in
``late_trades`` and ``dropped_late``). ``correction_horizon_s=0`` is the drop-everything policy.
Why correct: the vendors do (Alpaca's ``updatedBars``, the sandbox's ``u`` bars), and the stored
minute must equal the vendor's REST minute, which counts the late trade.

**Duplicates.** A trade is known by (symbol, trade id, exchange) while its windows are retained;
seen again (a reconnect's replay, hybrid mode's REST overlap), it is counted in ``duplicates`` and
ignored. Keys are 64-bit hashes (a false duplicate needs a hash collision among the retained
trades: about 1e-7 for 6M of them). A trade without an id is never a duplicate.

**Cancels and corrections** find their trade among the retained ones by (symbol, trade id,
exchange), or by (symbol, trade id) when no exchange is given and the id is unambiguous; its
windows are rebuilt from their trades and re-emitted (provisional, or final as a correction).
One that finds nothing (its trade released, not seen yet, or ambiguous) is counted in
``unmatched_amends`` and not kept for later: a cancel that overtakes its trade leaves the trade
counted. A cancelled trade stays known, so its replay is still a duplicate; a corrected trade
with a new id is known by both ids, and if a trade with the new id is already held (the REST
catch-up brought the corrected version first) the wrong print is voided as a duplicate. A window
left with no counted trade is reported in ``removed`` (its stored bar must go).

**Which trades count (the consolidated-tape rule).** Each trade's condition codes decide what it
updates, as the SIP plans (CTA for tapes A/B, UTP for tape C) and Polygon's aggregates do: a
regular or ISO trade sets open/high/low/close and volume; an odd lot, Form T (extended hours),
average-price, cash, next-day, seller, contingent or price-variation trade adds volume only;
out-of-sequence and prior-reference trades set high/low and volume but not open/close; official
open/close reports and cancelled or non-eligible prints count for nothing. A trade with several
conditions updates a field only if every condition allows it; no or unknown conditions count as
regular. Polygon sends numeric condition ids (:data:`POLYGON_CONDITIONS`), Alpaca the SIP letters
(:data:`SIP_CONDITIONS`), chosen by the trade's ``source``. Of the counted trades: open/close are
the first/last (by time, then arrival) of those that may set the last price, high/low the extremes
of those that may set them; volume and trade count sum the volume trades, VWAP =
sum(price * size) / volume (the close when a window has no volume). A window whose counted trades
include none that may set the last price takes all four prices from the trades it counts, so every
bar has prices. (The sandbox's trades are all regular, ``@`` or none, so every trade counts.)

**Performance.** Per batch: symbols, exchanges and condition strings are factorized (one Python
step per distinct value), trade ids hashed in bulk, and one numba kernel folds each trade into
running aggregates of its windows; only windows touched by a cancel or a correction are rebuilt
from their retained trades, which are released when their windows pass the correction horizon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ConfigurationError, DataQualityError
from core.model import BARS, NULLABLE_I64, STR, empty_frame
from streaming import kernels as k

# What each condition lets a trade update: kernels.LAST (open/close; implies high/low), HIGH_LOW,
# VOLUME (volume, VWAP, trade count). Codes not listed count as regular.
_ALL = k.LAST | k.HIGH_LOW | k.VOLUME
_HL_VOL = k.HIGH_LOW | k.VOLUME
_LAST_HL = k.LAST | k.HIGH_LOW
_VOL = k.VOLUME
_NONE = 0

#: SIP sale conditions (CTA tapes A/B, UTP tape C), as Alpaca sends them.
SIP_CONDITIONS: dict[str, int] = {
    "@": _ALL,  # regular sale
    "A": _ALL,  # acquisition
    "B": _VOL,  # CTA: average price trade (UTP tape C: bunched trade, see _UTP_OVERRIDES)
    "C": _VOL,  # cash sale
    "D": _ALL,  # distribution
    "E": _ALL,  # automatic execution
    "F": _ALL,  # intermarket sweep
    "G": _HL_VOL,  # bunched sold trade
    "H": _VOL,  # price variation trade
    "I": _VOL,  # odd lot trade
    "K": _ALL,  # rule 155 trade (NYSE American)
    "L": _ALL,  # sold last
    "M": _NONE,  # market center official close
    "N": _VOL,  # next day
    "O": _ALL,  # opening prints
    "P": _HL_VOL,  # prior reference price
    "Q": _NONE,  # market center official open
    "R": _VOL,  # seller
    "S": _ALL,  # split trade
    "T": _VOL,  # Form T (extended hours)
    "U": _VOL,  # extended trading hours, sold out of sequence
    "V": _VOL,  # contingent trade
    "W": _VOL,  # average price trade (UTP)
    "X": _ALL,  # cross trade
    "Y": _ALL,  # yellow flag regular trade
    "Z": _HL_VOL,  # sold (out of sequence)
    "1": _ALL,  # stopped stock, regular trade
    "4": _HL_VOL,  # derivatively priced
    "5": _ALL,  # re-opening prints
    "6": _ALL,  # closing prints
    "7": _VOL,  # qualified contingent trade
    "8": _ALL,  # placeholder for 611 exempt
    "9": _LAST_HL,  # corrected consolidated close (per listing market)
}
_UTP_OVERRIDES = {"B": _ALL}  # tape C (Nasdaq-listed): B is a bunched trade
_UTP_TAPES = frozenset({"C", "3"})

#: Polygon's trade condition ids (its /v3/reference/conditions, consolidated update rules).
POLYGON_CONDITIONS: dict[str, int] = {
    "0": _ALL,  # regular trade
    "1": _ALL,  # acquisition
    "2": _VOL,  # average price trade
    "3": _ALL,  # automatic execution
    "4": _ALL,  # bunched trade
    "5": _HL_VOL,  # bunched sold trade
    "6": _ALL,  # CAP election
    "7": _VOL,  # cash sale
    "8": _ALL,  # closing prints
    "9": _ALL,  # cross trade
    "10": _HL_VOL,  # derivatively priced
    "11": _ALL,  # distribution
    "12": _VOL,  # Form T (extended hours)
    "13": _VOL,  # extended trading hours, sold out of sequence
    "14": _ALL,  # intermarket sweep
    "15": _NONE,  # market center official close
    "16": _NONE,  # market center official open
    "17": _ALL,  # market center opening trade
    "18": _ALL,  # market center reopening trade
    "19": _ALL,  # market center closing trade
    "20": _VOL,  # next day
    "21": _VOL,  # price variation trade
    "22": _HL_VOL,  # prior reference price
    "23": _ALL,  # rule 155 trade (NYSE American)
    "24": _ALL,  # rule 127 (NYSE)
    "25": _ALL,  # opening prints
    "27": _ALL,  # stopped stock, regular trade
    "28": _ALL,  # re-opening prints
    "29": _VOL,  # seller
    "30": _ALL,  # sold last
    "31": _ALL,  # sold last and stopped stock
    "32": _HL_VOL,  # sold (out of sequence)
    "33": _HL_VOL,  # sold (out of sequence) and stopped stock
    "34": _ALL,  # split trade
    "35": _ALL,  # stock option
    "36": _ALL,  # yellow flag regular trade
    "37": _VOL,  # odd lot trade
    "38": _LAST_HL,  # corrected consolidated close (per listing market)
    "41": _ALL,  # trade thru exempt
    "42": _NONE,  # non-eligible
    "43": _NONE,  # non-eligible extended
    "44": _NONE,  # cancelled
    "52": _VOL,  # contingent trade
    "53": _VOL,  # qualified contingent trade
    "54": _NONE,  # errored
}


def condition_flags(conditions: str | None, source: str | None = None, tape: str | None = None) -> int:
    """What a trade with these comma-joined condition codes may update (kernels.LAST | HIGH_LOW |
    VOLUME): every condition must allow a field for the trade to update it."""
    if conditions is None or conditions is pd.NA or (isinstance(conditions, float) and np.isnan(conditions)):
        return _ALL
    table: Mapping[str, int] = POLYGON_CONDITIONS if source == "polygon" else SIP_CONDITIONS
    utp = source != "polygon" and tape is not None and tape is not pd.NA and str(tape) in _UTP_TAPES
    flags = _ALL
    for code in str(conditions).split(","):
        code = code.strip()
        if not code:
            continue
        rule = _UTP_OVERRIDES.get(code, table.get(code, _ALL)) if utp else table.get(code, _ALL)
        flags &= rule
    return flags | k.HIGH_LOW if flags & k.LAST else flags


def timeframe_name(seconds: int) -> str:
    """How a window of ``seconds`` is named in bars: ``1min``/``5min`` for whole minutes, ``5s`` otherwise
    (storage.streams.stream_timeframe reads both)."""
    return f"{seconds // 60}min" if seconds % 60 == 0 else f"{seconds}s"


@dataclass
class WindowOutput:
    """What :meth:`BarWindows.advance` and :meth:`BarWindows.flush` return. Bars are
    ``core.model.BARS`` frames (``timeframe`` names the window). Counters are running totals since
    the windows were created."""

    final: pd.DataFrame  # windows that closed, and final windows corrected since (re-emitted)
    provisional: pd.DataFrame  # open windows whose bar changed since the previous call
    late_trades: int = 0  # trades that arrived for an already-final window
    duplicates: int = 0
    corrected_bars: int = 0  # final bars emitted again (or first) after their window closed
    dropped_late: int = 0  # late trades past the correction horizon, not applied
    unmatched_amends: int = 0  # cancels and corrections that found no retained trade
    removed: pd.DataFrame = field(default_factory=lambda: empty_frame(BARS))  # bars no longer backed by a trade
    # Windows ending at or before this instant are final; None before any trade and after flush.
    closed_until: pd.Timestamp | None = None


class BarWindows:
    """Stateful across micro-batches, one per stream. See the module docstring for the rules."""

    def __init__(
        self,
        window_seconds: float,
        lateness_s: float,
        timeframes: Sequence[float] | None = None,
        source: str = "stream",
        correction_horizon_s: float = 60.0,
    ) -> None:
        widths = [window_seconds, 60.0] if timeframes is None else list(timeframes)
        seconds: list[int] = []
        for width in widths:
            if not float(width).is_integer() or width < 1:
                raise ConfigurationError(
                    f"bar window of {width!r} s: windows are whole seconds of at least 1 (e.g. 5, 15, 60)"
                )
            if int(width) not in seconds:
                seconds.append(int(width))
        if lateness_s < 0 or correction_horizon_s < 0:
            raise ConfigurationError(
                f"lateness ({lateness_s!r} s) and correction horizon ({correction_horizon_s!r} s) must be >= 0"
            )
        self.timeframes = tuple(timeframe_name(s) for s in seconds)
        self.source = source
        self.lateness_ns = round(lateness_s * 1e9)
        self._state = k.new_state(
            np.array(seconds, dtype=np.int64) * 1_000_000_000, self.lateness_ns, round(correction_horizon_s * 1e9)
        )
        self._symbols: list[str] = []  # by code
        self._symbol_index = pd.Index(self._symbols, dtype=STR)
        self._exchange_codes: dict[Any, int] = {}
        self._no_bars = empty_frame(BARS)

    # -- input ------------------------------------------------------------------------------
    def add_trades(self, trades: pd.DataFrame) -> None:
        """A ``core.model.TRADES`` frame, in any order; null ``trade_id`` = never deduplicated."""
        if trades is None or trades.empty:
            return
        n = len(trades)
        ts = _nanoseconds(trades["ts"])
        sym = self._codes(trades["symbol"])
        key, key_id, _ = self._keys(trades["trade_id"], trades.get("exchange"), sym)
        flags = self._flags(trades)
        self._state = k.reserve(self._state, n, n * len(self.timeframes))
        k.add_trades(
            self._state,
            ts,
            trades["price"].to_numpy(dtype=np.float64),
            trades["size"].to_numpy(dtype=np.int64),
            sym,
            key,
            key_id,
            flags,
        )

    def apply_cancels(self, cancels: pd.DataFrame) -> None:
        """Void trades: a ``sources.stream.CANCELS`` frame (``symbol``, ``trade_id``, ``exchange``
        which may be null; an Alpaca cancel ``C`` and error ``E`` both void the print)."""
        if cancels is None or cancels.empty:
            return
        _require(cancels, ("symbol", "trade_id"), "CANCELS")
        key, key_id, by_id = self._keys(cancels["trade_id"], cancels.get("exchange"), self._codes(cancels["symbol"]))
        k.cancel_trades(self._state, key, key_id, by_id)

    def apply_corrections(self, corrections: pd.DataFrame) -> None:
        """Correct trades: a ``sources.stream.CORRECTIONS`` frame: the original's ``symbol``,
        ``original_trade_id``, ``exchange`` (may be null), and ``corrected_price``,
        ``corrected_size``, ``corrected_conditions``, ``corrected_trade_id`` (may be null: same id)."""
        if corrections is None or corrections.empty:
            return
        _require(corrections, ("symbol", "original_trade_id", "corrected_price", "corrected_size"), "CORRECTIONS")
        sym = self._codes(corrections["symbol"])
        exchange = corrections.get("exchange")
        key, key_id, by_id = self._keys(corrections["original_trade_id"], exchange, sym)
        new_key, new_key_id = np.zeros_like(key), np.zeros_like(key)
        if "corrected_trade_id" in corrections:
            new_key, new_key_id, _ = self._keys(corrections["corrected_trade_id"], exchange, sym)
        corrected = pd.DataFrame(
            {c: corrections[c] for c in ("source", "tape") if c in corrections}
            | {"conditions": corrections.get("corrected_conditions")}
        )
        k.correct_trades(
            self._state,
            key,
            key_id,
            by_id,
            corrections["corrected_price"].to_numpy(dtype=np.float64),
            corrections["corrected_size"].to_numpy(dtype=np.int64),
            self._flags(corrected),
            new_key,
            new_key_id,
        )

    # -- output -----------------------------------------------------------------------------
    def advance(self, now: pd.Timestamp | int | None = None, *, provisional: bool = True) -> WindowOutput:
        """Close every window whose end plus the lateness is at or before the clock: the newest trade
        time seen, or ``now`` (a Timestamp or Unix ns) when it is later. ``provisional=False``
        skips building the provisional bars this time (the changed open windows are reported by
        the next call that asks), for a caller that stores them less often than it closes bars."""
        clock = int(self._state.ctr[k.C_MAX_TS])
        if now is not None:
            clock = max(clock, _instant(now))
        if clock == k.NO_TIME:
            return self._output(*(np.zeros(0, dtype=np.int64),) * 3)
        return self._output(*k.close_windows(self._state, clock - self.lateness_ns, provisional))

    def flush(self) -> WindowOutput:
        """End of stream: every window final (and released)."""
        return self._output(*k.close_windows(self._state, _MAX_NS, True), flushed=True)

    @property
    def retained_trades(self) -> int:
        """Trades held for open windows and the correction horizon (memory: ~170 bytes each, with its key)."""
        return len(self._state.rows_price) - int(self._state.ctr[k.C_FREE_ROWS])

    # -- helpers ----------------------------------------------------------------------------
    def _output(
        self, final: np.ndarray, provisional: np.ndarray, removed: np.ndarray, *, flushed: bool = False
    ) -> WindowOutput:
        ctr = self._state.ctr
        boundary = int(ctr[k.C_BOUNDARY])
        return WindowOutput(
            final=self._bars(final),
            provisional=self._bars(provisional),
            late_trades=int(ctr[k.C_LATE]),
            duplicates=int(ctr[k.C_DUPLICATES]),
            corrected_bars=int(ctr[k.C_CORRECTED]),
            dropped_late=int(ctr[k.C_DROPPED]),
            unmatched_amends=int(ctr[k.C_UNMATCHED]),
            removed=self._bars(removed),
            closed_until=None if flushed or boundary == k.NO_TIME else pd.Timestamp(boundary, tz="UTC"),
        )

    def _bars(self, slots: np.ndarray) -> pd.DataFrame:
        """The bars of ``slots`` as a BARS frame ordered by timeframe, symbol code and time, built
        column by column in the schema's dtypes (``core.model.frame``'s coercions cost ~3 ms a call,
        and this runs three times per micro-batch)."""
        if not len(slots):
            return self._no_bars.copy()
        si, sf = self._state.slots_i[slots], self._state.slots_f[slots]
        order = np.lexsort((si[:, k.S_START], si[:, k.S_SYM], si[:, k.S_TF]))
        si, sf = si[order], sf[order]
        priced = si[:, k.A_NP] > 0
        close = np.where(priced, sf[:, k.B_PLAST], sf[:, k.B_ALAST])
        volume = si[:, k.A_VOLUME]
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = np.where(volume > 0, sf[:, k.B_PV] / np.maximum(volume, 1), close)
        n = len(slots)
        columns = {
            "symbol": pd.array(np.array(self._symbols, dtype=object)[si[:, k.S_SYM]], dtype=STR),
            "ts": pd.DatetimeIndex(si[:, k.S_START].view("datetime64[ns]")).tz_localize("UTC"),
            "timeframe": pd.array(np.array(self.timeframes, dtype=object)[si[:, k.S_TF]], dtype=STR),
            "open": np.where(priced, sf[:, k.B_PFIRST], sf[:, k.B_AFIRST]),
            "high": np.where(priced, sf[:, k.B_HIGH], sf[:, k.B_AHIGH]),
            "low": np.where(priced, sf[:, k.B_LOW], sf[:, k.B_ALOW]),
            "close": close,
            "volume": volume,
            "vwap": vwap,
            "trade_count": pd.array(si[:, k.A_COUNT], dtype=NULLABLE_I64),
            "source": pd.array([self.source] * n, dtype=STR),
        }
        return pd.DataFrame(columns, columns=list(BARS))

    def _codes(self, symbols: pd.Series) -> np.ndarray:
        """Stable int codes of symbols across batches: the batch's distinct symbols looked up in
        an index of every symbol seen (grown when new ones appear)."""
        codes, uniques = pd.factorize(symbols, use_na_sentinel=True)
        if (codes < 0).any():
            raise DataQualityError("stream trades with a null symbol: the parser must drop or dead-letter them")
        mapping = self._symbol_index.get_indexer(uniques)
        if (mapping < 0).any():
            fresh = [str(name) for name in uniques[mapping < 0]]
            if len(self._symbols) + len(fresh) > 1 << k.SYMBOL_BITS:
                raise DataQualityError(f"more than {1 << k.SYMBOL_BITS} symbols in one stream")
            self._symbols.extend(fresh)
            self._symbol_index = pd.Index(self._symbols, dtype=STR)
            mapping = self._symbol_index.get_indexer(uniques)
        return mapping.astype(np.int64)[codes]

    def _keys(
        self, ids: pd.Series, exchange: pd.Series | None, sym: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(key, id key, matched by id only) per row: hashes of (symbol, trade id, exchange) and
        (symbol, trade id); a row without an exchange is matched by the id key."""
        n = len(ids)
        has_id = ids.notna().to_numpy()
        id_hash = pd.util.hash_array(ids.astype(object).fillna("").to_numpy()).view(np.int64)
        if exchange is not None:
            by_id = exchange.isna().to_numpy()
            codes, uniques = pd.factorize(exchange)
            mapping = np.array([self._exchange_codes.setdefault(u, len(self._exchange_codes)) for u in uniques] + [-1])
            exch = mapping[codes].astype(np.int64)
        else:
            by_id = np.ones(n, dtype=bool)
            exch = np.full(n, -1, dtype=np.int64)
        key, key_id = k.trade_keys(id_hash, has_id, sym, exch)
        return key, key_id, by_id

    def _flags(self, trades: pd.DataFrame) -> np.ndarray:
        """Per trade, what it may update, from one rule look-up per distinct (source, tape, conditions)."""
        n = len(trades)
        parts = [trades[c] if c in trades else pd.Series([None] * n) for c in ("conditions", "source", "tape")]
        if parts[0].isna().all():
            return np.full(n, _ALL, dtype=np.int64)
        combo = np.zeros(n, dtype=np.int64)
        levels = []
        for part in parts:
            codes, uniques = pd.factorize(part)
            combo = combo * (len(uniques) + 1) + codes + 1  # -1 (null) -> 0
            levels.append([None, *uniques])
        distinct, inverse = np.unique(combo, return_inverse=True)
        rules = np.empty(len(distinct), dtype=np.int64)
        for i, value in enumerate(distinct.tolist()):
            picks = []
            for level in reversed(levels):
                value, at = divmod(value, len(level))
                picks.append(level[at])
            tape, source, conditions = picks
            rules[i] = condition_flags(conditions, source, tape)
        return rules[inverse]


_MAX_NS = np.iinfo(np.int64).max // 2


def _nanoseconds(ts: pd.Series) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(ts.dtype):
        ts = pd.to_datetime(ts, utc=True)
    return np.asarray(ts.dt.as_unit("ns").array.asi8, dtype=np.int64)


def _instant(now: pd.Timestamp | int) -> int:
    if isinstance(now, int | np.integer):
        return int(now)
    stamp = pd.Timestamp(now)
    return int((stamp if stamp.tzinfo else stamp.tz_localize("UTC")).value)


def _require(frame_: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame_]
    if missing:
        raise DataQualityError(f"stream {what.lower()} lack column(s) {missing}; see sources.stream.{what}")
