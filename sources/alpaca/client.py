"""Alpaca market data: :class:`AlpacaClient` builds requests and follows pages.

Endpoints (https://docs.alpaca.markets/reference): bars ``/v2/stocks/bars?symbols=A,B``, trades and
quotes ``/v2/stocks/trades|quotes``, news ``/v1beta1/news``, corporate actions
``/v1/corporate-actions``; more pages through ``next_page_token``. Auth travels in the
``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` headers, which are never logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pandas as pd

from core import model
from core.errors import PermanentSourceError
from sources.alpaca.parsing import SOURCE, parser_for
from sources.http import Page, Request, Response, VendorClient, VendorHttp, collect, paginate
from sources.resilience import Resilience

DEFAULT_BASE_URL = "https://data.alpaca.markets"
MAX_LIMIT = 10_000
MAX_NEWS_LIMIT = 50
MAX_CORPORATE_ACTIONS_LIMIT = 1_000
ADJUSTMENTS = ("raw", "split", "dividend", "all")
_UNIT = {"min": "Min", "hour": "Hour", "day": "Day", "week": "Week", "month": "Month"}


def _rfc3339(value: Any) -> str:
    return model.to_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next(response: Response) -> Request | None:
    payload = response.payload
    token = payload.get("next_page_token") if isinstance(payload, dict) else None
    if not token:
        return None
    request = response.request
    return Request(
        request.source, request.dataset, request.url, {**request.params, "page_token": token}, request.context
    )


def _symbols_param(symbols: str | Sequence[str]) -> str:
    items = [symbols] if isinstance(symbols, str) else list(symbols)
    if not items:
        raise PermanentSourceError("alpaca: at least one symbol is required")
    return ",".join(model.vendor_symbol(s, SOURCE) for s in items)


class AlpacaClient(VendorClient):
    """Alpaca market data. Receives its transport (``VendorHttp``) through the constructor; use
    :meth:`create` to build one from a base URL and key pair."""

    source = SOURCE

    def __init__(self, http: VendorHttp, *, feed: str | None = None) -> None:
        super().__init__(http)
        self.feed = feed

    @classmethod
    def create(
        cls,
        api_key: str,
        secret_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        feed: str | None = None,
        resilience: Resilience | None = None,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AlpacaClient:
        headers = {"APCA-API-KEY-ID": api_key, "APCA-API-SECRET-KEY": secret_key}
        http = cls._transport(
            base_url, resilience=resilience, timeout_seconds=timeout_seconds, transport=transport, headers=headers
        )
        return cls(http, feed=feed)

    def __repr__(self) -> str:
        return f"AlpacaClient({self.http!r}, feed={self.feed!r})"

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        """Pages of any request this client builds; also resumes a dead-lettered request."""
        return paginate(self.http, request, parser_for(request), _next)

    def _market_request(
        self,
        dataset: str,
        symbols: str | Sequence[str],
        start: Any,
        end: Any,
        limit: int,
        extra: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> Request:
        params: dict[str, Any] = {
            "symbols": _symbols_param(symbols),
            "start": _rfc3339(start),
            "end": _rfc3339(end),
            "limit": max(1, min(limit, MAX_LIMIT)),
            "sort": "asc",
            **(extra or {}),
        }
        if self.feed:
            params["feed"] = self.feed
        return Request(SOURCE, dataset, f"/v2/stocks/{dataset}", params, context or {})

    def bars_request(
        self,
        symbols: str | Sequence[str],
        start: Any,
        end: Any,
        *,
        timeframe: str = "1day",
        adjustment: str = "all",
        limit: int = MAX_LIMIT,
    ) -> Request:
        if adjustment not in ADJUSTMENTS:
            raise PermanentSourceError(f"alpaca adjustment {adjustment!r} is not one of {', '.join(ADJUSTMENTS)}")
        multiplier, unit = model.parse_timeframe(timeframe)
        return self._market_request(
            "bars",
            symbols,
            start,
            end,
            limit,
            {"timeframe": f"{multiplier}{_UNIT[unit]}", "adjustment": adjustment},
            {"timeframe": model.canonical_timeframe(timeframe)},
        )

    async def bars(self, symbols: str | Sequence[str], start: Any, end: Any, **kwargs: Any) -> pd.DataFrame:
        request = self.bars_request(symbols, start, end, **kwargs)
        return await collect(self.iter_pages(request), model.empty_frame(model.BARS))

    async def trades(
        self, symbols: str | Sequence[str], start: Any, end: Any, *, limit: int = MAX_LIMIT
    ) -> pd.DataFrame:
        request = self._market_request("trades", symbols, start, end, limit)
        return await collect(self.iter_pages(request), model.empty_frame(model.TRADES))

    async def quotes(
        self, symbols: str | Sequence[str], start: Any, end: Any, *, limit: int = MAX_LIMIT
    ) -> pd.DataFrame:
        request = self._market_request("quotes", symbols, start, end, limit)
        return await collect(self.iter_pages(request), model.empty_frame(model.QUOTES))

    def news_request(
        self, symbols: str | Sequence[str] | None = None, start: Any = None, end: Any = None, *, limit: int = 50
    ) -> Request:
        params: dict[str, Any] = {"limit": max(1, min(limit, MAX_NEWS_LIMIT)), "sort": "asc"}
        if symbols:
            params["symbols"] = _symbols_param(symbols)
        if start is not None:
            params["start"] = _rfc3339(start)
        if end is not None:
            params["end"] = _rfc3339(end)
        return Request(SOURCE, "news", "/v1beta1/news", params)

    async def news(
        self, symbols: str | Sequence[str] | None = None, start: Any = None, end: Any = None
    ) -> pd.DataFrame:
        request = self.news_request(symbols, start, end)
        return await collect(self.iter_pages(request), model.empty_frame(model.NEWS))

    def corporate_actions_request(
        self, symbols: str | Sequence[str], start: Any = None, end: Any = None, *, types: Sequence[str] = ()
    ) -> Request:
        params: dict[str, Any] = {"symbols": _symbols_param(symbols), "limit": MAX_CORPORATE_ACTIONS_LIMIT}
        if types:
            params["types"] = ",".join(types)
        if start is not None:
            params["start"] = model.to_utc(start).strftime("%Y-%m-%d")
        if end is not None:
            params["end"] = model.to_utc(end).strftime("%Y-%m-%d")
        items = [symbols] if isinstance(symbols, str) else list(symbols)
        # one symbol's request names it in its context: whose dead letter a failure is
        context = {"symbol": model.normalize_symbol(items[0])} if len(items) == 1 else {}
        return Request(SOURCE, "corporate_actions", "/v1/corporate-actions", params, context)

    async def corporate_actions(self, symbols: str | Sequence[str], start: Any = None, end: Any = None) -> pd.DataFrame:
        request = self.corporate_actions_request(symbols, start, end)
        return await collect(self.iter_pages(request), model.empty_frame(model.CORPORATE_ACTIONS))
