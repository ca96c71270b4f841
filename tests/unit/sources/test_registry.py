import asyncio
import textwrap

import pandas as pd
import pytest

from core import model
from core.errors import ConfigurationError, PermanentSourceError
from sources.base import BaseSource
from sources.http import Request
from sources.records import RECORDS_DATASET
from sources.registry import ENTRY_POINT_GROUP, SourceRegistry, discover_sources


class CustomDataSource(BaseSource):
    """Written exactly as the seed shows: no constructor, only fetch_data."""

    async def fetch_data(self, symbol, start_date, end_date):
        return model.frame(
            model.BARS,
            {
                "symbol": [symbol],
                "ts": [start_date],
                "timeframe": "1day",
                "open": [1.0],
                "high": [1.0],
                "low": [1.0],
                "close": [1.0],
                "volume": [1],
                "source": "custom",
            },
            what="custom",
        )


def not_a_source(context):
    return object()


def test_builtins_are_registered_under_their_vendor_names():
    registry = discover_sources(use_entry_points=False)
    assert {"polygon", "alpaca", "yahoo", "reddit"} <= set(registry.names())


def test_a_seed_style_plugin_loads_by_import_path_and_fetches():
    registry = discover_sources({"custom": f"{__name__}:CustomDataSource"}, use_entry_points=False)
    source = registry.create("custom")
    frame = asyncio.run(source.fetch_data("brk-b", "2023-01-03", "2023-01-04"))
    assert isinstance(source, CustomDataSource) and source.context.name == "custom"
    assert frame.loc[0, "ts"] == pd.Timestamp("2023-01-03T00:00:00Z")
    assert source.health()["healthy"] is True


def test_settings_import_paths_override_builtins():
    registry = discover_sources({"yahoo": f"{__name__}.CustomDataSource"}, use_entry_points=False)
    assert isinstance(registry.create("yahoo"), CustomDataSource)


def test_plugins_load_from_the_entry_point_group(tmp_path, monkeypatch):
    (tmp_path / "acme_source.py").write_text(
        textwrap.dedent(
            """
            from sources.base import BaseSource

            class AcmeSource(BaseSource):
                async def fetch_data(self, symbol, start_date, end_date):
                    return symbol
            """
        )
    )
    dist = tmp_path / "acme_source-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-source\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nacme = acme_source:AcmeSource\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = discover_sources()
    assert "acme" in registry.names()
    assert asyncio.run(registry.create("acme").fetch_data("X", None, None)) == "X"


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(ConfigurationError, match=r"unknown source 'nope'.*polygon"):
        discover_sources(use_entry_points=False).create("nope")


@pytest.mark.parametrize("path", ["no_such_module_xyz:Thing", f"{__name__}:Missing", "justaname"])
def test_bad_import_paths_are_configuration_errors(path):
    with pytest.raises(ConfigurationError):
        discover_sources({"bad": path}, use_entry_points=False)


def test_a_factory_must_build_a_base_source():
    registry = SourceRegistry({"odd": not_a_source})
    with pytest.raises(ConfigurationError, match="not a BaseSource"):
        registry.create("odd")


def test_stored_pages_parse_with_their_sources_parser_and_records_with_any_name():
    registry = discover_sources(use_entry_points=False)
    payload = {"bars": {"AAPL": [{"t": "2023-01-03T05:00:00Z", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10}]}}
    bars = registry.parse_page("alpaca", Request("alpaca", "bars", "/v2/stocks/bars"), payload)
    assert bars["source"].tolist() == ["alpaca"]
    records = registry.parse_page("custom-x", Request("custom-x", RECORDS_DATASET, "plugin:custom-x"), [])
    assert list(records.columns) == list(model.BARS) and len(records) == 0


def test_a_source_without_pages_has_no_parser_for_vendor_pages():
    registry = SourceRegistry({"custom": CustomDataSource})
    with pytest.raises(PermanentSourceError, match="no parser for stored pages of source 'custom'"):
        registry.parse_page("custom", Request("custom", "bars", "/x"), {})
