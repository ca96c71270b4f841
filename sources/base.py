"""The seed's plugin API for data sources, and the registry that finds them.

A source is a subclass of :class:`BaseSource` implementing
``async def fetch_data(self, symbol, start_date, end_date)`` that returns a canonical frame
(:mod:`core.model`). The registry holds factories by name, from three places, later ones
overriding earlier ones:

1. the built-ins: ``polygon``, ``alpaca``, ``yahoo``, ``reddit``;
2. installed packages' entry points in the group ``marketpipe.sources``
   (``[project.entry-points."marketpipe.sources"] mysource = "pkg.module:MySource"``);
3. import paths from settings (``{"mysource": "pkg.module:MySource"}``).

:func:`build_source` wires one source from the settings object: base URL (the vendor's, or the
market sandbox when ``sandbox.route_vendors``), credentials, timeout, and its resilience (retry
policy from ``collection.*``, a circuit breaker, the rate limit from ``rate_limits.<name>``, shared
through Prefect when a Prefect API is configured).
"""

from __future__ import annotations

import abc
import importlib
import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from core.errors import ConfigurationError
from core import model
from sources.alpaca import AlpacaClient
from sources.http import Page, Request, VendorHttp, make_http_client
from sources.polygon import PolygonClient
from sources.reddit import RedditClient
from sources.resilience import CircuitBreaker, Resilience, RetryPolicy, build_rate_limiter
from sources.yahoo import YahooClient

if TYPE_CHECKING:
    from core.settings import Settings

ENTRY_POINT_GROUP = "marketpipe.sources"
SANDBOX_KEY = "sandbox"
DEFAULT_BASE_URLS = {
    "polygon": "https://api.polygon.io",
    "alpaca": "https://data.alpaca.markets",
    "yahoo": "https://query1.finance.yahoo.com",
    "reddit": "https://www.reddit.com",
}


@dataclass(frozen=True)
class SourceContext:
    """Everything a source needs to talk to its vendor. Secrets are excluded from the repr."""

    name: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    timeout_seconds: float = 30.0
    resilience: Resilience | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def resilience_or_default(self) -> Resilience:
        return self.resilience or Resilience(self.name)


class BaseSource(abc.ABC):
    """A market-data source. Subclasses implement :meth:`fetch_data`; the rest has defaults.

    ``dataset`` names the canonical schema :meth:`fetch_data` returns (a key of ``model.SCHEMAS``).
    """

    name: ClassVar[str] = ""
    dataset: ClassVar[str] = "bars"

    def __init__(self, context: SourceContext | None = None) -> None:
        self.context = context or SourceContext(name=self.name or type(self).__name__.lower())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.context.name!r}, base_url={self.context.base_url!r})"

    @abc.abstractmethod
    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any) -> pd.DataFrame:
        """The canonical frame of ``symbol`` between ``start_date`` and ``end_date``."""

    def health(self) -> dict[str, Any]:
        """Circuit-breaker state for the health check (sources without resilience are 'closed')."""
        resilience = self.context.resilience
        if resilience is None:
            return {"source": self.context.name, "state": "closed", "healthy": True}
        return resilience.breaker.snapshot()

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        """Resume a stored request (dead-letter replay); sources without pages cannot replay."""
        raise ConfigurationError(f"source {self.context.name!r} cannot replay stored requests")

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> BaseSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _ClientSource(BaseSource):
    """A built-in source backed by one vendor client."""

    client: Any

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        return self.client.iter_pages(request)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _http(
        self, headers: Mapping[str, str] | None = None, auth_params: Mapping[str, str] | None = None
    ) -> VendorHttp:
        ctx = self.context
        client = make_http_client(
            ctx.base_url or DEFAULT_BASE_URLS[self.name],
            timeout_seconds=ctx.timeout_seconds,
            headers=headers,
            transport=ctx.options.get("transport"),
        )
        return VendorHttp(self.name, client, ctx.resilience_or_default(), auth_params=auth_params)

    def _require(self, value: str | None, setting: str) -> str:
        if not value:
            raise ConfigurationError(
                f"source {self.name!r} needs {setting}; set it in .env as MARKETPIPE_VENDORS__{self.name.upper()}__"
                f"{setting.rsplit('.', 1)[-1].upper()}"
            )
        return value


class PolygonSource(_ClientSource):
    name = "polygon"

    def __init__(self, context: SourceContext | None = None) -> None:
        super().__init__(context)
        key = self._require(self.context.api_key, "vendors.polygon.api_key")
        self.client = PolygonClient(self._http(auth_params={"apiKey": key}))

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any, timeframe: str = "1day") -> pd.DataFrame:
        return await self.client.aggregates(symbol, start_date, end_date, timeframe=timeframe)


class AlpacaSource(_ClientSource):
    name = "alpaca"

    def __init__(self, context: SourceContext | None = None) -> None:
        super().__init__(context)
        headers = {
            "APCA-API-KEY-ID": self._require(self.context.api_key, "vendors.alpaca.api_key"),
            "APCA-API-SECRET-KEY": self._require(self.context.secret_key, "vendors.alpaca.secret_key"),
        }
        self.client = AlpacaClient(self._http(headers=headers), feed=self.context.options.get("feed"))

    async def fetch_data(
        self, symbol: str | Sequence[str], start_date: Any, end_date: Any, timeframe: str = "1day"
    ) -> pd.DataFrame:
        """Accepts several symbols too: Alpaca serves them in one paged request."""
        adjustment = self.context.options.get("adjustment", "all")
        return await self.client.bars(symbol, start_date, end_date, timeframe=timeframe, adjustment=adjustment)


class YahooSource(_ClientSource):
    name = "yahoo"

    def __init__(self, context: SourceContext | None = None) -> None:
        super().__init__(context)
        self.client = YahooClient(self._http(headers={"User-Agent": "marketpipe/0.1"}))

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any, timeframe: str = "1day") -> pd.DataFrame:
        return await self.client.bars(symbol, start_date, end_date, timeframe=timeframe)


class RedditSource(_ClientSource):
    """Posts mentioning the symbol in the configured subreddits (``options["subreddits"]``)."""

    name = "reddit"
    dataset = "social_posts"
    DEFAULT_SUBREDDITS = ("wallstreetbets", "stocks", "investing")

    def __init__(self, context: SourceContext | None = None) -> None:
        super().__init__(context)
        from sources.reddit import USER_AGENT

        self.client = RedditClient(self._http(headers={"User-Agent": USER_AGENT}))
        self.subreddits = tuple(self.context.options.get("subreddits", self.DEFAULT_SUBREDDITS))

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any) -> pd.DataFrame:
        return await self.client.mentions(symbol, self.subreddits, start_date, end_date)


SourceFactory = Callable[[SourceContext], BaseSource]

BUILTIN_SOURCES: dict[str, SourceFactory] = {
    "polygon": PolygonSource,
    "alpaca": AlpacaSource,
    "yahoo": YahooSource,
    "reddit": RedditSource,
}


class SourceRegistry:
    """Source factories by name. Built explicitly and passed down; nothing global."""

    def __init__(self, factories: Mapping[str, SourceFactory] | None = None) -> None:
        self._factories: dict[str, SourceFactory] = dict(factories or {})

    def register(self, name: str, factory: SourceFactory) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigurationError(f"source name {name!r} must be letters, digits, '-' or '_'")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def create(self, name: str, context: SourceContext | None = None) -> BaseSource:
        factory = self._factories.get(name)
        if factory is None:
            raise ConfigurationError(
                f"unknown source {name!r}; known sources: {', '.join(self.names()) or 'none'}. Register a "
                f"plugin by import path in settings or with a {ENTRY_POINT_GROUP!r} entry point"
            )
        return _instantiate(factory, context or SourceContext(name=name))


def _instantiate(factory: SourceFactory, context: SourceContext) -> BaseSource:
    """Plugins written as in the seed (no constructor arguments) work as well as context-taking ones."""
    try:
        takes_context = bool(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        takes_context = True
    source = factory(context) if takes_context else factory()  # type: ignore[call-arg]
    if not isinstance(source, BaseSource):
        raise ConfigurationError(f"source {context.name!r} built a {type(source).__name__}, not a BaseSource subclass")
    if takes_context is False:
        source.context = context
    return source


def load_import_path(path: str) -> SourceFactory:
    """``"package.module:Class"`` (or ``package.module.Class``) -> the factory it names."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(f"source import path {path!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r} of source {path!r}: {exc}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigurationError(f"module {module_name!r} has no {attr!r} (source {path!r})") from exc
    if not callable(factory):
        raise ConfigurationError(f"source {path!r} is not a class or factory function")
    return factory


def discover_sources(plugins: Mapping[str, str] | None = None, *, use_entry_points: bool = True) -> SourceRegistry:
    """Built-ins, then entry points, then ``plugins`` (name -> import path, from settings)."""
    registry = SourceRegistry(BUILTIN_SOURCES)
    if use_entry_points:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                registry.register(entry.name, entry.load())
            except Exception as exc:
                raise ConfigurationError(
                    f"entry point {entry.name!r} = {entry.value!r} in group {ENTRY_POINT_GROUP!r} fails to load: {exc}"
                ) from exc
    for name, path in (plugins or {}).items():
        registry.register(name, load_import_path(path))
    return registry


# ---------------------------------------------------------------------------------------------
# Wiring from settings


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
    limiter = build_rate_limiter(name, rate.requests_per_second if rate else None, shared=shared)
    breaker = breaker or CircuitBreaker(
        name,
        failure_threshold=collection.circuit_failure_threshold,
        cooldown_seconds=collection.circuit_cooldown_seconds,
    )
    return Resilience(name, policy=policy, breaker=breaker, limiter=limiter)


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
    registry = registry or discover_sources(settings.sources)
    return registry.create(name, source_context(name, settings, resilience=resilience, options=options))


def schema_of(source: BaseSource) -> dict[str, str]:
    return model.SCHEMAS[source.dataset]
