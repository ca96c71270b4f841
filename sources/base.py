"""The seed's plugin API for data sources: :class:`BaseSource`.

A source is a subclass of :class:`BaseSource` implementing
``async def fetch_data(self, symbol, start_date, end_date)`` that returns a canonical frame
(:mod:`core.model`). That is all a plugin must write; the rest has defaults.

The collection asks a source two more things, so it never needs to know which vendor it talks to:

- :meth:`BaseSource.first_requests`: the vendor requests that start one symbol's collection (the
  source follows their pages with :meth:`BaseSource.iter_pages`), or None for a source without
  pages, whose :meth:`~BaseSource.fetch_data` frame the collection stores as one page of records;
- :meth:`BaseSource.parse_page`: the frame a stored page's payload makes (a classmethod and pure,
  so the processing stage re-parses the raw zone without building a client or holding credentials).

Finding sources by name is :mod:`sources.registry`; building one from settings is
:mod:`sources.factory`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import pandas as pd

from core.errors import ConfigurationError, PermanentSourceError
from sources.http import Page, Parser, Request
from sources.records import RECORDS_DATASET, parse_records
from sources.resilience import Resilience


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


@dataclass(frozen=True)
class SymbolRequest:
    """What the collection wants of one symbol: ``data_type`` is ``market_data`` (bars, raw and
    unadjusted: adjustment is ours, from corporate actions) or ``corporate_actions``."""

    symbol: str
    start: datetime  # inclusive, UTC
    end: datetime  # inclusive, UTC
    timeframe: str
    data_type: str = "market_data"


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

    def first_requests(self, wanted: SymbolRequest) -> list[Request] | None:
        """The requests that start collecting ``wanted``; None: this source has no pages (the
        collection stores the :meth:`fetch_data` frame as one page of records)."""
        return None

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        """The pages of a request from :meth:`first_requests`, or resumed from a stored one
        (dead-letter replay); sources without pages cannot replay."""
        raise ConfigurationError(f"source {self.context.name!r} cannot replay stored requests")

    @classmethod
    def parse_page(cls, request: Request, payload: Any) -> pd.DataFrame:
        """The frame of a stored page (pure): records pages for every source, the vendor's own
        pages through :meth:`page_parser`."""
        if request.dataset == RECORDS_DATASET:
            return parse_records(request, payload)
        return cls.page_parser(request)(payload)

    @classmethod
    def page_parser(cls, request: Request) -> Parser:
        """Which parser reads the pages of ``request``; sources with pages override it."""
        raise PermanentSourceError(f"no parser for stored pages of source {request.source!r}")

    def health(self) -> dict[str, Any]:
        """Circuit-breaker state for the health check (sources without resilience are 'closed')."""
        resilience = self.context.resilience
        if resilience is None:
            return {"source": self.context.name, "state": "closed", "healthy": True}
        return resilience.breaker.snapshot()

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> BaseSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
