"""Planted late split adjustments (`/_sandbox/late-splits`): Yahoo serves a symbol's split on its
ex date before it has adjusted its prices for it, so a test can check that a client which undoes
Yahoo's split adjustment does not undo one the vendor has not made yet.

A late split is a symbol: when the market's today is the ex date of one of its splits, Yahoo chart
responses for that one symbol (daily or intraday) list the split as usual but serve the bars and
dividend amounts before it as they were before the split: prices (and ``adjclose``) times its
ratio, volumes divided by it, dividend amounts times it. On other days the symbol is served as is.
``DELETE`` clears them.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.clock import NS
from sandbox.handling import Payload
from sandbox.market import Market

PRICES = ("open", "high", "low", "close")


def serve_split_late(chart: dict[str, Any], ex_open_s: int, ratio: float) -> int:
    """Undo, in place, a Yahoo chart body's adjustment for a split of ``ratio`` whose ex session
    opens at ``ex_open_s`` (Unix seconds): the bars and dividends before it are served as before
    the split. Returns how many bars were changed."""
    result = chart["chart"]["result"][0]
    before = [i for i, t in enumerate(result.get("timestamp") or []) if t < ex_open_s]
    if before:
        quote = result["indicators"]["quote"][0]
        columns = [quote[k] for k in PRICES] + [a["adjclose"] for a in result["indicators"].get("adjclose") or []]
        for i in before:  # in place: the payload's columns are these lists (faults hit them alike)
            for column in columns:
                if column[i] is not None:
                    column[i] = round(column[i] * ratio, 6)
            if quote["volume"][i] is not None:
                quote["volume"][i] = round(quote["volume"][i] / ratio)
    for dividend in ((result.get("events") or {}).get("dividends") or {}).values():
        if dividend["date"] < ex_open_s:
            dividend["amount"] = round(dividend["amount"] * ratio, 6)
    return len(before)


class LateSplits:
    """The symbols whose same-day split Yahoo has not applied yet (thread-safe)."""

    def __init__(self) -> None:
        self._symbols: set[str] = set()
        self._lock = threading.Lock()

    def add(self, symbol: str) -> None:
        with self._lock:
            self._symbols.add(symbol.upper())

    def clear(self) -> None:
        with self._lock:
            self._symbols.clear()

    def listed(self) -> list[str]:
        with self._lock:
            return sorted(self._symbols)

    def apply(self, vendor: str, payload: Payload, market: Market) -> int:
        """Serve a one-symbol Yahoo chart of a late symbol unadjusted for its split ex on the
        market's today (none: as is); how many bars were changed."""
        if vendor != "yahoo" or len(payload.symbols) != 1 or payload.symbols[0].upper() not in self.listed():
            return 0
        today = [s for s in market.splits(payload.symbols[0]) if s.session == market.last_session]
        if not today:
            return 0
        ex_open_s = int(market.calendar.open_ns[market.last_session]) // NS
        return serve_split_late(payload.body, ex_open_s, today[0].split_to / today[0].split_from)


def late_split_routes(late: LateSplits) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            try:
                data = orjson.loads(await request.body() or b"{}")
                late.add(str(data["symbol"]))
            except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
                return JSONResponse({"error": f"bad late split: {exc}; send {{symbol}}"}, 400)
        elif request.method == "DELETE":
            late.clear()
        return JSONResponse([{"symbol": s} for s in late.listed()])

    return [Route("/_sandbox/late-splits", endpoint, methods=["GET", "POST", "DELETE"])]
