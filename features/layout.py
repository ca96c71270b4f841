"""The contiguous multi-symbol layout the kernels read: one array per field plus per-symbol offsets.

Symbol ``s`` owns rows ``offsets[s]:offsets[s+1]`` of every array, in time order. Built from a bars
frame sorted by (symbol, ts) without copying float64 columns (volume, an integer column, is
converted once). ``session`` is the exchange-local calendar date of each bar (days since the
epoch), the anchor of session VWAP and the opening gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.calendar import NS_PER_DAY
from core.errors import DataQualityError
from core.model import EXCHANGE_TZ, canonical_timeframe
from storage.hot import INTRADAY_TIMEFRAMES

PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True, eq=False)
class BarLayout:
    """Bars of one timeframe for many symbols, contiguous per symbol."""

    timeframe: str
    symbols: tuple[str, ...]
    offsets: np.ndarray  # int64, len(symbols) + 1
    ts_ns: np.ndarray  # int64, UTC nanoseconds
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # float64
    session: np.ndarray  # int64, exchange-local date as days since 1970-01-01

    def __post_init__(self) -> None:
        # one array type for the kernels (read-only views, as pandas hands out): one compiled specialization
        for values in (self.offsets, self.ts_ns, *self.kernel_arrays):
            values.setflags(write=False)

    @property
    def n_bars(self) -> int:
        return int(self.offsets[-1])

    @property
    def intraday(self) -> bool:
        return self.timeframe in INTRADAY_TIMEFRAMES

    @property
    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        return self.open, self.high, self.low, self.close, self.volume, self.session

    @property
    def input_bytes(self) -> int:
        return sum(a.nbytes for a in (self.ts_ns, *self.kernel_arrays, self.offsets))

    def symbol_of_rows(self) -> np.ndarray:
        """The symbol of every row (an object array), for building output frames."""
        return np.repeat(np.array(self.symbols, dtype=object), np.diff(self.offsets))

    def slice(self, s: int) -> slice:
        return slice(int(self.offsets[s]), int(self.offsets[s + 1]))

    @classmethod
    def from_frame(cls, bars: pd.DataFrame, timeframe: str | None = None) -> BarLayout:
        """The layout of ``bars`` (columns symbol, ts, open, high, low, close, volume; optional timeframe).

        The frame must be sorted by (symbol, ts) with one row per (symbol, ts) and no missing price
        or volume: these rules keep every feature point-in-time and well defined, so a violation is a
        :class:`DataQualityError` naming the first offending row rather than a silent repair.
        """
        timeframe = _timeframe_of(bars, timeframe)
        missing = [c for c in ("symbol", "ts", *PRICE_COLUMNS, "volume") if c not in bars.columns]
        if missing:
            raise DataQualityError(f"bars frame lacks column(s) {missing} needed for features")
        n = len(bars)
        codes, uniques = pd.factorize(bars["symbol"], sort=False)
        ts = pd.DatetimeIndex(bars["ts"])
        ts = (ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")).as_unit("ns")
        ts_ns = ts.asi8
        if n:
            starts = np.flatnonzero(np.diff(codes)) + 1
            if len(starts) + 1 != len(uniques):
                raise DataQualityError(
                    "bars for features must be sorted by (symbol, ts): a symbol's rows are not contiguous"
                )
            same_symbol = np.ones(n - 1, dtype=bool)
            same_symbol[starts - 1] = False
            bad = np.flatnonzero(same_symbol & (np.diff(ts_ns) <= 0))
            if len(bad):
                row = bars.iloc[bad[0] + 1]
                raise DataQualityError(
                    f"bars of {row['symbol']} are not strictly increasing in time at {row['ts']}: sort by (symbol, ts) "
                    "and collapse duplicates before computing features"
                )
            offsets = np.concatenate(([0], starts, [n])).astype(np.int64)
        else:
            offsets = np.zeros(1, dtype=np.int64)
        arrays = {c: np.ascontiguousarray(bars[c].to_numpy(dtype=np.float64)) for c in (*PRICE_COLUMNS, "volume")}
        for name, values in arrays.items():
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                row = bars.iloc[bad[0]]
                raise DataQualityError(
                    f"bar {row['symbol']} {row['ts']} has {name}={float(values[bad[0]])}: features need finite "
                    "prices and volume (drop or repair the bar; a halted symbol simply has no bars)"
                )
        local = ts.tz_convert(EXCHANGE_TZ).tz_localize(None).asi8
        return cls(
            timeframe=timeframe,
            symbols=tuple(str(s) for s in uniques),
            offsets=offsets,
            ts_ns=np.ascontiguousarray(ts_ns),
            session=local // NS_PER_DAY,
            **arrays,
        )


def _timeframe_of(bars: pd.DataFrame, timeframe: str | None) -> str:
    if "timeframe" in bars.columns and len(bars):
        found = pd.unique(bars["timeframe"])
        if len(found) != 1:
            raise DataQualityError(f"bars for features must have one timeframe, found {sorted(map(str, found))}")
        if timeframe is not None and canonical_timeframe(timeframe) != canonical_timeframe(str(found[0])):
            raise DataQualityError(f"bars are {found[0]!r} but features were asked for timeframe {timeframe!r}")
        timeframe = str(found[0])
    if timeframe is None:
        raise DataQualityError("bars carry no timeframe column: pass timeframe= (e.g. '1day' or '1min')")
    return canonical_timeframe(timeframe)
