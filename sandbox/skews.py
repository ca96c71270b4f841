"""Planted price discrepancies: one vendor serves a symbol-day's bars at other prices than the
market's (`/_sandbox/skews`), so a test can check that a pipeline which compares vendors finds
the day where one of them is wrong.

A skew is (vendor, symbol, New York date, factor): the vendor's bar records of that symbol whose
time falls on that date get their close multiplied by ``factor`` (high and low widened to hold it).
It applies to the vendors whose bar records are objects with ``t`` and ``c`` (Polygon: ``t`` in
epoch milliseconds; Alpaca: RFC 3339), on responses for that one symbol. ``DELETE`` clears them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.handling import Payload

NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class PriceSkew:
    vendor: str
    symbol: str
    day: date
    factor: float

    @classmethod
    def from_json(cls, data: Any) -> PriceSkew:
        if not isinstance(data, dict):
            raise ValueError("a skew is an object: {vendor, symbol, date: YYYY-MM-DD, factor}")
        factor = float(data["factor"])
        if not factor > 0:
            raise ValueError(f"factor {factor} must be positive")
        return cls(str(data["vendor"]), str(data["symbol"]).upper(), date.fromisoformat(str(data["date"])), factor)

    def to_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "symbol": self.symbol, "date": self.day.isoformat(), "factor": self.factor}


def record_day(stamp: Any) -> date | None:
    """The New York date of a bar record's ``t`` (epoch ms or RFC 3339), None if it has none."""
    if isinstance(stamp, int | float):
        return datetime.fromtimestamp(stamp / 1000, NEW_YORK).date()
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(NEW_YORK).date()
    return None


def skew_records(records: list[Any], day: date, factor: float) -> int:
    """Apply one skew to a list of bar records in place; returns how many were changed."""
    changed = 0
    for record in records:
        if not isinstance(record, dict) or "c" not in record or record_day(record.get("t")) != day:
            continue
        close = record["c"] * factor
        record["c"] = close
        record["h"] = max(record.get("h", close), close)
        record["l"] = min(record.get("l", close), close)
        changed += 1
    return changed


class PriceSkews:
    """The skews of one app (thread-safe: handlers run in a thread pool)."""

    def __init__(self) -> None:
        self._skews: list[PriceSkew] = []
        self._lock = threading.Lock()

    def add(self, skew: PriceSkew) -> None:
        with self._lock:
            self._skews.append(skew)

    def clear(self) -> None:
        with self._lock:
            self._skews.clear()

    def listed(self) -> list[PriceSkew]:
        with self._lock:
            return list(self._skews)

    def apply(self, vendor: str, payload: Payload) -> int:
        """Skew a response's bar records (one-symbol responses of a skewed vendor only)."""
        skews = [s for s in self.listed() if s.vendor == vendor and [s.symbol] == payload.symbols]
        return sum(skew_records(records, s.day, s.factor) for s in skews for records in payload.record_lists)


def skew_routes(skews: PriceSkews) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            try:
                skews.add(PriceSkew.from_json(orjson.loads(await request.body() or b"{}")))
            except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
                return JSONResponse({"error": f"bad skew: {exc}"}, 400)
        elif request.method == "DELETE":
            skews.clear()
        return JSONResponse([s.to_json() for s in skews.listed()])

    return [Route("/_sandbox/skews", endpoint, methods=["GET", "POST", "DELETE"])]
