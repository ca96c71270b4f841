"""Reddit public listing JSON: :class:`RedditClient` pages through ``/r/{subreddit}/new.json``.

``GET /r/{subreddit}/new.json?limit=100&after=t3_...`` returns posts newest first; pagination
follows ``after`` until the page reaches back past the requested start.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pandas as pd

from core import model
from core.errors import PermanentSourceError
from sources.http import Page, Request, Response, VendorClient, collect, paginate
from sources.reddit.parsing import SITE_URL, SOURCE, listing_data, mentions, parse_listing
from sources.resilience import Resilience

DEFAULT_BASE_URL = SITE_URL
MAX_LIMIT = 100
USER_AGENT = "marketpipe/0.1 (market-data pipeline)"


def _next(response: Response) -> Request | None:
    data = listing_data(response.payload)
    after = data.get("after")
    request = response.request
    oldest = min(
        (c["data"].get("created_utc", 0) for c in data["children"] if isinstance(c, dict) and "data" in c),
        default=None,
    )
    start = request.context.get("start_epoch")
    if not after or oldest is None or (start is not None and oldest < start):
        return None
    return Request(request.source, request.dataset, request.url, {**request.params, "after": after}, request.context)


class RedditClient(VendorClient):
    """Subreddit listings. Receives its transport (``VendorHttp``) through the constructor."""

    source = SOURCE

    @classmethod
    def create(
        cls,
        *,
        base_url: str = DEFAULT_BASE_URL,
        resilience: Resilience | None = None,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> RedditClient:
        return cls(
            cls._transport(
                base_url,
                resilience=resilience,
                timeout_seconds=timeout_seconds,
                transport=transport,
                headers={"User-Agent": USER_AGENT},
            )
        )

    def listing_request(self, subreddit: str, start: Any = None, *, limit: int = MAX_LIMIT) -> Request:
        name = subreddit.removeprefix("r/").strip("/")
        if not re.fullmatch(r"[A-Za-z0-9_]{2,21}", name):
            raise PermanentSourceError(f"reddit: {subreddit!r} is not a subreddit name")
        context: dict[str, Any] = {"subreddit": name}
        if start is not None:
            context["start_epoch"] = model.to_utc(start).timestamp()
        params = {"limit": max(1, min(limit, MAX_LIMIT)), "raw_json": 1}
        return Request(SOURCE, "social_posts", f"/r/{name}/new.json", params, context)

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        return paginate(self.http, request, parse_listing, _next)

    async def posts(self, subreddit: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Posts of one subreddit created in [start, end)."""
        request = self.listing_request(subreddit, start)
        posts = await collect(self.iter_pages(request), model.empty_frame(model.SOCIAL_POSTS))
        keep = pd.Series(True, index=posts.index)
        if start is not None:
            keep &= posts["ts"] >= model.to_utc(start)
        if end is not None:
            keep &= posts["ts"] < model.to_utc(end)
        return posts[keep].drop_duplicates("id").reset_index(drop=True)

    async def mentions(
        self, symbol: str, subreddits: Sequence[str], start: Any = None, end: Any = None
    ) -> pd.DataFrame:
        frames = [await self.posts(sub, start, end) for sub in subreddits]
        posts = pd.concat(frames, ignore_index=True) if frames else model.empty_frame(model.SOCIAL_POSTS)
        return posts[mentions(posts, symbol)].reset_index(drop=True) if len(posts) else posts
