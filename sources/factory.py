"""Wiring one source from the settings object.

:func:`build_source` gives a source its base URL (the vendor's, or the market sandbox when
``sandbox.route_vendors``), credentials, timeout, and its resilience (retry policy from
``collection.*``, a circuit breaker, the rate limit from ``rate_limits.<name>``, shared through
Prefect when a Prefect API is configured; without one, an error unless
``collection.shared_rate_limit_required`` is false, then a per-process limit and a warning).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from loguru import logger

from core import model
from core.errors import ConfigurationError
from sources.base import BaseSource, SourceContext
from sources.http import SECRET_PARAMS
from sources.registry import SourceRegistry, discover_sources
from sources.resilience import BreakerStore, CircuitBreaker, Resilience, RetryPolicy, build_rate_limiter, redact_secrets

if TYPE_CHECKING:
    from core.settings import Settings

SANDBOX_KEY = "sandbox"


def prefect_api_configured() -> bool:
    """A Prefect API is set for this process (the entry point exports settings.prefect as PREFECT_API_URL)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def source_resilience(
    name: str,
    settings: Settings,
    *,
    breaker: CircuitBreaker | None = None,
    shared_rate_limit: bool | None = None,
) -> Resilience:
    collection = settings.collection
    policy = RetryPolicy(retry_attempts=collection.retry_attempts, exponential_backoff=collection.exponential_backoff)
    rate = settings.rate_limits.get(name)
    shared = prefect_api_configured() if shared_rate_limit is None else shared_rate_limit
    if rate is not None and shared_rate_limit is None and not shared:
        refuse_or_warn_per_process_limit(name, rate.requests_per_second, settings)
    limiter = build_rate_limiter(name, rate.requests_per_second if rate else None, shared=shared)
    breaker = breaker or CircuitBreaker(
        name,
        failure_threshold=collection.circuit_failure_threshold,
        cooldown_seconds=collection.circuit_cooldown_seconds,
    )
    return Resilience(
        name,
        policy=policy,
        breaker=breaker,
        limiter=limiter,
        breaker_store=shared_breaker_store(settings),
        refresh_seconds=collection.circuit_share_refresh_seconds,
        redact=partial(redact_secrets, secrets=_credentials(name, settings), params=SECRET_PARAMS),
    )


def refuse_or_warn_per_process_limit(name: str, requests_per_second: float, settings: Settings) -> None:
    """No Prefect server is configured, so the rate limit cannot be shared: a ConfigurationError
    when ``collection.shared_rate_limit_required`` (the default), else a warning. Either way the
    message says what happens (each process keeps the limit alone, N of them send N x it) and what
    to set."""
    problem = (
        f"{name}: no Prefect server is configured (PREFECT_API_URL is not set), so the rate limit of "
        f"{requests_per_second:g} requests/s cannot be shared between processes: each process keeps it alone, "
        f"and N worker processes send up to N x {requests_per_second:g} requests/s to the vendor"
    )
    fix = "point PREFECT_API_URL at the Prefect server (the marketpipe command sets it from settings.prefect)"
    if settings.collection.shared_rate_limit_required:
        raise ConfigurationError(
            f"{problem}; {fix}, or set collection.shared_rate_limit_required: false "
            "(MARKETPIPE_COLLECTION__SHARED_RATE_LIMIT_REQUIRED=false) to run with a per-process limit"
        )
    logger.warning("{} (collection.shared_rate_limit_required is false); {}", problem, fix)


def shared_breaker_store(settings: Settings) -> BreakerStore | None:
    """The breakers' shared store (``ops.circuit_breakers``), or None when breakers stay in the
    process: sharing is turned off (``collection.circuit_share_refresh_seconds: 0``) or there is
    no database to share them through (no ``database.password``)."""
    if not settings.collection.circuit_share_refresh_seconds or settings.database.password is None:
        return None
    from sources.breaker_store import PostgresBreakerStore

    return PostgresBreakerStore(settings)


def _credentials(name: str, settings: Settings) -> tuple[str, ...]:
    vendor = settings.vendors.get(name)
    if vendor is None:
        return ()
    return tuple(s.get_secret_value() for s in (vendor.api_key, vendor.secret_key) if s is not None)


def source_context(
    name: str,
    settings: Settings,
    *,
    resilience: Resilience | None = None,
    options: Mapping[str, Any] | None = None,
) -> SourceContext:
    vendor = settings.vendors.get(name)
    base_url = vendor.base_url if vendor else None
    routed_to_sandbox = base_url is None and settings.sandbox.route_vendors
    if routed_to_sandbox:
        base_url = settings.sandbox.base_url
    # The sandbox accepts any key: without configured credentials, use a placeholder there.
    placeholder = SANDBOX_KEY if routed_to_sandbox else None
    return SourceContext(
        name=name,
        base_url=base_url,
        api_key=vendor.api_key.get_secret_value() if vendor and vendor.api_key else placeholder,
        secret_key=vendor.secret_key.get_secret_value() if vendor and vendor.secret_key else placeholder,
        timeout_seconds=settings.collection.request_timeout_seconds,
        resilience=resilience or source_resilience(name, settings),
        options=dict(options or {}),
    )


def source_registry(settings: Settings) -> SourceRegistry:
    """The sources these settings know: the built-ins, installed entry points, ``settings.sources``.
    The one answer to "which sources exist" for the gates, the flows and the factory."""
    return discover_sources(settings.sources)


def market_data_sources(settings: Settings) -> list[str]:
    """The names an ingestion (CLI, facade, flows, ``pipeline.source``) may use with these settings."""
    return source_registry(settings).market_data_names()


def build_source(
    name: str,
    settings: Settings,
    registry: SourceRegistry | None = None,
    *,
    resilience: Resilience | None = None,
    options: Mapping[str, Any] | None = None,
) -> BaseSource:
    """One ready source. Pass the same ``resilience`` (or its breaker) to every source of a vendor
    in a process so they share one breaker."""
    registry = registry or source_registry(settings)
    return registry.create(name, source_context(name, settings, resilience=resilience, options=options))


def schema_of(source: BaseSource) -> dict[str, str]:
    return model.SCHEMAS[source.dataset]
