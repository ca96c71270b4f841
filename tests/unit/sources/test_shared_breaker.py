"""Circuit breakers shared through a store: one process's opening is another's, closing too, the
store is read at most every refresh interval, and a store that fails never fails a request."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import RetryableSourceError
from sources.resilience import (
    STORE_RETRY_SECONDS,
    BreakerRecord,
    BreakerState,
    CircuitBreaker,
    Resilience,
    RetryPolicy,
    redact_secrets,
)

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


class Clocks:
    """A monotonic and a wall clock that move together."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds - 1000.0)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


class MemoryStore:
    """The store seam in memory, as ``ops.circuit_breakers`` would behave (newest write wins)."""

    def __init__(self) -> None:
        self.records: dict[str, BreakerRecord] = {}
        self.reads = 0
        self.failing = False

    async def read(self, source: str) -> BreakerRecord | None:
        self.reads += 1
        if self.failing:
            raise OSError("connection refused")
        return self.records.get(source)

    async def publish(self, record: BreakerRecord) -> None:
        if self.failing:
            raise OSError("connection refused")
        old = self.records.get(record.source)
        if old is None or old.updated_at <= record.updated_at:
            self.records[record.source] = record


async def no_sleep(seconds: float) -> None:
    return None


def worker(store: MemoryStore, clocks: Clocks, *, threshold: int = 2, refresh: float = 2.0) -> Resilience:
    breaker = CircuitBreaker(
        "polygon", failure_threshold=threshold, cooldown_seconds=30, clock=clocks.monotonic, wall_clock=clocks.wall
    )
    return Resilience(
        "polygon",
        policy=RetryPolicy(retry_attempts=0),
        breaker=breaker,
        breaker_store=store,
        refresh_seconds=refresh,
        clock=clocks.monotonic,
        sleep=no_sleep,
        rng=random.Random(0),
        redact=lambda text: redact_secrets(text, secrets=("s3cr3t-key",), params=("apiKey",)),
    )


class Vendor:
    """Counts the requests that reach it; fails with a 503 while ``down``."""

    def __init__(self) -> None:
        self.requests = 0
        self.down = True

    async def __call__(self) -> str:
        self.requests += 1
        if self.down:
            raise RetryableSourceError("polygon answered 503 for GET /v2/aggs?apiKey=s3cr3t-key", status_code=503)
        return "bars"


async def fail(resilience: Resilience, vendor: Vendor) -> BaseException:
    with pytest.raises(RetryableSourceError) as caught:
        await resilience.call(vendor)
    return caught.value


def test_a_breaker_opened_by_one_worker_stops_the_other_before_any_request() -> None:
    store, clocks, vendor = MemoryStore(), Clocks(), Vendor()
    first, second = worker(store, clocks), worker(store, clocks)

    async def run() -> BaseException:
        await fail(first, vendor)
        await fail(first, vendor)  # the second consecutive failure opens it
        return await fail(second, vendor)

    error = asyncio.run(run())
    assert vendor.requests == 2  # the second worker sent nothing
    assert "circuit breaker for polygon is open" in str(error)
    published = store.records["polygon"]
    assert published.state is BreakerState.OPEN and published.consecutive_failures == 2
    assert published.opened_at == T0 and published.written_by
    assert second.breaker.state is BreakerState.OPEN and second.breaker.retry_in_seconds() == 30


def test_the_published_error_has_no_secret() -> None:
    store, clocks, vendor = MemoryStore(), Clocks(), Vendor()
    first = worker(store, clocks, threshold=1)
    asyncio.run(fail(first, vendor))
    error = store.records["polygon"].last_error
    assert error is not None and "503" in error
    assert "s3cr3t-key" not in error and "apiKey=***" in error


def test_a_successful_trial_in_one_worker_closes_the_breaker_for_the_other() -> None:
    store, clocks, vendor = MemoryStore(), Clocks(), Vendor()
    first, second = worker(store, clocks, threshold=1), worker(store, clocks, threshold=1)

    async def run() -> str:
        await fail(first, vendor)
        await fail(second, vendor)  # adopts the opening
        clocks.advance(31)  # cool-down over: the first worker's trial succeeds
        vendor.down = False
        assert await first.call(vendor) == "bars"
        clocks.advance(3)  # the second worker's view is due for a refresh
        return await second.call(vendor)

    assert asyncio.run(run()) == "bars"
    assert store.records["polygon"].state is BreakerState.CLOSED
    assert second.breaker.state is BreakerState.CLOSED and second.breaker.consecutive_failures == 0


def test_the_store_is_read_at_most_once_per_refresh_interval() -> None:
    store, clocks = MemoryStore(), Clocks()
    vendor = Vendor()
    vendor.down = False
    resilience = worker(store, clocks, refresh=2.0)

    async def run() -> None:
        for _ in range(10):
            await resilience.call(vendor)
        clocks.advance(2.0)
        await resilience.call(vendor)

    asyncio.run(run())
    assert vendor.requests == 11 and store.reads == 2
    assert store.records == {}  # a breaker that never changed publishes nothing


def test_a_failing_store_never_fails_a_request_and_the_local_breaker_still_works() -> None:
    store, clocks, vendor = MemoryStore(), Clocks(), Vendor()
    store.failing = True
    resilience = worker(store, clocks, threshold=1)

    async def run() -> BaseException:
        await fail(resilience, vendor)
        return await fail(resilience, vendor)

    error = asyncio.run(run())
    assert vendor.requests == 1 and "circuit breaker for polygon is open" in str(error)


def test_after_the_store_failed_it_is_read_again_only_after_a_longer_pause() -> None:
    store, clocks, vendor = MemoryStore(), Clocks(), Vendor()
    vendor.down = False
    store.failing = True
    resilience = worker(store, clocks, refresh=2.0)

    async def run() -> None:
        await resilience.call(vendor)
        clocks.advance(STORE_RETRY_SECONDS - 1)  # past the refresh interval, not the pause
        await resilience.call(vendor)
        assert store.reads == 1
        clocks.advance(1)
        await resilience.call(vendor)

    asyncio.run(run())
    assert store.reads == 2 and vendor.requests == 3


def test_an_older_opening_does_not_reopen_a_breaker_closed_since() -> None:
    clocks = Clocks()
    breaker = CircuitBreaker(
        "polygon", failure_threshold=1, cooldown_seconds=30, clock=clocks.monotonic, wall_clock=clocks.wall
    )
    stale = BreakerRecord("polygon", BreakerState.OPEN, T0, 1, 30.0, None, "other:1", T0)
    breaker.record_failure()
    clocks.advance(31)
    breaker.before_call()  # the trial
    breaker.record_success()
    breaker.adopt(stale)
    assert breaker.state is BreakerState.CLOSED


def test_a_published_opening_turns_half_open_for_readers_after_its_cooldown() -> None:
    record = BreakerRecord("polygon", BreakerState.OPEN, T0, 5, 30.0, "503", "host:42", T0)
    assert record.state_at(T0 + timedelta(seconds=10)) is BreakerState.OPEN
    assert record.retry_in_seconds(T0 + timedelta(seconds=10)) == 20
    assert record.state_at(T0 + timedelta(seconds=30)) is BreakerState.HALF_OPEN
    closed = BreakerRecord("polygon", BreakerState.CLOSED, None, 0, 30.0, None, "host:42", T0)
    assert closed.state_at(T0) is BreakerState.CLOSED


def test_a_record_of_another_source_is_refused() -> None:
    breaker = CircuitBreaker("polygon")
    with pytest.raises(ValueError, match="alpaca"):
        breaker.adopt(BreakerRecord("alpaca", BreakerState.OPEN, T0, 5, 30.0, None, "h:1", T0))
