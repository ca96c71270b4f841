"""What the built-in vendor sources share: one client, built from the source's context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from core.errors import ConfigurationError
from sources.base import BaseSource
from sources.http import Page, Request, VendorHttp, make_http_client


class VendorSource(BaseSource):
    """A built-in source backed by one vendor client (``self.client``), which follows its pages."""

    default_base_url: ClassVar[str]
    client: Any

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        return self.client.iter_pages(request)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _http(
        self, headers: Mapping[str, str] | None = None, auth_params: Mapping[str, str] | None = None
    ) -> VendorHttp:
        """The client's transport: the context's base URL (the vendor's by default), timeout,
        resilience and, for tests, its ``options["transport"]``."""
        ctx = self.context
        client = make_http_client(
            ctx.base_url or self.default_base_url,
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
