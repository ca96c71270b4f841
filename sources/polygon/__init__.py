"""Polygon.io: ``parsing`` (pure parsers of its payloads), ``client`` (:class:`PolygonClient`,
requests and paging), ``source`` (:class:`PolygonSource`)."""

from sources.polygon.client import (
    DEFAULT_BASE_URL,
    MAX_AGGREGATES_LIMIT,
    MAX_OPTION_LIMIT,
    MAX_REFERENCE_LIMIT,
    MAX_TICK_LIMIT,
    PolygonClient,
)
from sources.polygon.parsing import (
    SOURCE,
    parse_aggregates,
    parse_dividends,
    parse_financials,
    parse_news,
    parse_option_chain,
    parse_quotes,
    parse_splits,
    parse_trades,
    parser_for,
)
from sources.polygon.source import (
    PolygonSource,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_AGGREGATES_LIMIT",
    "MAX_OPTION_LIMIT",
    "MAX_REFERENCE_LIMIT",
    "MAX_TICK_LIMIT",
    "SOURCE",
    "PolygonClient",
    "PolygonSource",
    "parse_aggregates",
    "parse_dividends",
    "parse_financials",
    "parse_news",
    "parse_option_chain",
    "parse_quotes",
    "parse_splits",
    "parse_trades",
    "parser_for",
]
