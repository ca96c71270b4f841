"""The clients under the sandbox's injected faults: typed errors, retries, Retry-After, and a fault
storm in which every record ends up delivered exactly once, directly or through replay."""

import asyncio

import pandas as pd
import pytest

from core.errors import PermanentSourceError, RetryableSourceError
from sources.http import drain
from tests.support.vendors import KEY, alpaca_client, polygon_client, set_faults, stats


def run(coro):
    return asyncio.run(coro)


def test_an_invalid_key_is_a_permanent_error_that_never_shows_the_key(sandbox_url):
    bad_key = "invalid-" + KEY

    async def fetch():
        client = polygon_client(sandbox_url, key=bad_key)
        try:
            await client.aggregates("AAPL", "2024-06-03", "2024-06-28")
        finally:
            await client.aclose()

    with pytest.raises(PermanentSourceError, match="HTTP 401") as raised:
        run(fetch())
    assert bad_key not in str(raised.value) and bad_key not in repr(raised.value.request)
    assert stats(sandbox_url)["vendors"]["polygon"]["total"] == 1  # not retried


def test_alpaca_invalid_key_is_permanent(sandbox_url):
    async def fetch():
        client = alpaca_client(sandbox_url, key="invalid-key")
        try:
            await client.bars(["AAPL"], "2024-06-03", "2024-06-28")
        finally:
            await client.aclose()

    with pytest.raises(PermanentSourceError, match="401"):
        run(fetch())


def test_rate_limits_and_server_errors_are_retried_honouring_retry_after(sandbox_url):
    set_faults(sandbox_url, seed=3, rates={"rate_limit": 0.3, "server_error": 0.3}, retry_after_seconds=2)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def fetch():
        client = polygon_client(sandbox_url, retries=10, sleep=record)
        try:
            return await client.aggregates("AAPL", "2024-06-03", "2024-06-28", timeframe="1min", limit=1000)
        finally:
            await client.aclose()

    bars = run(fetch())
    endpoint = stats(sandbox_url)["endpoints"]["polygon.aggs"]
    assert len(bars) > 5000 and not bars.duplicated(["symbol", "ts"]).any()
    assert endpoint.get("fault_rate_limit", 0) > 0 and endpoint.get("fault_server_error", 0) > 0
    assert sum(1 for w in waits if w >= 2) >= endpoint["fault_rate_limit"]  # every 429 waited its Retry-After


def test_timeouts_are_retried(sandbox_url):
    set_faults(sandbox_url, seed=5, rates={"timeout": 0.5}, timeout_seconds=1.0)

    async def fetch():
        client = polygon_client(sandbox_url, retries=10, timeout=0.3)
        try:
            return await client.aggregates("MSFT", "2024-06-03", "2024-06-28")
        finally:
            await client.aclose()

    assert len(run(fetch())) == 19  # June 2024 sessions from the 3rd to the 28th


def test_retries_exhausted_give_a_retryable_error_naming_the_page(sandbox_url):
    set_faults(sandbox_url, seed=1, rates={"server_error": 1.0})

    async def fetch():
        client = polygon_client(sandbox_url, retries=2)
        try:
            await client.aggregates("AAPL", "2024-06-03", "2024-06-28")
        finally:
            await client.aclose()

    with pytest.raises(RetryableSourceError, match="gave up after 3 attempts") as raised:
        run(fetch())
    assert raised.value.request.url.startswith("/v2/aggs/ticker/AAPL")
    assert stats(sandbox_url)["vendors"]["polygon"]["total"] == 3


SYMBOLS = ["AAPL", "MSFT", "BRK.B", "NVDA", "SPY", "XOM"]


async def collect_storm(url: str, symbols: list[str]) -> tuple[list[pd.DataFrame], list[Exception]]:
    client = polygon_client(url, retries=1, timeout=0.5)
    delivered, dead_letters = [], []
    try:
        for symbol in symbols:
            pages, failure = await drain(
                client.iter_pages(
                    client.aggregates_request(symbol, "2024-06-03", "2024-06-28", timeframe="1min", limit=1500)
                )
            )
            delivered += [page.frame for page in pages]
            if failure is not None:
                dead_letters.append(failure)
    finally:
        await client.aclose()
    return delivered, dead_letters


async def replay(url: str, dead_letters: list[Exception]) -> list[pd.DataFrame]:
    client = polygon_client(url)
    try:
        frames = []
        for error in dead_letters:
            frames += [page.frame async for page in client.iter_pages(error.request)]
        return frames
    finally:
        await client.aclose()


def test_fault_storm_delivers_every_record_exactly_once_through_dead_letters_and_replay(sandbox_url):
    baseline, failures = run(collect_storm(sandbox_url, SYMBOLS))
    assert failures == []
    expected = pd.concat(baseline, ignore_index=True)

    set_faults(
        sandbox_url,
        seed=11,
        rates={"rate_limit": 0.1, "server_error": 0.08, "timeout": 0.02, "truncated": 0.05, "malformed": 0.05},
        retry_after_seconds=0,
        timeout_seconds=1.0,
    )
    delivered, dead_letters = run(collect_storm(sandbox_url, SYMBOLS))
    served = stats(sandbox_url)
    assert dead_letters, "the storm should have dead-lettered some pages"
    assert all(getattr(e, "request", None) is not None for e in dead_letters)
    assert {type(e) for e in dead_letters} <= {PermanentSourceError, RetryableSourceError}
    faults = {k: v for k, v in served["endpoints"]["polygon.aggs"].items() if k.startswith("fault_")}
    assert sum(faults.values()) > len(dead_letters)  # most faults were absorbed by retries

    set_faults(sandbox_url, seed=0, rates={})
    replayed = run(replay(sandbox_url, dead_letters))
    got = pd.concat(delivered + replayed, ignore_index=True).sort_values(["symbol", "ts"], ignore_index=True)
    assert not got.duplicated(["symbol", "ts"]).any()
    pd.testing.assert_frame_equal(got, expected.sort_values(["symbol", "ts"], ignore_index=True))
