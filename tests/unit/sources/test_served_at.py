"""The instant a vendor served a response, by its own clock (the HTTP Date header)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from sources.http import Request, VendorHttp, served_at
from sources.resilience import Resilience


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"date": "Mon, 03 Jun 2024 18:11:30 GMT"}, datetime(2024, 6, 3, 18, 11, 30, tzinfo=UTC)),
        ({}, None),
        ({"date": "yesterday"}, None),
    ],
)
def test_served_at_reads_the_date_header(headers: dict[str, str], expected: datetime | None) -> None:
    assert served_at(httpx.Headers(headers)) == expected


def test_a_response_carries_the_vendors_date() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": []}, headers={"Date": "Mon, 03 Jun 2024 18:11:30 GMT"})

    async def fetch() -> datetime | None:
        client = httpx.AsyncClient(base_url="http://vendor.test", transport=httpx.MockTransport(answer))
        http = VendorHttp("polygon", client, Resilience("polygon"))
        response = await http.get_json(Request("polygon", "bars", "/v2/aggs", {}))
        await client.aclose()
        return response.served_at

    assert asyncio.run(fetch()) == datetime(2024, 6, 3, 18, 11, 30, tzinfo=UTC)
