"""Reddit subreddit listings (`/r/{sub}/{new,hot,top,rising}.json`) with `after` fullname paging."""

from __future__ import annotations

import time

from sandbox.handling import Payload, RequestContext, WireError, parse_int
from sandbox.news import RedditPost, post_slot, subreddit_posts
from sandbox.wire import reddit as wire

LISTINGS = ("new", "hot", "top", "rising")
TOP_WINDOW_HOURS = {"hour": 1, "day": 24, "week": 168, "month": 744, "year": 8784, "all": 8784}
MAX_LOOKBACK_HOURS = 8784


def _now_hour(ctx: RequestContext) -> int:
    """Posts exist up to the sandbox's "today"; a past as_of freezes Reddit at that day's end."""
    market = ctx.market
    end_of_as_of = int(market.calendar.midnight_ns[market.last_session]) // 3_600_000_000_000 + 23
    return min(int(time.time()) // 3600, end_of_as_of)


def listing(ctx: RequestContext) -> Payload:
    sub = ctx.path["subreddit"]
    kind = ctx.path["listing"]
    market = ctx.market
    if kind not in LISTINGS:
        raise WireError(404, wire.error_body(404, "Not Found"))
    if market.unknown_prefix and sub.upper().startswith(market.unknown_prefix):
        raise WireError(404, wire.error_body(404, "Not Found"))
    limit = min(
        parse_int(ctx.query.get("limit"), 25, "limit", 1, 10_000, lambda m: WireError(400, wire.error_body(400, m))),
        100,
    )  # Reddit clamps to 100
    after = ctx.query.get("after") or ""
    now_hour = _now_hour(ctx)
    seed = market.seed
    if kind == "new":
        posts = _new_posts(seed, sub, now_hour, after, limit)
    else:
        hours = 48 if kind in ("hot", "rising") else TOP_WINDOW_HOURS.get(ctx.query.get("t", "day"), 24)
        pool = subreddit_posts(seed, sub, now_hour - hours + 1, now_hour)
        pool.sort(key=lambda p: (-p.score, p.id))
        start = _position_after(pool, after)
        posts = pool[start : start + limit + 1]
    more = len(posts) > limit
    posts = posts[:limit]
    things = [wire.post_thing(p, sub) for p in posts]
    next_after = f"t3_{posts[-1].id}" if more and posts else None
    return Payload(wire.listing_body(things, next_after, None), [things], [])


def _position_after(posts: list[RedditPost], after: str) -> int:
    if not after:
        return 0
    ident = after.removeprefix("t3_")
    for i, p in enumerate(posts):
        if p.id == ident:
            return i + 1
    return len(posts)


def _new_posts(seed: int, sub: str, now_hour: int, after: str, limit: int) -> list[RedditPost]:
    """limit + 1 posts (the extra tells whether a next page exists), newest first, after `after`."""
    top_hour = now_hour
    if after:
        try:
            top_hour = min(now_hour, post_slot(after.removeprefix("t3_"))[0])
        except ValueError:
            return []
    out: list[RedditPost] = []
    hour = top_hour
    skipping = bool(after)
    while len(out) <= limit and hour > now_hour - MAX_LOOKBACK_HOURS:
        lo = hour - 47
        batch = subreddit_posts(seed, sub, lo, hour)
        if skipping:
            batch = batch[_position_after(batch, after) :]
            skipping = False
        out += batch
        hour = lo - 1
    return out[: limit + 1]
