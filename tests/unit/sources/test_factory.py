import asyncio
import contextlib
from collections.abc import Iterator

import pytest
from loguru import logger
from prefect.settings import PREFECT_API_URL, temporary_settings

from core.errors import ConfigurationError
from core.settings import Settings
from sources.base import SourceContext
from sources.factory import build_source
from sources.polygon import PolygonSource
from sources.registry import discover_sources
from sources.resilience import PrefectRateLimiter, TokenBucket


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


@contextlib.contextmanager
def no_prefect_server() -> Iterator[None]:
    """A process started without PREFECT_API_URL (outside the marketpipe command)."""
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


def test_without_a_prefect_server_a_rate_limited_source_is_refused_by_default():
    """Each process would keep the limit alone: N workers, N x the vendor's limit."""
    with no_prefect_server(), pytest.raises(ConfigurationError) as refused:
        build_source("polygon", Settings(sandbox={"route_vendors": True}))
    message = str(refused.value)
    assert "PREFECT_API_URL" in message and "N x 50 requests/s" in message
    assert "MARKETPIPE_COLLECTION__SHARED_RATE_LIMIT_REQUIRED=false" in message


def test_without_a_prefect_server_a_per_process_limit_can_be_chosen_and_is_warned_about():
    settings = Settings(sandbox={"route_vendors": True}, collection={"shared_rate_limit_required": False})
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        with no_prefect_server():
            source = build_source("polygon", settings)
    finally:
        logger.remove(sink)
    try:
        assert isinstance(source.context.resilience.limiter, TokenBucket)
        assert any("PREFECT_API_URL is not set" in line and "N x 50 requests/s" in line for line in warnings)
    finally:
        asyncio.run(source.aclose())


def test_with_a_prefect_server_the_rate_limit_is_shared_without_a_warning():
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:1/api"}):
            source = build_source("polygon", Settings(sandbox={"route_vendors": True}))
    finally:
        logger.remove(sink)
    try:
        assert isinstance(source.context.resilience.limiter, PrefectRateLimiter)
        assert not any("PREFECT_API_URL" in line for line in warnings)
    finally:
        asyncio.run(source.aclose())
