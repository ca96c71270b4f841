"""Vendor-neutral request plumbing: the context a handler sees, its result, and parameter parsing.

Handlers are plain functions `handler(ctx) -> Payload` that raise `WireError` with the vendor's
status and body; the Starlette layer (app.py) adds auth, faults, stats and serialization. That
keeps every wire format testable without a server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.market import Market

NEW_YORK = ZoneInfo("America/New_York")


class WireError(Exception):
    """A vendor-style error response: status, JSON body, extra headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


@dataclass
class RequestContext:
    market: Market
    query: Mapping[str, str]
    path: Mapping[str, str]
    base_url: str  # scheme://host:port, no trailing slash; next_url must carry it for SDKs
    request_id: str


@dataclass
class Payload:
    body: Any
    record_lists: list[list[Any]] = field(default_factory=list)  # lists inside `body` that hold records
    symbols: list[str] = field(default_factory=list)
    columns: list[list[Any]] = field(default_factory=list)  # parallel arrays (Yahoo): faults hit all alike

    @property
    def record_count(self) -> int:
        if self.columns:
            return len(self.columns[0])
        return sum(len(r) for r in self.record_lists)


Handler = Callable[[RequestContext], Payload]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT = re.compile(r"^-?\d+$")


def ny_midnight_ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp()) * 1_000_000_000


def parse_instant(text: str, *, end_of_day: bool = False, int_unit_ns: int = 1) -> int:
    """A date (New York day start, or its end with `end_of_day`), RFC 3339 time, or integer epoch.

    `int_unit_ns` is what an integer counts: 1 for nanoseconds, 1_000_000 for milliseconds, ...
    Raises ValueError on anything else.
    """
    text = text.strip()
    if _DATE.match(text):
        day = date.fromisoformat(text)
        if end_of_day:
            return ny_midnight_ns(day + timedelta(days=1)) - 1
        return ny_midnight_ns(day)
    if _INT.match(text):
        return int(text) * int_unit_ns
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    return seconds * 1_000_000_000 + moment.microsecond * 1000


def parse_int(
    value: str | None, default: int, name: str, low: int, high: int, error: Callable[[str], WireError]
) -> int:
    if value is None or value == "":
        return default
    if not _INT.match(value.strip()):
        raise error(f"invalid {name}: {value!r} is not an integer")
    number = int(value)
    if not low <= number <= high:
        raise error(f"invalid {name}: {number} is outside [{low}, {high}]")
    return number


def parse_choice(
    value: str | None, default: str, name: str, choices: tuple[str, ...], error: Callable[[str], WireError]
) -> str:
    if value is None or value == "":
        return default
    if value not in choices:
        raise error(f"invalid {name}: {value!r}; expected one of {', '.join(choices)}")
    return value


def range_bounds(
    query: Mapping[str, str], name: str, parse: Callable[[str, bool], int], error: Callable[[str], WireError]
) -> tuple[int | None, int | None]:
    """Polygon-style `name`, `name.gte/.gt/.lte/.lt` filters as an inclusive [low, high] pair."""
    low: int | None = None
    high: int | None = None
    try:
        if query.get(name):
            low, high = parse(query[name], False), parse(query[name], True)
        if query.get(f"{name}.gte"):
            low = parse(query[f"{name}.gte"], False)
        if query.get(f"{name}.gt"):
            low = parse(query[f"{name}.gt"], True) + 1
        if query.get(f"{name}.lte"):
            high = parse(query[f"{name}.lte"], True)
        if query.get(f"{name}.lt"):
            high = parse(query[f"{name}.lt"], False) - 1
    except ValueError as exc:
        raise error(f"invalid {name} filter: {exc}") from exc
    return low, high


def date_ordinal(text: str, end: bool) -> int:
    """Parse a YYYY-MM-DD for date-valued range filters; `end` is ignored (dates are inclusive)."""
    del end
    return date.fromisoformat(text.strip()).toordinal()
