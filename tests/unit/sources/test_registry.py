import asyncio
import textwrap

import pandas as pd
import pytest

from core.errors import ConfigurationError
from core.settings import Settings
from core import model
from sources.base import (
    ENTRY_POINT_GROUP,
    BaseSource,
    PolygonSource,
    SourceContext,
    SourceRegistry,
    build_source,
    discover_sources,
)


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


def test_build_source_routes_to_the_sandbox_unless_the_vendor_has_a_base_url():
    settings = Settings(vendors={"polygon": {"api_key": "k"}}, sandbox={"port": 9999})
    source = build_source("polygon", settings, discover_sources(use_entry_points=False))
    assert isinstance(source, PolygonSource)
    assert str(source.client.http.client.base_url).startswith("http://127.0.0.1:9999")
    direct = Settings(vendors={"polygon": {"api_key": "k", "base_url": "http://vendor.example"}})
    assert str(build_source("polygon", direct).client.http.client.base_url).startswith("http://vendor.example")


def test_build_source_takes_retry_settings_and_rate_limits():
    settings = Settings(
        vendors={"yahoo": {}},
        collection={"retry_attempts": 7, "exponential_backoff": False},
        rate_limits={"yahoo": {"requests_per_second": 2}},
    )
    source = build_source("yahoo", settings)
    resilience = source.context.resilience
    assert resilience.policy.retry_attempts == 7 and resilience.policy.exponential_backoff is False
    assert getattr(resilience.limiter, "requests_per_second", getattr(resilience.limiter, "rate", None)) == 2


def test_missing_credentials_name_the_setting_and_never_print_secrets():
    with pytest.raises(ConfigurationError, match="MARKETPIPE_VENDORS__ALPACA__API_KEY"):
        build_source("alpaca", Settings(sandbox={"route_vendors": False}))
    context = SourceContext(name="alpaca", api_key="TOPSECRET", secret_key="ALSOSECRET")
    assert "TOPSECRET" not in repr(context) and "ALSOSECRET" not in repr(context)


def test_vendors_routed_to_the_sandbox_need_no_credentials():
    source = build_source("alpaca", Settings(sandbox={"route_vendors": True}))
    try:
        assert source.context.base_url == Settings().sandbox.base_url
        assert source.context.api_key == "sandbox"
    finally:
        asyncio.run(source.aclose())
