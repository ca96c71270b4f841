"""Which sources a request may name: the registry the settings build, plugins included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import RequestError
from core.settings import Settings
from pipeline.request import parse_ingest_request
from sources.base import BaseSource
from sources.factory import market_data_sources
from sources.registry import SourceRegistry

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


class HomeGrown(BaseSource):
    async def fetch_data(self, symbol, start_date, end_date):  # pragma: no cover - never fetched here
        raise NotImplementedError


def homegrown_factory(context):  # pragma: no cover - never called here
    return HomeGrown(context)


def ask(source: str, known_sources=None):
    return parse_ingest_request(
        data_type="market_data",
        symbols="AAPL",
        start_date="2026-10-01",
        end_date="2026-10-31",
        source=source,
        known_sources=known_sources,
        now=NOW,
    )


def test_a_plugin_in_the_settings_is_a_source_a_request_may_name() -> None:
    settings = Settings(sources={"homegrown": f"{__name__}:HomeGrown"})
    assert ask("homegrown", market_data_sources(settings)).source == "homegrown"


def test_without_settings_only_the_built_in_vendors_are_known() -> None:
    with pytest.raises(RequestError, match="unknown source 'homegrown'"):
        ask("homegrown")
    assert ask("yahoo").source == "yahoo"


def test_an_unknown_source_lists_the_known_ones_and_says_how_to_register_one() -> None:
    settings = Settings(sources={"homegrown": f"{__name__}:HomeGrown"})
    with pytest.raises(RequestError) as err:
        ask("homegrow", market_data_sources(settings))
    message = str(err.value)
    assert "'homegrow'" in message and "alpaca, homegrown, polygon, yahoo" in message
    assert "sources: {homegrow: 'package.module:Class'}" in message and "'marketpipe.sources' entry point" in message


def test_sources_of_other_datasets_are_not_market_data_sources_but_factory_functions_are() -> None:
    registry = SourceRegistry.builtin()
    registry.register("homegrown", homegrown_factory)
    names = registry.market_data_names()
    assert "reddit" not in names  # posts, not bars
    assert {"polygon", "alpaca", "yahoo", "homegrown"} <= set(names)
