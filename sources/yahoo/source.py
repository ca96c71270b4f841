"""Yahoo as a :class:`~sources.base.BaseSource`: the client wired from the source's context."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sources.base import SourceContext, SymbolRequest
from sources.http import Parser, Request
from sources.vendor import VendorSource
from sources.yahoo.client import DEFAULT_BASE_URL, USER_AGENT, YahooClient
from sources.yahoo.parsing import SOURCE, parser_for


class YahooSource(VendorSource):
    name = SOURCE
    default_base_url = DEFAULT_BASE_URL

    def __init__(self, context: SourceContext | None = None) -> None:
        super().__init__(context)
        self.client = YahooClient(self._http(headers={"User-Agent": USER_AGENT}))

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any, timeframe: str = "1day") -> pd.DataFrame:
        return await self.client.bars(symbol, start_date, end_date, timeframe=timeframe)

    def first_requests(self, wanted: SymbolRequest) -> list[Request]:
        """Chart requests: of the bars (one per span Yahoo serves at once), or of the daily chart
        whose events are the corporate actions."""
        symbol, start, end = wanted.symbol, wanted.start, wanted.end
        if wanted.data_type == "market_data":
            return self.client.chart_requests(symbol, start, end, timeframe=wanted.timeframe)
        return [self.client.chart_request(symbol, start, end, timeframe="1day", dataset="corporate_actions")]

    @classmethod
    def page_parser(cls, request: Request) -> Parser:
        return parser_for(request)
