"""Python access to the SQL scanners of db/routines/50_scanners.sql.

The scanners live in the database (schema ``scan``) so that scanner processes can call them from
psql or any client; this module only checks arguments and builds the call (pure, no I/O), and
:func:`run_scan` executes it and returns a DataFrame. A bad argument is refused here with a
:class:`ScanArgumentError` naming the value, what is allowed and what to do, before any query; the
functions repeat the checks in SQL for other clients, and an argument error raised there is
translated to the same exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from core.errors import PermanentSourceError, RequestError, StorageError
from core.model import EXCHANGE_TZ, canonical_timeframe, to_utc

SCHEMA = "scan"
TIMEFRAMES = ("1min", "5min", "15min", "1hour", "1day")
INTRADAY = ("1min", "5min", "15min", "1hour")
DIRECTIONS = ("up", "down", "both")


class ScanArgumentError(RequestError):
    """A scanner was asked for something it cannot compute (refused before the query runs)."""


@dataclass(frozen=True)
class ScanQuery:
    """One scanner call: ``SELECT * FROM <schema>.<function>(args)``."""

    name: str
    function: str
    args: tuple[Any, ...]
    schema: str = SCHEMA

    def statement(self) -> sql.Composed:
        placeholders = sql.SQL(", ").join(sql.Placeholder() * len(self.args))
        return sql.SQL("SELECT * FROM {}({})").format(sql.Identifier(self.schema, self.function), placeholders)

    def in_schema(self, schema: str) -> ScanQuery:
        """The same call against another schema holding the same functions (the benchmark's copy)."""
        return ScanQuery(self.name, self.function, self.args, schema)


# ---------------------------------------------------------------------------------------------
# Argument checks (pure)


def check_timeframe(timeframe: str, allowed: tuple[str, ...] = TIMEFRAMES) -> str:
    """The canonical spelling of ``timeframe`` (``1m`` -> ``1min``), refused unless in ``allowed``."""
    try:
        canonical = canonical_timeframe(timeframe)
    except PermanentSourceError:
        canonical = None
    if canonical not in allowed:
        raise ScanArgumentError(
            f"timeframe {timeframe!r} cannot be scanned here; use one of {', '.join(allowed)} (e.g. --timeframe 1min)"
        )
    return canonical


def check_positive_int(name: str, value: int, minimum: int = 1, maximum: int = 100_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ScanArgumentError(
            f"{name} must be a whole number from {minimum} to {maximum:,}, got {value!r}; "
            f"pass e.g. --{name.replace('_', '-')} {max(minimum, 20) if maximum >= 20 else minimum}"
        )
    return value


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ScanArgumentError(
            f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}; "
            "use up (gainers), down (losers) or both (largest moves either way)"
        )
    return direction


def check_number(name: str, value: float, minimum: float | None = None, maximum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    low_ok = minimum is None or number >= minimum
    high_ok = maximum is None or number <= maximum
    if number != number or not low_ok or not high_ok:  # NaN, or out of range
        bounds = " and ".join(
            part
            for part in (
                f">= {minimum:g}" if minimum is not None else "",
                f"<= {maximum:g}" if maximum is not None else "",
            )
            if part
        )
        raise ScanArgumentError(f"{name} must be a number{' ' + bounds if bounds else ''}, got {value!r}")
    return number


# ---------------------------------------------------------------------------------------------
# Query builders (pure)


def latest_bars(timeframe: str = "1min") -> ScanQuery:
    """The latest bar of every symbol of ``timeframe``, by symbol."""
    return ScanQuery("latest", "latest", (check_timeframe(timeframe),))


def top_movers(
    minutes: int | None = None,
    sessions: int | None = None,
    *,
    limit: int = 20,
    direction: str = "both",
    timeframe: str = "1min",
) -> ScanQuery:
    """Largest changes of the latest close over ``minutes`` (intraday bars of ``timeframe``) or
    over ``sessions`` (daily bars); exactly one of the two."""
    if (minutes is None) == (sessions is None):
        raise ScanArgumentError(
            f"top movers need exactly one of minutes or sessions, got minutes={minutes!r} and sessions={sessions!r}; "
            "pass --minutes 15 or --sessions 5"
        )
    check_positive_int("limit", limit)
    check_direction(direction)
    if minutes is not None:
        check_positive_int("minutes", minutes, maximum=60 * 24 * 365)
        return ScanQuery(
            "movers", "top_movers_minutes", (minutes, limit, direction, check_timeframe(timeframe, INTRADAY))
        )
    assert sessions is not None
    check_positive_int("sessions", sessions, maximum=10_000)
    return ScanQuery("movers", "top_movers_sessions", (sessions, limit, direction))


def volume_spikes(lookback: int = 20, min_z: float = 3.0, *, timeframe: str = "1min", limit: int = 50) -> ScanQuery:
    """Symbols whose latest volume is ``min_z`` or more standard deviations above the mean of the
    ``lookback`` bars before it."""
    check_positive_int("lookback", lookback, minimum=2, maximum=10_000)
    z = check_number("min_z", min_z)
    check_positive_int("limit", limit)
    return ScanQuery("volume-spikes", "volume_spikes", (lookback, z, check_timeframe(timeframe), limit))


def opening_gaps(
    min_pct: float = 2.0, direction: str = "both", *, timeframe: str = "1min", limit: int = 50
) -> ScanQuery:
    """First open of each symbol's latest session vs the previous session's last close, when the
    gap is at least ``min_pct`` percent."""
    pct = check_number("min_pct", min_pct, minimum=0.0)
    check_direction(direction)
    check_positive_int("limit", limit)
    return ScanQuery("gaps", "opening_gaps", (pct, direction, check_timeframe(timeframe), limit))


def new_highs_lows(days: int = 52, *, timeframe: str = "1day") -> ScanQuery:
    """Latest bars above the highest high / below the lowest low of the ``days`` bars before them."""
    check_positive_int("days", days, maximum=10_000)
    return ScanQuery("highs-lows", "new_highs_lows", (days, check_timeframe(timeframe)))


def rsi_extremes(
    above: float = 70.0, below: float = 30.0, *, timeframe: str = "1day", feature_set: str | None = None
) -> ScanQuery:
    """Symbols whose latest RSI (feature store) is >= ``above`` or <= ``below``."""
    high = check_number("above", above, minimum=0.0, maximum=100.0)
    low = check_number("below", below, minimum=0.0, maximum=100.0)
    if low >= high:
        raise ScanArgumentError(
            f"below ({below!r}) must be less than above ({above!r}); pass e.g. --below 30 --above 70"
        )
    if feature_set is not None and not feature_set.strip():
        raise ScanArgumentError("feature_set is empty; leave it out for each symbol's latest feature set")
    return ScanQuery("rsi", "rsi_extremes", (high, low, check_timeframe(timeframe), feature_set))


def option_iv_rank(lookback_days: int = 365, *, min_days: int = 2, limit: int = 50) -> ScanQuery:
    """Each underlying's newest daily 30-day ATM IV (feature store) ranked within its daily values
    of the last ``lookback_days`` (db/routines/55_options.sql)."""
    check_positive_int("lookback_days", lookback_days, maximum=3650)
    check_positive_int("min_days", min_days, minimum=2)
    check_positive_int("limit", limit)
    return ScanQuery("iv-rank", "option_iv_rank", (lookback_days, min_days, limit))


def unusual_options(min_ratio: float = 2.0, min_volume: int = 100, *, limit: int = 50) -> ScanQuery:
    """Contracts of each underlying's newest snapshot trading at least ``min_ratio`` times their
    open interest and ``min_volume`` contracts."""
    ratio = check_number("min_ratio", min_ratio, minimum=0.0)
    if ratio <= 0:
        raise ScanArgumentError(f"min_ratio must be more than 0, got {min_ratio!r}; pass e.g. --min-ratio 2")
    check_positive_int("min_volume", min_volume, maximum=10**9)
    check_positive_int("limit", limit)
    return ScanQuery("unusual-options", "unusual_options", (ratio, min_volume, limit))


def upcoming_earnings(days: int = 14, *, as_of: Any = None, limit: int = 50) -> ScanQuery:
    """Each symbol's next earnings report within ``days`` (as known at ``as_of``: an instant, a
    date meaning the end of that New York day, default now) with its estimates, the last EPS
    surprise and the options' implied move: the at-the-money straddle mid of the first expiration
    after the report over the underlying price, from the newest option snapshot by then
    (db/routines/80_fundamentals.sql)."""
    check_positive_int("days", days, minimum=0, maximum=366)
    check_positive_int("limit", limit)
    return ScanQuery("earnings", "upcoming_earnings", (days, _instant(as_of), limit))


def news_sentiment(
    hours: int = 24, direction: str = "both", *, min_items: int = 1, as_of: Any = None, limit: int = 20
) -> ScanQuery:
    """Symbols with the most negative (``down``) or positive (``up``) news of the last ``hours``
    before ``as_of`` (default now), each item as its version known at ``as_of``, with their latest
    daily volume's z-score over the 20 sessions before it (db/routines/57_news.sql)."""
    check_positive_int("hours", hours, maximum=24 * 366)
    check_positive_int("min_items", min_items)
    check_positive_int("limit", limit)
    return ScanQuery(
        "news-sentiment", "news_sentiment", (hours, check_direction(direction), min_items, limit, _instant(as_of))
    )


def _instant(as_of: Any) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    try:
        a_day = isinstance(as_of, date) and not isinstance(as_of, datetime)
        if a_day or (isinstance(as_of, str) and len(as_of.strip()) == 10):
            day = as_of if isinstance(as_of, date) else date.fromisoformat(as_of.strip())
            end = pd.Timestamp(day + timedelta(days=1), tz=EXCHANGE_TZ) - pd.Timedelta(microseconds=1)
            return end.tz_convert(UTC).to_pydatetime()
        return to_utc(as_of).to_pydatetime()
    except (ValueError, PermanentSourceError):
        raise ScanArgumentError(f"as_of {as_of!r} is not a date or time; pass e.g. --as-of 2024-06-28") from None


# ---------------------------------------------------------------------------------------------
# The runner (I/O)


def run_scan(conn: psycopg.Connection, query: ScanQuery) -> pd.DataFrame:
    """Execute one scanner call; columns as the SQL function returns them, timestamps in UTC."""
    try:
        with conn.cursor(binary=True) as cur:  # half the client time of text rows for 5,000 latest bars
            cur.execute(query.statement(), query.args)
            columns = [d.name for d in cur.description or []]
            rows = cur.fetchall()
    except psycopg.errors.InvalidParameterValue as exc:
        detail = exc.diag.message_primary or str(exc)
        raise ScanArgumentError(f"scanner {query.name}: {detail}") from exc
    except psycopg.Error as exc:
        raise StorageError(
            f"scanner {query.name} ({query.schema}.{query.function}) failed: {str(exc).strip()}; "
            "is the schema migrated (`marketpipe db migrate`)?"
        ) from exc
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC")
    return frame
