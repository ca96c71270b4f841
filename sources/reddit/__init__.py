"""Reddit listings: ``parsing`` (pure parsers of its payloads, :func:`mentions`), ``client``
(:class:`RedditClient`, requests and paging), ``source`` (:class:`RedditSource`)."""

from sources.reddit.client import (
    DEFAULT_BASE_URL,
    MAX_LIMIT,
    USER_AGENT,
    RedditClient,
)
from sources.reddit.parsing import (
    SITE_URL,
    SOURCE,
    listing_data,
    mentions,
    parse_listing,
    parser_for,
)
from sources.reddit.source import (
    RedditSource,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_LIMIT",
    "SITE_URL",
    "SOURCE",
    "USER_AGENT",
    "RedditClient",
    "RedditSource",
    "listing_data",
    "mentions",
    "parse_listing",
    "parser_for",
]
