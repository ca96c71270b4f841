"""Alpaca as a :class:`~sources.base.BaseSource`: the client wired from the source's context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sources.alpaca.client import DEFAULT_BASE_URL, AlpacaClient
from sources.alpaca.parsing import SOURCE, parser_for
from sources.base import SourceContext, SymbolRequest
from sources.http import Parser, Request
from sources.vendor import VendorSource


class AlpacaSource(VendorSource):
    """Options: ``feed`` (the SIP/IEX feed) and ``adjustment`` (of :meth:`fetch_data`, default all)."""

    name = SOURCE
    default_base_url = DEFAULT_BASE_URL

    def __init__(self, context: SourceContext | None = None) -> None:
        super().__init__(context)
        headers = {
            "APCA-API-KEY-ID": self._require(self.context.api_key, "vendors.alpaca.api_key"),
            "APCA-API-SECRET-KEY": self._require(self.context.secret_key, "vendors.alpaca.secret_key"),
        }
        self.client = AlpacaClient(self._http(headers=headers), feed=self.context.options.get("feed"))

    async def fetch_data(
        self, symbol: str | Sequence[str], start_date: Any, end_date: Any, timeframe: str = "1day"
    ) -> pd.DataFrame:
        """Accepts several symbols too: Alpaca serves them in one paged request."""
        adjustment = self.context.options.get("adjustment", "all")
        return await self.client.bars(symbol, start_date, end_date, timeframe=timeframe, adjustment=adjustment)

    def first_requests(self, wanted: SymbolRequest) -> list[Request]:
        """Raw (unadjusted) bars, or the corporate actions."""
        symbols, start, end = [wanted.symbol], wanted.start, wanted.end
        if wanted.data_type == "market_data":
            return [self.client.bars_request(symbols, start, end, timeframe=wanted.timeframe, adjustment="raw")]
        if wanted.data_type == "news":
            return [self.client.news_request(symbols, start, end)]
        return [self.client.corporate_actions_request(symbols, start, end)]

    @classmethod
    def page_parser(cls, request: Request) -> Parser:
        return parser_for(request)
