"""The replay clock: which market instant is "now" for a stream, and a message-rate token bucket.

A replay covers one or more sessions back to back. Each session is a segment of market time, from
its first due instant (the open, or `from` in the first session) to its horizon (the close plus
enough for the last minute bar, late trades and corrections). The replay position is how much
market time has been replayed since the start; wall time maps to it through `speed`, so a clock
is pure arithmetic over an injected wall time and testable without sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import numpy as np

from sandbox.sessions import SessionCalendar

NEW_YORK = ZoneInfo("America/New_York")
NS = 1_000_000_000
#: Past the close a session still emits its last minute bar, late trades and corrections.
HORIZON_SLACK_NS = 61 * NS


@dataclass(frozen=True)
class Segment:
    session: int
    start_ns: int  # first due instant replayed
    end_ns: int  # horizon: nothing of this session is due at or after it


def first_session_on_or_after(calendar: SessionCalendar, day: date, last_session: int) -> int:
    index = int(np.searchsorted(calendar.days, np.datetime64(day, "D"), side="left"))
    if index > last_session:
        last = calendar.day(last_session)
        raise ValueError(f"session={day} is after the market's last session {last}; pick a day up to it")
    return index


def plan_segments(
    calendar: SessionCalendar, last_session: int, session: date | None, sessions: int, start: time, late_s: float
) -> list[Segment]:
    """The segments of a replay of `sessions` sessions from `session` at `start` (New York time)."""
    first = last_session if session is None else first_session_on_or_after(calendar, session, last_session)
    stop = min(first + sessions, last_session + 1)
    out = []
    for s in range(first, stop):
        open_ns, close_ns = int(calendar.open_ns[s]), int(calendar.close_ns[s])
        begin = open_ns
        if s == first:
            local = datetime.combine(calendar.day(s), start, tzinfo=NEW_YORK)
            begin = max(open_ns, int(local.timestamp()) * NS)
        end = close_ns + HORIZON_SLACK_NS + int(late_s * NS) + NS
        out.append(Segment(s, min(begin, end), end))
    return out


#: A news day runs from its midnight (New York) to past the next midnight: a story of the session is
#: published 06:00-20:00, its Alpaca copy follows within 30 minutes, an update within ~4 hours more.
NEWS_DAY_NS = 26 * 3_600 * NS


def plan_news_segments(
    calendar: SessionCalendar, last_session: int, session: date | None, sessions: int, start: time
) -> list[Segment]:
    """The segments of a news replay: each session's whole news day (`start` in the first one, New
    York time) rather than its trading hours, since news is published before the open and after the
    close. Consecutive days overlap by two hours of market time; each segment only carries the news
    of its own session's stories, so nothing is sent twice."""
    first = last_session if session is None else first_session_on_or_after(calendar, session, last_session)
    stop = min(first + sessions, last_session + 1)
    out = []
    for s in range(first, stop):
        midnight = int(calendar.midnight_ns[s])
        begin = midnight
        if s == first:
            local = datetime.combine(calendar.day(s), start, tzinfo=NEW_YORK)
            begin = max(midnight, int(local.timestamp()) * NS)
        out.append(Segment(s, begin, midnight + NEWS_DAY_NS))
    return out


class ReplayClock:
    """Maps wall seconds to a replay position over segments at `speed` (0 = unbounded)."""

    def __init__(self, segments: list[Segment], speed: float, started_at: float) -> None:
        self.segments = segments
        self.speed = speed
        self.started_at = started_at
        self._offsets = np.cumsum([0] + [s.end_ns - s.start_ns for s in segments]).tolist()

    @property
    def length_ns(self) -> int:
        return int(self._offsets[-1])

    def position_ns(self, wall: float) -> float:
        if self.speed <= 0:
            return math.inf
        return max(0.0, (wall - self.started_at) * self.speed * NS)

    def locate(self, position_ns: float) -> tuple[int, int] | None:
        """(segment index, market ns) of a replay position; None once the replay is over."""
        if position_ns >= self.length_ns:
            return None
        index = int(np.searchsorted(self._offsets, position_ns, side="right")) - 1
        segment = self.segments[index]
        return index, segment.start_ns + int(position_ns - self._offsets[index])

    def now(self, wall: float) -> tuple[int, int] | None:
        return self.locate(self.position_ns(wall))

    def wall_at(self, index: int, market_ns: int) -> float:
        """The wall instant at which `market_ns` of segment `index` becomes due."""
        if self.speed <= 0:
            return self.started_at
        position = self._offsets[index] + (market_ns - self.segments[index].start_ns)
        return self.started_at + position / (self.speed * NS)

    def done(self, wall: float) -> bool:
        return self.position_ns(wall) >= self.length_ns


class TokenBucket:
    """`rate` tokens per second, at most `burst` banked: paces messages by count."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = 0.0
        self.at = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, now: float, want: int) -> int:
        self.refill(now)
        got = min(want, int(self.tokens))
        self.tokens -= got
        return got

    def wait_s(self, now: float, want: int = 1) -> float:
        self.refill(now)
        return max(0.0, (min(want, self.burst) - self.tokens) / self.rate)
