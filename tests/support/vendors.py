"""The real vendor clients built against the market sandbox, with fast, deterministic resilience,
and the sandbox's fault and statistics controls."""

from __future__ import annotations

import asyncio
import random
from datetime import date

import httpx
import pandas as pd

from sources.alpaca import AlpacaClient
from sources.http import VendorHttp, make_http_client
from sources.polygon import PolygonClient
from sources.reddit import RedditClient
from sources.resilience import CircuitBreaker, Resilience, RetryPolicy
from sources.yahoo import YahooClient

AS_OF = date(2024, 6, 28)
KEY = "test-key-0123456789"
SECRET = "test-secret-9876543210"


def set_faults(url: str, **config) -> None:
    response = httpx.post(f"{url}/_sandbox/faults", json=config)
    response.raise_for_status()


def stats(url: str) -> dict:
    return httpx.get(f"{url}/_sandbox/stats").json()


async def no_sleep(seconds: float) -> None:
    return None


def resilience(source: str, *, retries: int = 3, sleep=no_sleep, threshold: int = 1000) -> Resilience:
    return Resilience(
        source,
        policy=RetryPolicy(retry_attempts=retries, base_delay_seconds=0.01, max_delay_seconds=0.05),
        breaker=CircuitBreaker(source, failure_threshold=threshold),
        sleep=sleep,
        rng=random.Random(0),
    )


def vendor_http(source: str, url: str, *, headers=None, auth_params=None, timeout=10.0, **kwargs) -> VendorHttp:
    client = make_http_client(url, timeout_seconds=timeout, headers=headers)
    return VendorHttp(source, client, resilience(source, **kwargs), auth_params=auth_params)


def polygon_client(url: str, key: str = KEY, **kwargs) -> PolygonClient:
    return PolygonClient(vendor_http("polygon", url, auth_params={"apiKey": key}, **kwargs))


def alpaca_client(url: str, key: str = KEY, **kwargs) -> AlpacaClient:
    headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": SECRET}
    return AlpacaClient(vendor_http("alpaca", url, headers=headers, **kwargs))


def yahoo_client(url: str, **kwargs) -> YahooClient:
    return YahooClient(vendor_http("yahoo", url, **kwargs))


def reddit_client(url: str, **kwargs) -> RedditClient:
    return RedditClient(vendor_http("reddit", url, headers={"User-Agent": "marketpipe-tests"}, **kwargs))


def polygon_bars(url: str, symbol: str, start: str, end: str, timeframe: str) -> pd.DataFrame:
    """The sandbox's Polygon aggregates of ``symbol`` (unadjusted), fetched over HTTP, sorted by ts."""

    async def fetch() -> pd.DataFrame:
        client = polygon_client(url)
        try:
            return await client.aggregates(symbol, start, end, timeframe=timeframe, adjusted=False)
        finally:
            await client.aclose()

    return asyncio.run(fetch()).sort_values("ts", ignore_index=True)
