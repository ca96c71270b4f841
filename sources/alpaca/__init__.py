"""Alpaca market data: ``parsing`` (pure parsers of its payloads), ``client`` (:class:`AlpacaClient`,
requests and paging), ``source`` (:class:`AlpacaSource`)."""

from sources.alpaca.client import (
    ADJUSTMENTS,
    DEFAULT_BASE_URL,
    MAX_CORPORATE_ACTIONS_LIMIT,
    MAX_LIMIT,
    MAX_NEWS_LIMIT,
    AlpacaClient,
)
from sources.alpaca.parsing import (
    SOURCE,
    parse_bars,
    parse_corporate_actions,
    parse_news,
    parse_quotes,
    parse_trades,
    parser_for,
)
from sources.alpaca.source import (
    AlpacaSource,
)

__all__ = [
    "ADJUSTMENTS",
    "DEFAULT_BASE_URL",
    "MAX_CORPORATE_ACTIONS_LIMIT",
    "MAX_LIMIT",
    "MAX_NEWS_LIMIT",
    "SOURCE",
    "AlpacaClient",
    "AlpacaSource",
    "parse_bars",
    "parse_corporate_actions",
    "parse_news",
    "parse_quotes",
    "parse_trades",
    "parser_for",
]
