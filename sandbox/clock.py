"""The sandbox's "now": nothing the market serves is stamped after it.

A real vendor serves no bar from the future, and serves the current day's daily bar (and the
forming minute) as they form. The sandbox has one clock per app that every REST endpoint and
stream asks: pinned at an instant (tests, `--now`, `POST /_sandbox/clock`) or following the wall
clock. A pinned `as_of` date alone means "after that whole day", which is how the sandbox has
always served a pinned day: every session up to it complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
NS = 1_000_000_000


def end_of_day_ns(day: date) -> int:
    """The last nanosecond of `day` in New York: every session of that day has closed."""
    midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=NEW_YORK)
    return int(midnight.timestamp()) * NS - 1


def to_ns(instant: datetime) -> int:
    """A datetime as UTC nanoseconds (naive means New York, the exchange's clock, as everywhere here)."""
    aware = instant if instant.tzinfo is not None else instant.replace(tzinfo=NEW_YORK)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1_000


def new_york_date(ns: int) -> date:
    return datetime.fromtimestamp(ns / NS, NEW_YORK).date()


def parse_now(text: str) -> datetime:
    """`2024-06-03T14:11:00-04:00`, `2024-06-03T18:11:00Z` or a date (its end, New York); naive
    times are New York's, the exchange's clock."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.fromtimestamp(end_of_day_ns(day) / NS, UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"now={text!r} is not an instant: use ISO 8601 like 2024-06-03T14:11:00-04:00 (naive = New York) "
            "or a date YYYY-MM-DD (its end)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=NEW_YORK)


class MarketClock:
    """UTC nanoseconds now: the pinned instant, else the wall clock."""

    def __init__(self, pinned_ns: int | None = None, wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.pinned_ns = pinned_ns
        self._wall_ns = wall_ns
        # One reading per request (see :meth:`frozen`): the data's cut and the Date header agree.
        self._frozen: ContextVar[int | None] = ContextVar(f"sandbox-clock-{id(self)}", default=None)

    @classmethod
    def for_config(cls, as_of: date | None, now: datetime | None) -> MarketClock:
        """`now` pins that instant; else `as_of` pins the end of that day; else the wall clock."""
        if now is not None:
            return cls(to_ns(now))
        if as_of is not None:
            return cls(end_of_day_ns(as_of))
        return cls()

    @property
    def pinned(self) -> bool:
        return self.pinned_ns is not None

    def now_ns(self) -> int:
        if self.pinned_ns is not None:
            return self.pinned_ns
        frozen = self._frozen.get()
        return frozen if frozen is not None else self._wall_ns()

    @contextmanager
    def frozen(self) -> Iterator[int]:
        """Within the block (one request), every reading is the instant it was entered: the data a
        response serves is cut at the instant its Date header states, even when a minute ends
        while the response is built."""
        token = self._frozen.set(self.now_ns())
        try:
            yield self.now_ns()
        finally:
            self._frozen.reset(token)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ns() / NS, UTC)

    def pin(self, instant_ns: int | None) -> None:
        """Pin at an instant (None: follow the wall clock)."""
        self.pinned_ns = instant_ns
