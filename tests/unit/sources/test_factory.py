import asyncio

import pytest

from core.errors import ConfigurationError
from core.settings import Settings
from sources.base import SourceContext
from sources.factory import build_source
from sources.polygon import PolygonSource
from sources.registry import discover_sources


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
