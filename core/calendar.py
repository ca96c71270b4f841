"""The NYSE trading calendar as the time axis that bars are checked against.

Why a module of its own: alignment, "inside the session" and gap detection all need the same
three facts per session (its date, its regular open and close in UTC), and half days (13:00 ET
close) and DST make them impossible to derive with clock arithmetic alone. exchange_calendars
(XNYS) knows the holidays and half days; :class:`SessionSchedule` pulls the facts out once per call
into flat arrays so every check is a ``searchsorted`` rather than a per-row lookup. There is no
module-level cache: a caller that checks many frames builds one schedule and passes it down.

Timestamp conventions (the canonical model of :mod:`core.model`):

* intraday bars are stamped at the **start** of their window, in UTC;
* daily bars are stamped at **00:00 America/New_York of the session date**, expressed in UTC
  (04:00 UTC in summer, 05:00 UTC in winter). That is what Polygon and Alpaca send (Polygon's
  daily ``t`` is midnight New York as Unix ms) and what every adapter normalizes to through
  :func:`core.model.session_start`, so Yahoo's opening-bell stamps agree too;
* intraday windows wider than a minute are anchored either to the **clock** (windows start at
  multiples of the width since the epoch: Polygon and Alpaca, whose first hourly bar is 09:00 ET
  and holds 09:30-09:59) or to the **session** open (Yahoo: 09:30, 10:30, ...). For 5min and 15min
  the two coincide on NYSE because the open is at :30.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from core import model
from core.errors import DataQualityError

Anchor = Literal["clock", "session"]
CALENDAR = "XNYS"
NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 86_400 * 1_000_000_000
NEW_YORK = ZoneInfo(model.EXCHANGE_TZ)
_UNIT_NS = {"min": NS_PER_MINUTE, "hour": 60 * NS_PER_MINUTE}


@dataclass(frozen=True)
class SessionSchedule:
    """Regular sessions of NYSE over a date range, as parallel int64 arrays (UTC nanoseconds).

    ``dates`` are the session dates as ``datetime64[D]``; ``midnight_ns`` is 00:00 New York of each
    session date (the stamp of its daily bar).
    """

    dates: np.ndarray
    open_ns: np.ndarray
    close_ns: np.ndarray
    midnight_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def minutes(self) -> np.ndarray:
        """Length of each regular session in minutes: 390, or 210 on a half day."""
        return (self.close_ns - self.open_ns) // NS_PER_MINUTE

    @property
    def half_days(self) -> np.ndarray:
        return self.minutes < 390

    def frame(self) -> pd.DataFrame:
        """One row per session (``session_date`` as midnight UTC, ``open``/``close`` UTC)."""
        return pd.DataFrame(
            {
                "session_date": pd.DatetimeIndex(self.dates).as_unit("ns").tz_localize("UTC"),
                "open": pd.to_datetime(self.open_ns, utc=True),
                "close": pd.to_datetime(self.close_ns, utc=True),
                "half_day": self.half_days,
            }
        )

    def session_index(self, ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
        """Index of the session whose date is each timestamp's New York date; -1 when none.

        Sessions never span midnight New York, so the local date identifies the session for
        intraday and daily stamps alike.
        """
        day = local_dates(ts)
        pos = np.searchsorted(self.dates, day)
        inside = pos < len(self.dates)
        hit = np.zeros(len(day), dtype=bool)
        hit[inside] = self.dates[pos[inside]] == day[inside]
        return np.where(hit, pos, -1)


def nyse_sessions(start: Any, end: Any) -> SessionSchedule:
    """NYSE regular sessions whose date lies in [start, end] (dates, datetimes or ISO strings).

    Instants are read in New York time so that a UTC stamp late in the evening still names the
    session date a trader would.
    """
    return _sessions_between(as_date(start), as_date(end))


@functools.lru_cache(maxsize=512)
def _sessions_between(first: date, last: date) -> SessionSchedule:
    """:func:`nyse_sessions` for two dates, kept: every symbol of a run asks for the same range
    (~1.5 ms each to slice and convert). The arrays are read-only, so no caller can change the
    schedule another one gets."""
    if first > last:
        return empty_schedule()
    # Whole years around the range: exchange_calendars refuses start == end and reuses a calendar
    # built for the same bounds, so neighbouring batches share one build.
    try:
        calendar = xcals.get_calendar(CALENDAR, start=f"{first.year}-01-01", end=f"{last.year}-12-31")
    except (ValueError, KeyError) as exc:
        raise DataQualityError(
            f"cannot build the NYSE calendar for {first}..{last}: {exc}; choose dates the calendar covers"
        ) from exc
    schedule = calendar.schedule.loc[pd.Timestamp(first) : pd.Timestamp(last)]
    if schedule.empty:
        return empty_schedule()
    dates = schedule.index.values.astype("datetime64[D]")
    open_ns = _utc_ns(schedule["open"])
    close_ns = _utc_ns(schedule["close"])
    midnight = daily_bar_ts(dates).as_unit("ns").asi8.astype(np.int64)
    for array in (dates, open_ns, close_ns, midnight):
        array.flags.writeable = False
    return SessionSchedule(dates=dates, open_ns=open_ns, close_ns=close_ns, midnight_ns=midnight)


def schedule_for(ts: pd.Series) -> SessionSchedule:
    """The schedule covering every New York date in ``ts`` (empty for an empty series)."""
    if not len(ts):
        return empty_schedule()
    day = local_dates(ts)
    return nyse_sessions(day.min(), day.max())


def local_dates(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """New York calendar date of each UTC timestamp, as ``datetime64[D]``."""
    index = pd.DatetimeIndex(ts)
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.tz_convert(model.EXCHANGE_TZ).tz_localize(None).values.astype("datetime64[D]")


def daily_bar_ts(dates: Any) -> pd.DatetimeIndex:
    """The canonical stamp of the daily bar of each session date: 00:00 New York, in UTC."""
    index = pd.DatetimeIndex(pd.to_datetime(dates))
    if index.tz is not None:
        index = index.tz_convert(model.EXCHANGE_TZ).tz_localize(None)
    return index.normalize().tz_localize(model.EXCHANGE_TZ).tz_convert("UTC")


def bar_width_ns(timeframe: str) -> int | None:
    """Width of an intraday bar in nanoseconds; None for 1day.

    Wider daily periods (weeks, months, 2day) have no per-session grid to check against and are
    refused rather than silently passed.
    """
    multiplier, unit = model.parse_timeframe(timeframe)
    if unit in _UNIT_NS:
        return multiplier * _UNIT_NS[unit]
    if unit == "day" and multiplier == 1:
        return None
    raise DataQualityError(
        f"timeframe {timeframe!r} cannot be checked against the session calendar; "
        "validation supports minute and hour multiples and 1day"
    )


def window_starts(schedule: SessionSchedule, timeframe: str, anchor: Anchor = "clock") -> tuple[np.ndarray, np.ndarray]:
    """(first window start, number of windows) of every session for ``timeframe``.

    A window belongs to a session when it overlaps the regular session: with the clock anchor the
    first hourly window starts before the open (09:00 ET) and still counts, which is how Polygon
    and Alpaca aggregate.
    """
    width = bar_width_ns(timeframe)
    if width is None:
        return schedule.midnight_ns.copy(), np.ones(len(schedule), dtype=np.int64)
    first = (schedule.open_ns // width) * width if anchor == "clock" else schedule.open_ns.copy()
    count = -(-(schedule.close_ns - first) // width)  # ceil division
    return first, count.astype(np.int64)


def expected_bar_ns(
    schedule: SessionSchedule, timeframe: str, anchor: Anchor = "clock"
) -> tuple[np.ndarray, np.ndarray]:
    """Every expected bar stamp (int64 UTC ns) in the schedule, with the session index of each.

    1min gives every minute from the open to one minute before the close; wider intraday frames
    give their windows by ``anchor``; 1day gives one stamp per session at midnight New York.
    """
    first, count = window_starts(schedule, timeframe, anchor)
    width = bar_width_ns(timeframe) or 0
    session = np.repeat(np.arange(len(schedule), dtype=np.int64), count)
    offsets = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    return first[session] + offsets * width, session


def expected_timestamps(schedule: SessionSchedule, timeframe: str, anchor: Anchor = "clock") -> pd.DatetimeIndex:
    """:func:`expected_bar_ns` as a UTC DatetimeIndex, for joins and gap listings."""
    ns, _ = expected_bar_ns(schedule, timeframe, anchor)
    return pd.DatetimeIndex(pd.to_datetime(ns, utc=True))


def aligned(
    ts_ns: np.ndarray, session: np.ndarray, schedule: SessionSchedule, timeframe: str, anchor: Anchor = "clock"
) -> np.ndarray:
    """Whether each stamp sits on the timeframe's grid.

    Intraday clock-anchored stamps must be multiples of the width since the epoch; session-
    anchored ones multiples of the width after their session's open (a stamp on no session date
    falls back to the clock grid, and is reported as outside the session anyway). Daily stamps must
    be midnight New York.
    """
    width = bar_width_ns(timeframe)
    if width is None:
        local = pd.DatetimeIndex(pd.to_datetime(ts_ns, utc=True)).tz_convert(model.EXCHANGE_TZ)
        return np.asarray(
            (local.hour == 0)
            & (local.minute == 0)
            & (local.second == 0)
            & (local.nanosecond == 0)
            & (local.microsecond == 0)
        )
    if anchor == "clock" or not len(schedule):
        return ts_ns % width == 0
    origin = np.where(session >= 0, schedule.open_ns[np.maximum(session, 0)], 0)
    return (ts_ns - origin) % width == 0


def in_session(ts_ns: np.ndarray, session: np.ndarray, schedule: SessionSchedule, timeframe: str) -> np.ndarray:
    """Whether each bar's window overlaps its date's regular session (daily: the date is a session).

    A window [ts, ts + width) counts when it ends after the open and starts before the close, so a
    13:00 ET bar on a half day (2024-11-29) is outside, and so is anything on a holiday.
    """
    known = session >= 0
    width = bar_width_ns(timeframe)
    if width is None or not len(schedule):
        return known
    index = np.maximum(session, 0)
    return known & (ts_ns + width > schedule.open_ns[index]) & (ts_ns < schedule.close_ns[index])


def _utc_ns(column: pd.Series) -> np.ndarray:
    return column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)


def as_date(value: Any) -> date:
    """A date from a date, datetime, Timestamp or ISO string; aware instants read in New York."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp | str) or hasattr(value, "hour"):
        ts = pd.Timestamp(value)
        if ts.tzinfo is not None:
            ts = ts.tz_convert(model.EXCHANGE_TZ)
        return ts.date()
    if isinstance(value, date):
        return value
    raise DataQualityError(f"cannot read {value!r} as a date; use a date, datetime or YYYY-MM-DD string")


def empty_schedule() -> SessionSchedule:
    empty = np.empty(0, dtype=np.int64)
    return SessionSchedule(
        dates=np.empty(0, dtype="datetime64[D]"), open_ns=empty, close_ns=empty.copy(), midnight_ns=empty.copy()
    )


# ---------------------------------------------------------------------------------------------
# Whether the market trades on a given day: the gate of the intraday deployment. A cron schedule
# knows weekdays, not NYSE holidays; the intraday flow asks :func:`closed_reason` first and ends as
# a "Skipped" Completed run on a closed day instead of fetching nothing for an hour.


def new_york_date(now: datetime) -> date:
    """The New York date of an instant (a naive instant is read as UTC)."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.astimezone(NEW_YORK).date()


def closed_reason(day: date) -> str | None:
    """Why NYSE has no session on ``day`` ("weekend", "NYSE holiday"), or None when it trades
    (half days trade)."""
    if day.weekday() >= 5:
        return f"weekend ({day:%A} {day.isoformat()})"
    if len(nyse_sessions(day, day)) == 0:
        return f"NYSE holiday ({day:%A} {day.isoformat()})"
    return None
