"""Yahoo Finance chart API: ``parsing`` (pure parsers of its payloads), ``client``
(:class:`YahooClient`), ``source`` (:class:`YahooSource`)."""

from sources.yahoo.client import (
    DEFAULT_BASE_URL,
    USER_AGENT,
    YahooClient,
)
from sources.yahoo.parsing import (
    SOURCE,
    parse_chart_bars,
    parse_chart_events,
    parser_for,
)
from sources.yahoo.source import (
    YahooSource,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "SOURCE",
    "USER_AGENT",
    "YahooClient",
    "YahooSource",
    "parse_chart_bars",
    "parse_chart_events",
    "parser_for",
]
