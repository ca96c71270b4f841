"""Planted defects in filings (`/_sandbox/filing-defects`), so a test can check that the pipeline
refuses a bad filing with a reason and stores the rest.

A defect is (symbol, period end, kind): the Polygon financials results of that symbol whose
``end_date`` is that day get broken the way real feeds break, on every response until ``DELETE``:

- ``period_after_filing``: the period's end moved after its filing date (a filing from the future)
- ``negative_revenue``: revenues reported negative
- ``other_ticker``: the filing names another company's ticker only
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.handling import Payload

KINDS = ("period_after_filing", "negative_revenue", "other_ticker")


@dataclass(frozen=True)
class FilingDefect:
    symbol: str
    period_end: date
    kind: str

    @classmethod
    def from_json(cls, data: Any) -> FilingDefect:
        if not isinstance(data, dict):
            raise ValueError("a defect is an object: {symbol, period_end: YYYY-MM-DD, kind}")
        kind = str(data["kind"])
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: use one of {', '.join(KINDS)}")
        return cls(str(data["symbol"]).upper(), date.fromisoformat(str(data["period_end"])), kind)

    def to_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "period_end": self.period_end.isoformat(), "kind": self.kind}


def break_filing(record: dict[str, Any], kind: str) -> None:
    """Break one financials result in place."""
    if kind == "period_after_filing":
        record["end_date"] = (date.fromisoformat(record["filing_date"]) + timedelta(days=10)).isoformat()
    elif kind == "negative_revenue":
        revenues = record["financials"]["income_statement"]["revenues"]
        revenues["value"] = -abs(revenues["value"])
    else:
        record["tickers"] = ["ZZOTHER"]


class FilingDefects:
    """The defects of one app (thread-safe: handlers run in a thread pool)."""

    def __init__(self) -> None:
        self._defects: list[FilingDefect] = []
        self._lock = threading.Lock()

    def add(self, defect: FilingDefect) -> None:
        with self._lock:
            self._defects.append(defect)

    def clear(self) -> None:
        with self._lock:
            self._defects.clear()

    def listed(self) -> list[FilingDefect]:
        with self._lock:
            return list(self._defects)

    def apply(self, vendor: str, payload: Payload) -> int:
        """Break the matching filings of a one-symbol Polygon financials response; how many."""
        defects = [d for d in self.listed() if vendor == "polygon" and [d.symbol] == payload.symbols]
        if not defects:  # every response passes here: a bars page's records are not walked for nothing
            return 0
        changed = 0
        for records in payload.record_lists:
            for record in records:
                if not isinstance(record, dict) or "financials" not in record:
                    continue
                for defect in defects:
                    if record.get("end_date") == defect.period_end.isoformat():
                        break_filing(record, defect.kind)
                        changed += 1
        return changed


def defect_routes(defects: FilingDefects) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            try:
                defects.add(FilingDefect.from_json(orjson.loads(await request.body() or b"{}")))
            except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
                return JSONResponse({"error": f"bad defect: {exc}"}, 400)
        elif request.method == "DELETE":
            defects.clear()
        return JSONResponse([d.to_json() for d in defects.listed()])

    return [Route("/_sandbox/filing-defects", endpoint, methods=["GET", "POST", "DELETE"])]
