"""Reddit public listing JSON: :func:`parse_listing` and :class:`RedditClient`.

``GET /r/{subreddit}/new.json?limit=100&after=t3_...`` returns ``{"kind": "Listing", "data":
{"after", "children": [{"kind": "t3", "data": {"id", "name", "title", "selftext", "score",
"num_comments", "created_utc", "author", "permalink", "subreddit"}}]}}``, newest first. Pagination
follows ``after`` until the page reaches back past the requested start.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pandas as pd

from core.errors import PermanentSourceError
from core import model
from sources.http import Page, Request, Response, VendorClient, collect, paginate
from sources.resilience import Resilience

SOURCE = "reddit"
DEFAULT_BASE_URL = "https://www.reddit.com"
MAX_LIMIT = 100
USER_AGENT = "marketpipe/0.1 (market-data pipeline)"


def _listing(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("kind") != "Listing" or not isinstance(payload.get("data"), dict):
        raise PermanentSourceError("reddit listing: expected {'kind': 'Listing', 'data': {...}}")
    children = payload["data"].get("children")
    if not isinstance(children, list):
        raise PermanentSourceError("reddit listing: 'data.children' is not a list")
    return payload["data"]


def parse_listing(payload: Any) -> pd.DataFrame:
    """Posts (``t3`` children) of a listing -> :data:`model.SOCIAL_POSTS`."""
    children = _listing(payload)["children"]
    posts = [c.get("data") for c in children if isinstance(c, dict) and c.get("kind") == "t3"]
    raw = model.require_keys(posts, ("id", "title", "created_utc"), what="reddit listing")
    if not len(raw):
        return model.empty_frame(model.SOCIAL_POSTS)
    permalink = raw.get("permalink")
    return model.frame(
        model.SOCIAL_POSTS,
        {
            "id": raw["id"].astype(str),
            "ts": model.epoch_to_utc(raw["created_utc"], "s"),
            "community": raw.get("subreddit"),
            "author": raw.get("author"),
            "title": raw["title"],
            "body": raw["selftext"].fillna("") if "selftext" in raw else "",
            "score": raw["score"].fillna(0) if "score" in raw else 0,
            "comments": raw["num_comments"].fillna(0) if "num_comments" in raw else 0,
            "url": (DEFAULT_BASE_URL + permalink.astype("string")) if permalink is not None else None,
            "source": SOURCE,
        },
        what="reddit listing",
    )


def mentions(posts: pd.DataFrame, symbol: str) -> pd.Series:
    """Posts whose title or body names ``symbol`` as a word or a $cashtag (BRK.B also as BRK-B)."""
    canonical = model.normalize_symbol(symbol)
    spellings = {canonical, model.vendor_symbol(canonical, "yahoo")}
    alternatives = "|".join(re.escape(s) for s in sorted(spellings))
    pattern = rf"(?<![A-Za-z0-9])\$?(?:{alternatives})(?![A-Za-z0-9])"
    text = posts["title"].fillna("") + " " + posts["body"].fillna("")
    return text.str.contains(pattern, regex=True)


def _next(response: Response) -> Request | None:
    data = _listing(response.payload)
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
        return cls(cls._transport(base_url, resilience=resilience, timeout_seconds=timeout_seconds,
                                  transport=transport, headers={"User-Agent": USER_AGENT}))  # fmt: skip

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


def parser_for(request: Request) -> Any:
    """Listings parse the same whatever the request; stored pages are re-parsed with it."""
    return parse_listing
