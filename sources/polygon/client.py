"""Polygon.io REST: :class:`PolygonClient` builds requests and follows pages.

Endpoints (https://polygon.io/docs): aggregates ``/v2/aggs/ticker/{T}/range/{m}/{span}/{from}/{to}``
(``limit`` max 50000; more pages through ``next_url``), trades and quotes ``/v3/trades|quotes/{T}``
(cursor in ``next_url``), splits and dividends ``/v3/reference/...``, news ``/v2/reference/news``,
option chain ``/v3/snapshot/options/{underlying}``, financials ``/vX/reference/financials``, the
earnings calendar ``/benzinga/v1/earnings`` (Benzinga's, resold by Polygon). Every
request carries ``apiKey`` as a query parameter, including followed ``next_url`` cursors; it never
appears in a :class:`~sources.http.Request`, a log line or an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pandas as pd

from core import model
from sources.http import (
    Page,
    Request,
    Response,
    VendorClient,
    collect,
    follow_cursor_url,
    paginate,
)
from sources.polygon.parsing import SOURCE, body_reader_for, parser_for
from sources.resilience import Resilience

DEFAULT_BASE_URL = "https://api.polygon.io"
MAX_AGGREGATES_LIMIT = 50_000
MAX_TICK_LIMIT = 50_000
MAX_REFERENCE_LIMIT = 1_000
MAX_OPTION_LIMIT = 250
MAX_EARNINGS_LIMIT = 50_000
_SPAN = {"min": "minute", "hour": "hour", "day": "day", "week": "week", "month": "month"}


def _date_param(value: Any) -> str | int:
    """Polygon takes YYYY-MM-DD or Unix ms; whole-day values stay dates (that is what users mean)."""
    ts = model.to_utc(value)
    if ts == ts.normalize():
        return ts.strftime("%Y-%m-%d")
    return int(ts.value // 1_000_000)


def _ns_param(value: Any) -> int:
    return int(model.to_utc(value).value)


def _next(response: Response) -> Request | None:
    payload = response.payload
    return follow_cursor_url(payload.get("next_url") if isinstance(payload, dict) else None, response.request)


class PolygonClient(VendorClient):
    """Polygon REST. Receives its transport (``VendorHttp``) through the constructor; use
    :meth:`create` to build one from a base URL and API key."""

    source = SOURCE

    @classmethod
    def create(
        cls,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        resilience: Resilience | None = None,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> PolygonClient:
        return cls(
            cls._transport(
                base_url,
                resilience=resilience,
                timeout_seconds=timeout_seconds,
                transport=transport,
                auth_params={"apiKey": api_key},
            )
        )

    # Aggregates ---------------------------------------------------------------------------

    def aggregates_request(
        self,
        symbol: str,
        start: Any,
        end: Any,
        *,
        timeframe: str = "1day",
        adjusted: bool = True,
        limit: int = MAX_AGGREGATES_LIMIT,
    ) -> Request:
        multiplier, unit = model.parse_timeframe(timeframe)
        ticker = model.vendor_symbol(symbol, SOURCE)
        return Request(
            SOURCE,
            "bars",
            f"/v2/aggs/ticker/{ticker}/range/{multiplier}/{_SPAN[unit]}/{_date_param(start)}/{_date_param(end)}",
            {"adjusted": str(adjusted).lower(), "sort": "asc", "limit": min(limit, MAX_AGGREGATES_LIMIT)},
            {"symbol": model.normalize_symbol(symbol), "timeframe": model.canonical_timeframe(timeframe)},
        )

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        """Pages of any request this client builds; also resumes a dead-lettered request."""
        return paginate(self.http, request, parser_for(request), _next, read_body=body_reader_for(request))

    async def aggregates(self, symbol: str, start: Any, end: Any, **kwargs: Any) -> pd.DataFrame:
        request = self.aggregates_request(symbol, start, end, **kwargs)
        return await collect(self.iter_pages(request), model.empty_frame(model.BARS))

    # Ticks --------------------------------------------------------------------------------

    def ticks_request(self, kind: str, symbol: str, start: Any, end: Any, *, limit: int = MAX_TICK_LIMIT) -> Request:
        ticker = model.vendor_symbol(symbol, SOURCE)
        return Request(
            SOURCE,
            kind,
            f"/v3/{kind}/{ticker}",
            {
                "timestamp.gte": _ns_param(start),
                "timestamp.lt": _ns_param(end),
                "order": "asc",
                "sort": "timestamp",
                "limit": min(limit, MAX_TICK_LIMIT),
            },
            {"symbol": model.normalize_symbol(symbol)},
        )

    async def trades(self, symbol: str, start: Any, end: Any, **kwargs: Any) -> pd.DataFrame:
        request = self.ticks_request("trades", symbol, start, end, **kwargs)
        return await collect(self.iter_pages(request), model.empty_frame(model.TRADES))

    async def quotes(self, symbol: str, start: Any, end: Any, **kwargs: Any) -> pd.DataFrame:
        request = self.ticks_request("quotes", symbol, start, end, **kwargs)
        return await collect(self.iter_pages(request), model.empty_frame(model.QUOTES))

    # Reference ----------------------------------------------------------------------------

    def reference_request(self, kind: str, symbol: str | None, start: Any = None, end: Any = None) -> Request:
        date_field = {"splits": "execution_date", "dividends": "ex_dividend_date"}[kind]
        params: dict[str, Any] = {"limit": MAX_REFERENCE_LIMIT, "order": "asc", "sort": date_field}
        if symbol:
            params["ticker"] = model.vendor_symbol(symbol, SOURCE)
        if start is not None:
            params[f"{date_field}.gte"] = model.to_utc(start).strftime("%Y-%m-%d")
        if end is not None:
            params[f"{date_field}.lte"] = model.to_utc(end).strftime("%Y-%m-%d")
        context = {"symbol": model.normalize_symbol(symbol)} if symbol else {}  # whose letter a failure is
        return Request(SOURCE, kind, f"/v3/reference/{kind}", params, context)

    async def splits(self, symbol: str | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
        request = self.reference_request("splits", symbol, start, end)
        return await collect(self.iter_pages(request), model.empty_frame(model.CORPORATE_ACTIONS))

    async def dividends(self, symbol: str | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
        request = self.reference_request("dividends", symbol, start, end)
        return await collect(self.iter_pages(request), model.empty_frame(model.CORPORATE_ACTIONS))

    def news_request(self, symbol: str | None, start: Any = None, end: Any = None, *, limit: int = 1000) -> Request:
        params: dict[str, Any] = {"limit": min(limit, 1000), "order": "asc", "sort": "published_utc"}
        if symbol:
            params["ticker"] = model.vendor_symbol(symbol, SOURCE)
        if start is not None:
            params["published_utc.gte"] = model.to_utc(start).strftime("%Y-%m-%dT%H:%M:%SZ")
        if end is not None:
            params["published_utc.lte"] = model.to_utc(end).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Request(SOURCE, "news", "/v2/reference/news", params)

    async def news(self, symbol: str | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
        request = self.news_request(symbol, start, end)
        return await collect(self.iter_pages(request), model.empty_frame(model.NEWS))

    def option_chain_request(self, underlying: str, *, limit: int = MAX_OPTION_LIMIT, **filters: Any) -> Request:
        ticker = model.vendor_symbol(underlying, SOURCE)
        params = {"limit": min(limit, MAX_OPTION_LIMIT), **filters}
        context = {"symbol": model.normalize_symbol(underlying)}
        return Request(SOURCE, "option_snapshots", f"/v3/snapshot/options/{ticker}", params, context)

    async def option_chain(self, underlying: str, **filters: Any) -> pd.DataFrame:
        request = self.option_chain_request(underlying, **filters)
        return await collect(self.iter_pages(request), model.empty_frame(model.OPTION_SNAPSHOTS))

    def financials_request(
        self,
        symbol: str,
        *,
        limit: int = 100,
        timeframe: str | None = None,
        filed_from: Any = None,
        filed_to: Any = None,
    ) -> Request:
        """Filings of ``symbol``, oldest filing first; ``filed_from``/``filed_to`` bound the filing
        date (restatements are new filings: an incremental run finds them by filing date)."""
        params: dict[str, Any] = {"ticker": model.vendor_symbol(symbol, SOURCE), "limit": min(limit, 100)}
        if timeframe:
            params["timeframe"] = timeframe
        if filed_from is not None or filed_to is not None:
            params.update({"sort": "filing_date", "order": "asc"})
        if filed_from is not None:
            params["filing_date.gte"] = model.to_utc(filed_from).strftime("%Y-%m-%d")
        if filed_to is not None:
            params["filing_date.lte"] = model.to_utc(filed_to).strftime("%Y-%m-%d")
        context = {"symbol": model.normalize_symbol(symbol)}
        return Request(SOURCE, "financials", "/vX/reference/financials", params, context)

    async def financials(self, symbol: str, **kwargs: Any) -> pd.DataFrame:
        request = self.financials_request(symbol, **kwargs)
        return await collect(self.iter_pages(request), model.empty_frame(model.FINANCIALS))

    def earnings_request(self, symbol: str, start: Any = None, end: Any = None, *, limit: int = 1000) -> Request:
        """Benzinga's earnings calendar (``/benzinga/v1/earnings``, a Polygon partner endpoint):
        the reports of ``symbol`` dated in [start, end], estimates and actuals as known now."""
        params: dict[str, Any] = {
            "ticker": model.vendor_symbol(symbol, SOURCE),
            "limit": min(limit, MAX_EARNINGS_LIMIT),
            "sort": "date.asc",
        }
        if start is not None:
            params["date.gte"] = model.to_utc(start).strftime("%Y-%m-%d")
        if end is not None:
            params["date.lte"] = model.to_utc(end).strftime("%Y-%m-%d")
        context = {"symbol": model.normalize_symbol(symbol)}
        return Request(SOURCE, "earnings", "/benzinga/v1/earnings", params, context)

    async def earnings(self, symbol: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        request = self.earnings_request(symbol, start, end)
        return await collect(self.iter_pages(request), model.empty_frame(model.EARNINGS))
