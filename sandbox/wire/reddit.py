"""Reddit listing JSON (`/r/{subreddit}/{new,hot,top}.json`): `Listing` of `t3` things."""

from __future__ import annotations

from typing import Any

from sandbox.news import RedditPost


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"message": message, "error": status}


def post_thing(post: RedditPost, subreddit: str) -> dict[str, Any]:
    permalink = f"/r/{subreddit}/comments/{post.id}/{post.title.lower().replace(' ', '_')[:40]}/"
    return {
        "kind": "t3",
        "data": {
            "id": post.id,
            "name": f"t3_{post.id}",
            "title": post.title,
            "selftext": post.selftext,
            "author": post.author,
            "subreddit": subreddit,
            "subreddit_name_prefixed": f"r/{subreddit}",
            "score": post.score,
            "ups": post.score,
            "downs": 0,
            "upvote_ratio": post.upvote_ratio,
            "num_comments": post.num_comments,
            "created_utc": float(post.created_utc),
            "created": float(post.created_utc),
            "permalink": permalink,
            "url": f"https://www.reddit.com{permalink}",
            "is_self": True,
            "over_18": False,
            "stickied": False,
            "link_flair_text": {"positive": "Bullish", "negative": "Bearish"}.get(post.sentiment, "Discussion"),
        },
    }


def listing_body(things: list[dict[str, Any]], after: str | None, before: str | None) -> dict[str, Any]:
    return {
        "kind": "Listing",
        "data": {
            "after": after,
            "dist": len(things),
            "modhash": "",
            "geo_filter": "",
            "children": things,
            "before": before,
        },
    }
