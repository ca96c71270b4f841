"""Reddit listing payloads -> canonical social posts: pure functions, no I/O.

A listing is ``{"kind": "Listing", "data": {"after", "children": [{"kind": "t3", "data": {"id",
"name", "title", "selftext", "score", "num_comments", "created_utc", "author", "permalink",
"subreddit"}}]}}``, newest first.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from core import model
from core.errors import PermanentSourceError
from sources.http import Parser, Request

SOURCE = "reddit"
SITE_URL = "https://www.reddit.com"  # permalinks are relative to it


def listing_data(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("kind") != "Listing" or not isinstance(payload.get("data"), dict):
        raise PermanentSourceError("reddit listing: expected {'kind': 'Listing', 'data': {...}}")
    children = payload["data"].get("children")
    if not isinstance(children, list):
        raise PermanentSourceError("reddit listing: 'data.children' is not a list")
    return payload["data"]


def parse_listing(payload: Any) -> pd.DataFrame:
    """Posts (``t3`` children) of a listing -> :data:`model.SOCIAL_POSTS`."""
    children = listing_data(payload)["children"]
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
            "url": (SITE_URL + permalink.astype("string")) if permalink is not None else None,
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


def parser_for(request: Request) -> Parser:
    """Listings parse the same whatever the request; stored pages are re-parsed with it."""
    return parse_listing
