"""Reddit as a :class:`~sources.base.BaseSource`: posts mentioning a symbol.

It has no first requests: the mentions of a symbol are filtered from several subreddits' listings,
so the collection stores the :meth:`RedditSource.fetch_data` frame as one page of records.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sources.base import SourceContext, SymbolRequest
from sources.http import Parser, Request
from sources.reddit.client import DEFAULT_BASE_URL, USER_AGENT, RedditClient
from sources.reddit.parsing import SOURCE, parser_for
from sources.vendor import VendorSource


class RedditSource(VendorSource):
    """Posts mentioning the symbol in the configured subreddits (``options["subreddits"]``)."""

    name = SOURCE
    default_base_url = DEFAULT_BASE_URL
    dataset = "social_posts"
    DEFAULT_SUBREDDITS = ("wallstreetbets", "stocks", "investing")

    def __init__(self, context: SourceContext | None = None) -> None:
        super().__init__(context)
        self.client = RedditClient(self._http(headers={"User-Agent": USER_AGENT}))
        self.subreddits = tuple(self.context.options.get("subreddits", self.DEFAULT_SUBREDDITS))

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any) -> pd.DataFrame:
        return await self.client.mentions(symbol, self.subreddits, start_date, end_date)

    def first_requests(self, wanted: SymbolRequest) -> list[Request] | None:
        """The ``social`` data type: the newest posts of each subreddit back to the start (every
        post is kept, the processing links it to the symbols it names); otherwise None (the
        mentions of :meth:`fetch_data`, stored as one records page)."""
        if wanted.data_type != "social":
            return None
        return [self.client.listing_request(sub, wanted.start) for sub in self.subreddits]

    @classmethod
    def page_parser(cls, request: Request) -> Parser:
        return parser_for(request)
