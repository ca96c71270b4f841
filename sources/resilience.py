"""What every vendor request goes through: rate limit, circuit breaker, retries.

- :class:`RetryPolicy` is pure: which errors are retried (``SourceError.retryable``: 429, 5xx,
  timeouts, connection resets; never 400/401/403/404 or malformed payloads) and how long to wait
  (exponential backoff with full jitter, never less than the vendor's ``Retry-After``).
- :class:`CircuitBreaker` is per source: it opens after N consecutive transient failures, so a vendor
  outage costs one fast error per request instead of a full retry ladder, and half-opens after a
  cool-down to let one trial request through. Its :meth:`~CircuitBreaker.snapshot` feeds the health
  check. The clock is injected.
- A :class:`RateLimiter` is awaited before each request. :class:`PrefectRateLimiter` uses a Prefect
  global concurrency limit with slot decay, so the limit holds across flow runs and hosts;
  :class:`TokenBucket` is the in-process fallback when no Prefect server is configured.
- :class:`Resilience` composes the three around one request attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from loguru import logger

from core.errors import RetryableSourceError, ServiceError, SourceError

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def source_error(
    cls: type[SourceError],
    message: str,
    *,
    request: Any = None,
    status_code: int | None = None,
    retry_after_seconds: float | None = None,
    payload_text: str | None = None,
) -> SourceError:
    """A SourceError carrying what the retry loop and the dead-letter queue need.

    ``request`` is a :class:`sources.http.Request` (no secrets); ``payload_text`` the body of
    a malformed response, kept for the dead letter.
    """
    return cls(
        message,
        request=request,
        status_code=status_code,
        retry_after_seconds=retry_after_seconds,
        payload_text=payload_text,
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, SourceError) and exc.retryable


# ---------------------------------------------------------------------------------------------
# Retries


@dataclass(frozen=True)
class RetryPolicy:
    """``retry_attempts`` and ``exponential_backoff`` mirror settings ``collection.*``.

    ``retry_attempts`` counts retries after the first try (0 = try once).
    """

    retry_attempts: int = 3
    exponential_backoff: bool = True
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0

    def backoff_seconds(self, retry: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(retry-1))].

        Without exponential backoff every retry waits ``base_delay_seconds``.
        """
        if not self.exponential_backoff:
            return self.base_delay_seconds
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (retry - 1))
        return rng.uniform(0.0, ceiling)

    def delay_seconds(self, retry: int, rng: random.Random, retry_after_seconds: float | None = None) -> float:
        """Never sooner than the vendor asked (capped, so a hostile header cannot park us for hours)."""
        delay = self.backoff_seconds(retry, rng)
        if retry_after_seconds is not None:
            delay = max(delay, min(retry_after_seconds, self.max_retry_after_seconds))
        return delay


# ---------------------------------------------------------------------------------------------
# Circuit breaker


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per-source breaker: closed -> open after ``failure_threshold`` consecutive transient failures
    -> half-open after ``cooldown_seconds`` (one trial request) -> closed on success, open on failure.
    """

    def __init__(
        self,
        source: str,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.source = source
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in_seconds(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_seconds - (self._clock() - self._opened_at))

    def before_call(self) -> None:
        """Raise a retryable error while open (or while the half-open trial is out)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return
        wait = self.retry_in_seconds() or self.cooldown_seconds
        raise source_error(
            RetryableSourceError,
            f"circuit breaker for {self.source} is {state.value} after {self._failures} consecutive "
            f"failures; requests resume in {wait:.1f}s",
            retry_after_seconds=wait,
        )

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or self._failures >= self.failure_threshold:
            if self._opened_at is None or was_trial:
                logger.warning(
                    "circuit breaker for {} opens after {} consecutive failures", self.source, self._failures
                )
            self._opened_at = self._clock()

    def abandon_trial(self) -> None:
        """The trial ended without a verdict (cancelled, or a bug): let the next caller try."""
        self._trial_in_flight = False

    def snapshot(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "state": self.state.value,
            "consecutive_failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "cooldown_seconds": self.cooldown_seconds,
            "retry_in_seconds": round(self.retry_in_seconds(), 3),
            "healthy": self.state is BreakerState.CLOSED,
        }


# ---------------------------------------------------------------------------------------------
# Rate limiters


class RateLimiter(Protocol):
    async def acquire(self) -> None:
        """Return when one more request may be sent."""
        ...


def default_burst(requests_per_second: float) -> int:
    """Bucket capacity: a tenth of a second's worth of requests, at least one.

    With slot decay r and capacity b, any one-second window sees at most r + b requests, so a
    capacity of r/10 keeps the measured rate within 10 % of the limit even after an idle spell.
    """
    return max(1, math.floor(requests_per_second / 10))


class Unlimited:
    async def acquire(self) -> None:
        return None


class TokenBucket:
    """In-process token bucket: ``requests_per_second`` refill, ``burst`` capacity, FIFO waiters."""

    def __init__(
        self,
        requests_per_second: float,
        *,
        burst: int | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be > 0, got {requests_per_second}")
        self.rate = requests_per_second
        self.capacity = float(burst if burst is not None else default_burst(requests_per_second))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self.rate)
                self._refill()
            # After waiting out the deficit the token is ours; clamp float rounding instead of looping.
            self._tokens = max(0.0, self._tokens - 1.0)


def prefect_limit_name(source: str) -> str:
    return f"marketpipe-rate-{source}"


class PrefectRateLimiter:
    """A Prefect global concurrency limit with slot decay, shared by every run on every host.

    The limit (``marketpipe-rate-<source>``) is created or corrected on first use, so a changed
    ``rate_limits.<source>.requests_per_second`` takes effect without a manual ``prefect gcl``
    step. The Prefect API is the one of the ambient Prefect settings (``PREFECT_API_URL``), which
    the entry point sets from ``settings.prefect``.
    """

    def __init__(
        self,
        source: str,
        requests_per_second: float,
        *,
        burst: int | None = None,
        timeout_seconds: float | None = 300.0,
    ) -> None:
        self.name = prefect_limit_name(source)
        self.requests_per_second = requests_per_second
        self.limit = burst if burst is not None else default_burst(requests_per_second)
        self.timeout_seconds = timeout_seconds
        self._ensured = False

    async def ensure_limit(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectAlreadyExists

        try:
            async with get_client() as client:
                # Another run may create it between our read and our create: theirs is as good.
                with contextlib.suppress(ObjectAlreadyExists):
                    await client.upsert_global_concurrency_limit_by_name(
                        self.name, self.limit, slot_decay_per_second=self.requests_per_second
                    )
        except Exception as exc:  # httpx/Prefect errors: the server is the thing that failed
            raise ServiceError(
                f"cannot create the Prefect rate limit {self.name!r}: {type(exc).__name__}: {exc}; "
                "check that the Prefect server is up (marketpipe status)"
            ) from exc
        self._ensured = True

    async def acquire(self) -> None:
        from prefect.concurrency.asyncio import rate_limit

        if not self._ensured:
            await self.ensure_limit()
        try:
            await rate_limit(self.name, occupy=1, timeout_seconds=self.timeout_seconds, strict=True)
        except Exception as exc:
            raise ServiceError(
                f"cannot acquire a slot of the Prefect rate limit {self.name!r}: {type(exc).__name__}: {exc}"
            ) from exc


def build_rate_limiter(
    source: str, requests_per_second: float | None, *, shared: bool, burst: int | None = None
) -> RateLimiter:
    """Prefect-backed when ``shared`` (a Prefect server is configured), else in-process."""
    if requests_per_second is None:
        return Unlimited()
    if shared:
        return PrefectRateLimiter(source, requests_per_second, burst=burst)
    return TokenBucket(requests_per_second, burst=burst)


# ---------------------------------------------------------------------------------------------
# Composition


class Resilience:
    """Rate limit, breaker and retries around one request attempt of one source."""

    def __init__(
        self,
        source: str,
        *,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(source)
        self.limiter = limiter or Unlimited()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        state = self.breaker.state.value
        return f"Resilience(source={self.source!r}, policy={self.policy!r}, breaker={state})"

    async def call(self, attempt: Callable[[], Awaitable[T]], *, describe: str = "request", request: Any = None) -> T:
        """``attempt()`` under the rate limit, the breaker and the retry policy. The error it gives up
        with names ``request`` when the attempt did not (an open breaker fails before any request
        is sent), so the dead-letter queue can record the page and a replay can fetch it."""
        retry = 0
        while True:
            try:
                self.breaker.before_call()
                try:
                    await self.limiter.acquire()
                    result = await attempt()
                except SourceError as exc:
                    if exc.retryable:
                        self.breaker.record_failure()
                    else:
                        self.breaker.record_success()  # the vendor answered; the request was wrong
                    raise
                except BaseException:
                    self.breaker.abandon_trial()
                    raise
                self.breaker.record_success()
                return result
            except SourceError as exc:
                if not exc.retryable or retry >= self.policy.retry_attempts:
                    if exc.retryable and self.policy.retry_attempts:
                        exc.args = (f"{exc.args[0]} (gave up after {retry + 1} attempts)", *exc.args[1:])
                    exc.attempts = retry + 1  # type: ignore[attr-defined]
                    if exc.request is None:
                        exc.request = request
                    raise
                retry += 1
                delay = self.policy.delay_seconds(retry, self._rng, getattr(exc, "retry_after_seconds", None))
                logger.warning(
                    "{}: {} failed ({}); retry {}/{} in {:.2f}s",
                    self.source,
                    describe,
                    exc,
                    retry,
                    self.policy.retry_attempts,
                    delay,
                )
                await self._sleep(delay)
