"""Source factories by name, and where they come from.

Three places, later ones overriding earlier ones:

1. the built-ins: ``polygon``, ``alpaca``, ``yahoo``, ``reddit``;
2. installed packages' entry points in the group ``marketpipe.sources``
   (``[project.entry-points."marketpipe.sources"] mysource = "pkg.module:MySource"``);
3. import paths from settings (``{"mysource": "pkg.module:MySource"}``).

A registry also answers which parser reads a source's stored pages (:meth:`SourceRegistry.parse_page`),
so the processing stage never switches on vendor names.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pandas as pd

from core.errors import ConfigurationError
from sources.alpaca import AlpacaSource
from sources.base import BaseSource, SourceContext
from sources.http import Request
from sources.polygon import PolygonSource
from sources.reddit import RedditSource
from sources.yahoo import YahooSource

ENTRY_POINT_GROUP = "marketpipe.sources"

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

    @classmethod
    def builtin(cls) -> SourceRegistry:
        """The built-in vendors only (no plugins)."""
        return cls(BUILTIN_SOURCES)

    def register(self, name: str, factory: SourceFactory) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigurationError(f"source name {name!r} must be letters, digits, '-' or '_'")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def market_data_names(self) -> list[str]:
        """The sources an ingestion may name: every registered source but those whose class says
        it serves another dataset (Reddit's posts). A factory function counts: what it builds is
        known only when it is called."""
        return [name for name in self.names() if self.source_class(name).dataset == "bars"]

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

    def source_class(self, name: str) -> type[BaseSource]:
        """The class registered as ``name``; :class:`BaseSource` for an unknown name or a factory
        function (whose stored pages can only be records)."""
        factory = self._factories.get(name)
        if isinstance(factory, type) and issubclass(factory, BaseSource):
            return factory
        return BaseSource

    def parse_page(self, name: str, request: Request, payload: Any) -> pd.DataFrame:
        """The frame of a stored page of source ``name``, by that source's own parser (pure)."""
        return self.source_class(name).parse_page(request, payload)


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
    registry = SourceRegistry.builtin()
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
