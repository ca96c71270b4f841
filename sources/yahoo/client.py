"""Yahoo Finance chart API: :class:`YahooClient` builds ``/v8/finance/chart/{T}`` requests.

One request covers the whole range; its response holds both the bars and the corporate actions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pandas as pd

from core import model
from core.errors import PermanentSourceError
from sources.http import Page, Request, VendorClient, collect, paginate
from sources.resilience import Resilience
from sources.yahoo.parsing import SOURCE, parse_chart_events, parser_for

DEFAULT_BASE_URL = "https://query1.finance.yahoo.com"
USER_AGENT = "marketpipe/0.1"
_INTERVAL = {
    (1, "min"): "1m",
    (2, "min"): "2m",
    (5, "min"): "5m",
    (15, "min"): "15m",
    (30, "min"): "30m",
    (60, "min"): "60m",
    (90, "min"): "90m",
    (1, "hour"): "1h",
    (1, "day"): "1d",
    (5, "day"): "5d",
    (1, "week"): "1wk",
    (1, "month"): "1mo",
    (3, "month"): "3mo",
}


class YahooClient(VendorClient):
    """Yahoo chart API. Receives its transport (``VendorHttp``) through the constructor."""

    source = SOURCE

    @classmethod
    def create(
        cls,
        *,
        base_url: str = DEFAULT_BASE_URL,
        resilience: Resilience | None = None,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> YahooClient:
        return cls(
            cls._transport(
                base_url,
                resilience=resilience,
                timeout_seconds=timeout_seconds,
                transport=transport,
                headers={"User-Agent": USER_AGENT},
            )
        )

    def chart_request(self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day") -> Request:
        interval = _INTERVAL.get(model.parse_timeframe(timeframe))
        if interval is None:
            raise PermanentSourceError(
                f"yahoo has no interval for timeframe {timeframe!r}; use one of "
                + ", ".join(f"{m}{u}" for m, u in _INTERVAL)
            )
        return Request(
            SOURCE,
            "chart",
            f"/v8/finance/chart/{model.vendor_symbol(symbol, SOURCE)}",
            {
                "period1": int(model.to_utc(start).timestamp()),
                "period2": int(model.to_utc(end).timestamp()),
                "interval": interval,
                "events": "div,splits",
                "includeAdjustedClose": "true",
            },
            {"symbol": model.normalize_symbol(symbol), "timeframe": model.canonical_timeframe(timeframe)},
        )

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        """The chart is one page; its frame holds the bars (events: :meth:`corporate_actions`)."""
        return paginate(self.http, request, parser_for(request), lambda response: None)

    async def bars(self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day") -> pd.DataFrame:
        request = self.chart_request(symbol, start, end, timeframe=timeframe)
        return await collect(self.iter_pages(request), model.empty_frame(model.BARS))

    async def chart(
        self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day"
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Bars and corporate actions from one request."""
        request = self.chart_request(symbol, start, end, timeframe=timeframe)
        page = await anext(self.iter_pages(request))
        return page.frame, parse_chart_events(page.payload, symbol=symbol)

    async def corporate_actions(self, symbol: str, start: Any, end: Any) -> pd.DataFrame:
        return (await self.chart(symbol, start, end))[1]
