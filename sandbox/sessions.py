"""The NYSE trading calendar as flat numpy arrays, the time axis of the synthetic market.

exchange_calendars knows the holidays and half days; the market only needs, per session, the
date and the open/close instants, so they are pulled out once into int64 arrays that the
vectorized generators index by session number (session 0 = 2000-01-03).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import exchange_calendars as xcals
import numpy as np

FIRST_SESSION = date(2000, 1, 3)
NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True)
class SessionCalendar:
    """Sessions of XNYS from 2000-01-03 through `last` (inclusive), as arrays."""

    days: np.ndarray  # datetime64[D], one per session
    open_ns: np.ndarray  # int64 UTC nanoseconds of the regular open
    close_ns: np.ndarray  # int64 UTC nanoseconds of the regular close
    midnight_ns: np.ndarray  # int64 UTC nanoseconds of 00:00 America/New_York on the session date

    @classmethod
    def build(cls, last: date) -> SessionCalendar:
        end = max(last, FIRST_SESSION + timedelta(days=7))
        cal = xcals.get_calendar("XNYS", start=FIRST_SESSION.isoformat(), end=end.isoformat())
        schedule = cal.schedule
        days = schedule.index.values.astype("datetime64[D]")
        open_ns = schedule["open"].dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
        close_ns = schedule["close"].dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
        # Session date midnight in New York = open minus its 09:30 local offset, so it follows DST.
        midnight_ns = open_ns - (9 * 60 + 30) * NS_PER_MINUTE
        return cls(days=days, open_ns=open_ns, close_ns=close_ns, midnight_ns=midnight_ns)

    def __len__(self) -> int:
        return len(self.days)

    @property
    def minutes(self) -> np.ndarray:
        """Regular-session length of every session in minutes (390, or 210 on half days)."""
        return ((self.close_ns - self.open_ns) // NS_PER_MINUTE).astype(np.int64)

    def index_range(self, start: date, end: date) -> tuple[int, int]:
        """Half-open [first, stop) session indexes whose date lies in [start, end]."""
        lo = int(np.searchsorted(self.days, np.datetime64(start, "D"), side="left"))
        hi = int(np.searchsorted(self.days, np.datetime64(end, "D"), side="right"))
        return lo, max(lo, hi)

    def ns_range(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """Half-open session indexes whose regular session overlaps [start_ns, end_ns]."""
        lo = int(np.searchsorted(self.close_ns, start_ns, side="right"))
        hi = int(np.searchsorted(self.open_ns, end_ns, side="right"))
        return lo, max(lo, hi)

    def index_on_or_before(self, day: date) -> int:
        """The last session on or before `day`; -1 when there is none."""
        return int(np.searchsorted(self.days, np.datetime64(day, "D"), side="right")) - 1

    def day(self, index: int) -> date:
        return _to_date(self.days[index])

    def is_half_day(self, index: int) -> bool:
        return bool(self.minutes[index] < 390)


def _to_date(value: np.datetime64) -> date:
    return date.fromisoformat(str(value))
