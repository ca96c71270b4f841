"""The canonical columnar model every vendor payload is parsed into.

One schema per dataset, as an ordered mapping of column name to pandas dtype. Parsers build their
frames with :func:`frame`, which orders the columns and coerces the dtypes, so a Polygon bar and an
Alpaca bar of the same minute are indistinguishable except for the ``source`` column: UTC
timestamps (``datetime64[ns, UTC]``), float64 prices, int64 sizes and volumes, Arrow-backed strings,
symbols normalized by :func:`normalize_symbol`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from core.errors import PermanentSourceError

TS = "datetime64[ns, UTC]"
STR = "string[pyarrow]"
F64 = "float64"
I64 = "int64"
NULLABLE_I64 = "Int64"  # counts a vendor may omit (trade_count on Yahoo)
BOOL = "bool"

BARS: dict[str, str] = {
    "symbol": STR,
    "ts": TS,  # start of the bar's window
    "timeframe": STR,  # canonical: 1min, 5min, 15min, 1hour, 1day, ...
    "open": F64,
    "high": F64,
    "low": F64,
    "close": F64,
    "volume": I64,
    "vwap": F64,
    "trade_count": NULLABLE_I64,
    "source": STR,
}

TRADES: dict[str, str] = {
    "symbol": STR,
    "ts": TS,
    "price": F64,
    "size": I64,
    "exchange": STR,
    "trade_id": STR,
    "conditions": STR,  # comma-joined condition codes, as strings
    "tape": STR,
    "source": STR,
}
# A trade's identity (the hot store's key, storage/trades.py): a vendor's trade id names a trade
# within one symbol's feed from one exchange. A trade lacking any of these cannot be stored.
TRADE_KEY = ("symbol", "ts", "exchange", "trade_id")

QUOTES: dict[str, str] = {
    "symbol": STR,
    "ts": TS,
    "bid_price": F64,
    "bid_size": I64,
    "bid_exchange": STR,
    "ask_price": F64,
    "ask_size": I64,
    "ask_exchange": STR,
    "conditions": STR,
    "tape": STR,
    "source": STR,
}
# A quote has no vendor id: its identity is what it says (the hot store's key, storage/quotes.py).
QUOTE_KEY = ("symbol", "ts", "bid_exchange", "ask_exchange", "bid_price", "ask_price", "bid_size", "ask_size")

# quality_flags bit of a bar whose window has not closed (a stream's forming bar): stored so readers
# see it form, never advancing a watermark (quality/validate.py Rule.PROVISIONAL, storage/streams.py).
PROVISIONAL_FLAG = 256

# Splits and dividends in one frame: ``action`` is "split" or "dividend"; a split has ratio
# new_rate/old_rate (2-for-1: new 2, old 1), a dividend a cash ``amount`` per share.
CORPORATE_ACTIONS: dict[str, str] = {
    "symbol": STR,
    "action": STR,
    "ex_date": TS,  # midnight UTC of the ex date
    "new_rate": F64,
    "old_rate": F64,
    "amount": F64,
    "currency": STR,
    "record_date": TS,
    "pay_date": TS,
    "source": STR,
}

NEWS: dict[str, str] = {
    "id": STR,
    "ts": TS,  # publication time
    "headline": STR,
    "summary": STR,
    "author": STR,
    "url": STR,
    "symbols": STR,  # comma-joined normalized symbols
    "publisher": STR,
    "body": STR,  # the article's content as sent (may be HTML), when the vendor sends it
    "updated_ts": TS,  # the vendor's last update of the article (its publication time if none)
    "vendor_sentiment": STR,  # the vendor's own per-symbol labels, "AAPL:positive,MSFT:neutral"
    "source": STR,
}

OPTION_SNAPSHOTS: dict[str, str] = {
    "underlying": STR,
    "contract": STR,
    "contract_type": STR,  # call | put
    "expiration": TS,
    "strike": F64,
    "shares_per_contract": I64,
    "implied_volatility": F64,
    "delta": F64,
    "gamma": F64,
    "theta": F64,
    "vega": F64,
    "open_interest": I64,
    "bid": F64,
    "ask": F64,
    "last_price": F64,
    "underlying_price": F64,
    "ts": TS,  # the snapshot's instant: the underlying's last update (else the quote's, the trade's)
    "bid_size": NULLABLE_I64,
    "ask_size": NULLABLE_I64,
    "volume": NULLABLE_I64,  # the session's contracts traded
    "quote_ts": TS,  # last update of the quote, or of the trade when no quote
    "exercise_style": STR,
    "source": STR,
}

# Long format: one row per reported line item, so statements of any shape fit one schema.
FINANCIALS: dict[str, str] = {
    "symbol": STR,
    "period_start": TS,
    "period_end": TS,
    "filing_date": TS,
    "accepted_at": TS,  # the instant the filing was accepted (EDGAR's acceptance time); null when not given
    "fiscal_period": STR,
    "fiscal_year": STR,
    "statement": STR,  # balance_sheet, income_statement, cash_flow_statement, ...
    "item": STR,
    "value": F64,
    "unit": STR,
    "source": STR,
}

# An earnings calendar entry as the vendor knew it at ``known_at`` (its last update): estimates
# before the report, actuals after. ``time_of_day``: bmo (before the open), dmh (during market
# hours), amc (after the close) or unknown.
EARNINGS: dict[str, str] = {
    "symbol": STR,
    "fiscal_year": STR,
    "fiscal_period": STR,
    "report_date": TS,  # midnight UTC of the report's date
    "report_time": STR,  # HH:MM:SS New York
    "time_of_day": STR,
    "date_status": STR,
    "eps_estimate": F64,
    "eps_actual": F64,
    "revenue_estimate": F64,
    "revenue_actual": F64,
    "known_at": TS,
    "source": STR,
}

SOCIAL_POSTS: dict[str, str] = {
    "id": STR,
    "ts": TS,
    "community": STR,  # subreddit
    "author": STR,
    "title": STR,
    "body": STR,
    "score": I64,
    "comments": I64,
    "url": STR,
    "source": STR,
}

SCHEMAS: dict[str, dict[str, str]] = {
    "bars": BARS,
    "trades": TRADES,
    "quotes": QUOTES,
    "corporate_actions": CORPORATE_ACTIONS,
    "news": NEWS,
    "option_snapshots": OPTION_SNAPSHOTS,
    "financials": FINANCIALS,
    "earnings": EARNINGS,
    "social_posts": SOCIAL_POSTS,
}

# ---------------------------------------------------------------------------------------------
# Symbols

# A share class is one or two letters after a separator vendors spell differently:
# Polygon/Alpaca "BRK.B", Yahoo "BRK-B", Nasdaq/SIP "BRK/B", some feeds "BRK B".
_SHARE_CLASS = re.compile(r"^([A-Z]{1,6})[.\-/ ]([A-Z]{1,2})$")
_VENDOR_CLASS_SEPARATOR = {"polygon": ".", "alpaca": ".", "yahoo": "-", "reddit": "."}


def normalize_symbol(raw: str) -> str:
    """The canonical spelling of a ticker: upper case, share class after a dot (``BRK.B``).

    Prefixed tickers (``O:AAPL...`` options, ``X:BTCUSD``, ``^GSPC``) are only upper-cased.
    """
    symbol = raw.strip().upper()
    match = _SHARE_CLASS.match(symbol)
    return f"{match[1]}.{match[2]}" if match else symbol


def vendor_symbol(symbol: str, vendor: str) -> str:
    """How ``vendor`` spells a canonical symbol in its URLs (Yahoo wants ``BRK-B``)."""
    canonical = normalize_symbol(symbol)
    separator = _VENDOR_CLASS_SEPARATOR.get(vendor, ".")
    match = _SHARE_CLASS.match(canonical)
    return f"{match[1]}{separator}{match[2]}" if match else canonical


def normalize_symbols(values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalize_symbol` over a column (one call per distinct symbol)."""
    distinct = pd.unique(values.dropna())
    mapping = {value: normalize_symbol(str(value)) for value in distinct}
    if all(key == value for key, value in mapping.items()):
        return values  # already canonical (the usual case): a per-row map would change nothing
    return values.map(mapping)


# ---------------------------------------------------------------------------------------------
# Frames


def empty_frame(schema: Mapping[str, str]) -> pd.DataFrame:
    """A frame of ``schema`` without rows (a copy of one kept per schema: building one costs ~0.5 ms
    of dtype resolution, a copy ~20 µs; empty frames are common, e.g. a symbol without actions)."""
    key = tuple(schema.items())
    template = _EMPTY_FRAMES.get(key)
    if template is None:
        template = _EMPTY_FRAMES[key] = pd.DataFrame({n: pd.Series([], dtype=d) for n, d in schema.items()})
    return template.copy(deep=True)


_EMPTY_FRAMES: dict[tuple[tuple[str, str], ...], pd.DataFrame] = {}


def frame(schema: Mapping[str, str], columns: Mapping[str, Any], *, what: str) -> pd.DataFrame:
    """Build a frame of exactly ``schema`` from column arrays, coercing every dtype.

    Columns absent from ``columns`` are filled with nulls (NaN for floats, NA otherwise); a
    non-nullable int64 column that is absent or holds a null is an error, because a missing size or
    volume must not silently become 0. A value that cannot be coerced raises
    :class:`PermanentSourceError` naming ``what`` and the column.
    """
    lengths = {len(v) for v in columns.values() if v is not None and not np.isscalar(v)}
    if len(lengths) > 1:
        raise PermanentSourceError(f"{what}: columns of different lengths {sorted(lengths)}")
    length = lengths.pop() if lengths else 0
    data: dict[str, pd.Series] = {}
    for name, dtype in schema.items():
        value = columns.get(name)
        try:
            data[name] = _coerce(value, dtype, length)
        except (ValueError, TypeError, OverflowError) as exc:
            raise PermanentSourceError(f"{what}: column {name!r} cannot be read as {dtype}: {exc}") from exc
        if dtype == I64 and value is None:
            raise PermanentSourceError(f"{what}: required column {name!r} is missing")
    # from the columns' arrays: a dict of Series makes pandas align their indexes (0.26 vs 0.10 ms
    # for a 1,950-bar page, and ~4x that under load: 1.1 ms a vendor page in the ingest benchmark)
    return pd.DataFrame({name: series.array for name, series in data.items()})


def _coerce(value: Any, dtype: str, length: int) -> pd.Series:
    if value is None:
        return pd.Series([None] * length, dtype=dtype if dtype != I64 else NULLABLE_I64).astype(
            dtype if dtype != I64 else NULLABLE_I64
        )
    if np.isscalar(value):
        if dtype == STR and isinstance(value, str):
            return constant_strings(value, length)
        value = [value] * length
    if isinstance(value, np.ndarray) and value.ndim == 1:
        fast = _numeric_array(value, dtype)
        if fast is not None:
            return fast
    if not isinstance(value, pd.Series):
        value = pd.Series(value if hasattr(value, "dtype") else list(value))
    series = value
    series = series.reset_index(drop=True)
    if series.dtype == dtype:  # already canonical (a parser's output being standardized): nothing to coerce
        return series
    if dtype == TS:
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            converted = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
            return converted.astype(TS)
        return pd.to_datetime(series, utc=True, format="ISO8601").astype(TS)
    if dtype in (F64,):
        return pd.to_numeric(series, errors="raise").astype(F64)
    if dtype == I64:
        numeric = pd.to_numeric(series, errors="raise")
        if numeric.isna().any():
            raise ValueError("null value in a required integer column")
        return numeric.round().astype(I64)
    if dtype == NULLABLE_I64:
        return pd.to_numeric(series, errors="raise").round().astype(NULLABLE_I64)
    if dtype == BOOL:
        return series.astype(BOOL)
    return series.astype(dtype)


def constant_strings(value: str, length: int) -> pd.Series:
    """``length`` times ``value`` as a :data:`STR` series, built in Arrow (a vendor page's symbol,
    timeframe and source columns: ~6x quicker than from a Python list)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    one = pa.array([value], pa.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(pc.take(one, np.zeros(length, dtype=np.int32))))


def _numeric_array(values: np.ndarray, dtype: str) -> pd.Series | None:
    """A numpy column of numbers in the dtype asked for without pandas' generic conversion, or
    None where that path must judge it (floats into integers: NaN, infinity and rounding)."""
    kind = values.dtype.kind
    if dtype == F64 and kind in "fi":
        return pd.Series(values.astype(np.float64, copy=False))
    if dtype in (I64, NULLABLE_I64) and kind == "i":
        ints = values.astype(np.int64, copy=False)
        return pd.Series(ints if dtype == I64 else pd.array(ints, dtype=NULLABLE_I64))
    return None


def epoch_to_utc(values: Any, unit: str) -> pd.Series:
    """Unix epoch numbers (``s``, ``ms``, ``us``, ``ns``) as UTC timestamps."""
    series = pd.Series(values)
    try:
        numeric = pd.to_numeric(series, errors="raise")
    except (ValueError, TypeError) as exc:
        raise PermanentSourceError(f"timestamps are not epoch numbers: {exc}") from exc
    return pd.to_datetime(numeric, unit=unit, utc=True).astype(TS)


def require_keys(records: list[Any], keys: tuple[str, ...], *, what: str) -> pd.DataFrame:
    """Records (dicts) as a raw frame, checking each required key is present in every record."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise PermanentSourceError(f"{what}: expected a list of objects, got {type(records).__name__}")
    raw = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(keys))
    missing = [k for k in keys if k not in raw.columns or (len(raw) and raw[k].isna().any())]
    if missing:
        raise PermanentSourceError(f"{what}: records lack required field(s) {missing}")
    return raw


def numeric_columns(
    records: list[Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray | None] | None:
    """The fast path for large pages of flat numeric records (a vendor's bars): each key's values
    as one numpy array, built column by column (~7x quicker than a frame from the records).

    An ``optional`` key absent from every record maps to None. Returns None when the records do
    not fit (not all objects, a required key missing or null, an optional key in some records
    only, a value that is not a number): the caller then takes :func:`require_keys`' path, which
    names the defect or handles the irregular shape.
    """
    if not isinstance(records, list) or not records:
        return None
    out: dict[str, np.ndarray | None] = {}
    try:
        for key in required:
            out[key] = np.asarray([r[key] for r in records])
        for key in optional:
            values = [r.get(key) for r in records]
            missing = values.count(None)
            if 0 < missing < len(values):
                return None
            out[key] = np.asarray(values) if not missing else None
    except (KeyError, TypeError, AttributeError):  # a record that is no object, or lacks a key
        return None
    if any(v is not None and v.dtype.kind not in "iuf" for v in out.values()):
        return None
    return out


def sole_value(values: pd.Series) -> Any:
    """The value every row of ``values`` holds; None when rows differ, one is missing or there are none
    (a batch of one symbol's page takes paths without a group-by on it)."""
    if not len(values) or values.isna().any():
        return None
    first = values.iloc[0]
    return first if bool((values == first).all()) else None


def join_list_column(values: pd.Series, *, normalize: bool = False) -> pd.Series:
    """A column of lists (condition codes, tickers) as comma-joined strings; None stays null."""

    def join(item: Any) -> Any:
        if item is None or (isinstance(item, float) and np.isnan(item)):
            return None
        if not isinstance(item, list | tuple):
            item = [item]
        return ",".join(normalize_symbol(str(x)) if normalize else str(x) for x in item)

    return values.map(join) if len(values) else values


# ---------------------------------------------------------------------------------------------
# Time

_TIMEFRAME = re.compile(r"^(\d+)\s*(min|minute|m|hour|h|day|d|week|w|wk|month|mo)$", re.IGNORECASE)
_UNIT = {
    "min": "min",
    "minute": "min",
    "m": "min",
    "hour": "hour",
    "h": "hour",
    "day": "day",
    "d": "day",
    "week": "week",
    "w": "week",
    "wk": "week",
    "month": "month",
    "mo": "month",
}
EXCHANGE_TZ = "America/New_York"


def parse_timeframe(timeframe: str) -> tuple[int, str]:
    """``"5min"`` -> ``(5, "min")``; units: min, hour, day, week, month. Accepts the seed's ``1day``."""
    match = _TIMEFRAME.match(timeframe.strip())
    if not match or int(match[1]) < 1:
        raise PermanentSourceError(
            f"unknown timeframe {timeframe!r}: use <n><unit> with unit min, hour, day, week or month "
            "(e.g. 1min, 5min, 1hour, 1day)"
        )
    return int(match[1]), _UNIT[match[2].lower()]


def canonical_timeframe(timeframe: str) -> str:
    multiplier, unit = parse_timeframe(timeframe)
    return f"{multiplier}{unit}"


def to_utc(value: Any) -> pd.Timestamp:
    """A date, datetime, ISO string, Timestamp or Unix seconds as a UTC Timestamp (naive = UTC)."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return pd.Timestamp(value, unit="s", tz="UTC")
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise PermanentSourceError(f"cannot read {value!r} as a date or time: {exc}") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def session_start(ts: pd.Series) -> pd.Series:
    """Daily-or-longer bars stamped at midnight New York of their session date, whatever the vendor
    chose (Polygon and Alpaca stamp midnight ET, Yahoo the opening bell)."""
    local = ts.dt.tz_convert(EXCHANGE_TZ).dt.normalize()
    return local.dt.tz_convert("UTC").astype(TS)


def session_date(ts: pd.Series) -> pd.Series:
    """The New York calendar date of each timestamp, as midnight UTC (how dates are stored)."""
    return ts.dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None).dt.normalize().dt.tz_localize("UTC").astype(TS)
