"""Polygon as a :class:`~sources.base.BaseSource`: the client wired from the source's context."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sources.base import SourceContext, SymbolRequest
from sources.http import Parser, Request
from sources.polygon.client import DEFAULT_BASE_URL, PolygonClient
from sources.polygon.parsing import SOURCE, parser_for
from sources.vendor import VendorSource


class PolygonSource(VendorSource):
    name = SOURCE
    default_base_url = DEFAULT_BASE_URL

    def __init__(self, context: SourceContext | None = None) -> None:
        super().__init__(context)
        key = self._require(self.context.api_key, "vendors.polygon.api_key")
        self.client = PolygonClient(self._http(auth_params={"apiKey": key}))

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any, timeframe: str = "1day") -> pd.DataFrame:
        return await self.client.aggregates(symbol, start_date, end_date, timeframe=timeframe)

    def first_requests(self, wanted: SymbolRequest) -> list[Request]:
        """Unadjusted aggregates, the splits and dividends, the filings (by filing date) or the
        earnings calendar (by report date)."""
        symbol, start, end = wanted.symbol, wanted.start, wanted.end
        if wanted.data_type == "market_data":
            return [self.client.aggregates_request(symbol, start, end, timeframe=wanted.timeframe, adjusted=False)]
        if wanted.data_type == "fundamentals":
            return [self.client.financials_request(symbol, filed_from=start, filed_to=end)]
        if wanted.data_type == "earnings":
            return [self.client.earnings_request(symbol, start, end)]
        if wanted.data_type == "news":
            return [self.client.news_request(symbol, start, end)]
        if wanted.data_type == "options":
            return [self.client.option_chain_request(symbol)]
        return [self.client.reference_request(kind, symbol, start, end) for kind in ("splits", "dividends")]

    @classmethod
    def page_parser(cls, request: Request) -> Parser:
        return parser_for(request)
