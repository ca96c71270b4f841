"""What every vendor request goes through: rate limit, circuit breaker, retries.

- :class:`RetryPolicy` is pure: which errors are retried (``SourceError.retryable``: 429, 5xx,
  timeouts, connection resets; never 400/401/403/404 or malformed payloads) and how long to wait
  (exponential backoff with full jitter, never less than the vendor's ``Retry-After``).
- :class:`CircuitBreaker` is per source: it opens after N consecutive transient failures, so a vendor
  outage costs one fast error per request instead of a full retry ladder, and half-opens after a
  cool-down to let one trial request through. Its :meth:`~CircuitBreaker.snapshot` feeds the health
  check. The clocks are injected. The breaker itself is pure; it is shared across processes and
  hosts through a :class:`BreakerStore` (``ops.circuit_breakers``: :mod:`sources.breaker_store`):
  :class:`Resilience` publishes each change of state (:meth:`~CircuitBreaker.take_change`) and,
  at most every ``refresh_seconds``, adopts what another process published
  (:meth:`~CircuitBreaker.adopt`), so a vendor one worker found down is not hammered by the others.
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
import re
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from loguru import logger

from core.errors import PermanentSourceError, RetryableSourceError, ServiceError, SourceError

T = TypeVar("T")
Clock = Callable[[], float]
WallClock = Callable[[], datetime]
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


MAX_ERROR_CHARS = 500


def redact_secrets(text: str, secrets: Collection[str | None] = (), params: Collection[str] = ()) -> str:
    """``text`` without the given secret values nor the values of ``name=value`` pairs whose name is
    in ``params`` (a query string in an error message), cut to ``MAX_ERROR_CHARS``: what may be
    stored and shown to whoever reads the health report."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    if params:
        names = "|".join(re.escape(p) for p in params)
        text = re.sub(rf"(?i)\b({names})=[^&\s'\"]+", r"\1=***", text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


@dataclass(frozen=True)
class BreakerRecord:
    """A breaker's state as one process published it for the others (a row of ``ops.circuit_breakers``).

    ``state`` is the state at ``updated_at``; an open breaker turns half-open for every reader once
    ``cooldown_seconds`` have passed since ``opened_at`` (:meth:`state_at`), whether or not its
    writer is still running."""

    source: str
    state: BreakerState
    opened_at: datetime | None
    consecutive_failures: int
    cooldown_seconds: float
    last_error: str | None
    written_by: str
    updated_at: datetime

    def state_at(self, now: datetime) -> BreakerState:
        if self.state is BreakerState.CLOSED or self.opened_at is None:
            return BreakerState.CLOSED
        if self.state is BreakerState.OPEN and now - self.opened_at < timedelta(seconds=self.cooldown_seconds):
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def retry_in_seconds(self, now: datetime) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_seconds - (now - self.opened_at).total_seconds())


class BreakerStore(Protocol):
    """Where breakers are shared: one record per source, the newest write wins."""

    async def read(self, source: str) -> BreakerRecord | None:
        """The source's last published record, None when no process published one."""
        ...

    async def publish(self, record: BreakerRecord) -> None: ...


def process_name() -> str:
    """``host:pid``, naming the writer of a published breaker record."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


class CircuitBreaker:
    """Per-source breaker: closed -> open after ``failure_threshold`` consecutive transient failures
    -> half-open after ``cooldown_seconds`` (one trial request) -> closed on success, open on failure.

    ``clock`` (monotonic) times the cool-down; ``wall_clock`` stamps the records other processes
    read. Each change of state is kept until :meth:`take_change` hands it out for publishing;
    :meth:`adopt` takes in a change another process published.
    """

    def __init__(
        self,
        source: str,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Clock = time.monotonic,
        wall_clock: WallClock = lambda: datetime.now(UTC),
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.source = source
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._failures = 0
        self._opened_at: float | None = None
        self._opened_at_utc: datetime | None = None
        self._trial_in_flight = False
        self._last_error: str | None = None
        self._change: BreakerState | None = None  # not yet published
        self._closed_at_utc: datetime | None = None

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

    @property
    def last_error(self) -> str | None:
        return self._last_error

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
            self._change = BreakerState.HALF_OPEN
            return
        wait = self.retry_in_seconds() or self.cooldown_seconds
        raise source_error(
            RetryableSourceError,
            f"circuit breaker for {self.source} is {state.value} after {self._failures} consecutive "
            f"failures; requests resume in {wait:.1f}s",
            retry_after_seconds=wait,
        )

    def record_success(self) -> None:
        if self._opened_at is not None:
            self._change = BreakerState.CLOSED
            self._closed_at_utc = self._wall_clock()
        self._failures = 0
        self._opened_at = None
        self._opened_at_utc = None
        self._trial_in_flight = False

    def record_failure(self, error: str | None = None) -> None:
        """``error``: the failure's text, already redacted (it is published with the state)."""
        self._failures += 1
        if error is not None:
            self._last_error = error
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or self._failures >= self.failure_threshold:
            if self._opened_at is None or was_trial:
                logger.warning(
                    "circuit breaker for {} opens after {} consecutive failures", self.source, self._failures
                )
                self._change = BreakerState.OPEN
            self._opened_at = self._clock()
            self._opened_at_utc = self._wall_clock()

    def abandon_trial(self) -> None:
        """The trial ended without a verdict (cancelled, or a bug): let the next caller try."""
        self._trial_in_flight = False

    def record(self, state: BreakerState | None = None, written_by: str = "") -> BreakerRecord:
        """This breaker as a record for the others (``state``: the one to publish, default the current)."""
        return BreakerRecord(
            source=self.source,
            state=state or self.state,
            opened_at=self._opened_at_utc,
            consecutive_failures=self._failures,
            cooldown_seconds=self.cooldown_seconds,
            last_error=self._last_error,
            written_by=written_by,
            updated_at=self._wall_clock(),
        )

    def take_change(self, written_by: str = "") -> BreakerRecord | None:
        """The record of the change of state not yet published (None: nothing changed since)."""
        change, self._change = self._change, None
        if change is None:
            return None
        return self.record(change, written_by)

    def adopt(self, record: BreakerRecord) -> None:
        """Take in what another process published: its newer opening (this breaker opens too, with
        the same ``opened_at``, so requests resume everywhere at the same time), or its closing after
        this breaker opened (its trial succeeded). Older news changes nothing; adopting is not a
        change of this breaker's own to publish."""
        if record.source != self.source:
            raise ValueError(f"a record of {record.source} cannot be adopted by the breaker of {self.source}")
        now_utc = self._wall_clock()
        if record.state is BreakerState.CLOSED or record.opened_at is None:
            if self._opened_at_utc is not None and record.updated_at > self._opened_at_utc:
                self._failures = 0
                self._opened_at = None
                self._opened_at_utc = None
            return
        newer = self._opened_at_utc is None or record.opened_at > self._opened_at_utc
        closed_since = self._closed_at_utc is not None and self._closed_at_utc >= record.updated_at
        if newer and not closed_since:
            self._opened_at = self._clock() - max(0.0, (now_utc - record.opened_at).total_seconds())
            self._opened_at_utc = record.opened_at
            self._failures = max(self._failures, record.consecutive_failures)
            self._last_error = record.last_error

    def snapshot(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "state": self.state.value,
            "consecutive_failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "cooldown_seconds": self.cooldown_seconds,
            "retry_in_seconds": round(self.retry_in_seconds(), 3),
            "opened_at": self._opened_at_utc.isoformat() if self._opened_at_utc else None,
            "last_error": self._last_error,
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


def shared_bucket(requests_per_second: float) -> int:
    """Slots a process takes from a shared rate limit in one call: half a second of requests, at
    least one.

    The limit's server hands out a bucket only when the last one has decayed in full (a bucket
    asked for sooner is refused, and the refusal restarts the decay), and the call takes a round
    trip: a process gets ``bucket`` slots every ``bucket / r`` seconds plus that round trip
    (~20-40 ms to a Prefect server sharing the cores with the run). With buckets of a tenth of a
    second the round trip idled the limit a fifth of the time (72-80 % of a 50/s limit used,
    measured); with half a second, a twentieth (95-99 %). The process hands the slots out at the
    limit's pace (:class:`PrefectRateLimiter`), so the vendor does not see a bucket as one burst.
    """
    return max(1, math.floor(requests_per_second / 2))


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


# After a refusal, how long a process reads the limit before each request for a bucket (another
# process was seen on it); alone for that long, it asks straight away again, saving the read.
CONTENTION_SECONDS = 10.0
OUTAGE_REMINDER_SECONDS = 60.0  # how often a process pacing alone says so again


class LimitServerUnreachable(ServiceError):
    """The Prefect server behind a shared rate limit did not answer (no connection, no answer in
    time, a 5xx): :class:`PrefectRateLimiter` paces the process alone meanwhile."""


def prefect_limit_name(source: str) -> str:
    return f"marketpipe-rate-{source}"


class PrefectRateLimiter:
    """A Prefect global concurrency limit with slot decay, shared by every run on every host.

    The limit (``marketpipe-rate-<source>``) is created or corrected on first use, so a changed
    ``rate_limits.<source>.requests_per_second`` takes effect without a manual ``prefect gcl``
    step. The Prefect API is the one of the ambient Prefect settings (``PREFECT_API_URL``), which
    the entry point sets from ``settings.prefect``.

    Slots are taken a bucket at a time (:func:`shared_bucket`, the limit's capacity) and handed
    out no faster than the limit with a burst of :func:`default_burst`, the pace taken at the
    moment of sending (one process sends at most r + r/10 requests in any second, however many of
    its tasks wait). A bucket's slots are held for one period (``bucket / r``) from the moment the
    request that got them was sent: the server counts them free again no sooner, so slots held
    past that (through an idle spell, say) are never sent on top of another process's bucket.
    A limit deleted on the server is created again, once, and the bucket asked for again; one
    made smaller than this process's bucket (another process configured with a lower rate) is an
    error that says so: the lower limit holds until this process restarts with the new rate. A
    limit found inactive on the server (``prefect gcl disable``: the server then grants every
    request, so it no longer limits anything) is activated again, with a warning, when the process
    first uses it and whenever it reads it (under contention).

    The server not answering (a restart, a slow API) holds the callers at most
    ``server_timeout_seconds`` per call: the Prefect client's own retries (up to ~60 s of backoff)
    are cut there. The process then paces its requests alone at the configured rate (the pace above:
    never more than r + r/10 in any second from this process, though N processes may then send N x
    r), says so in a warning and counts them (``local_requests``, ``outages``), and asks the server
    again every ``server_retry_seconds`` beside those requests, never holding them, going back to
    the shared limit at its first answer.

    ``clock``, ``sleep`` and ``client`` (a factory of Prefect clients, ``get_client``) are the seams
    a test drives time and a model of the server through.
    """

    def __init__(
        self,
        source: str,
        requests_per_second: float,
        *,
        burst: int | None = None,
        timeout_seconds: float | None = 300.0,
        server_timeout_seconds: float = 5.0,
        server_retry_seconds: float = 5.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        client: Callable[[], Any] | None = None,
    ) -> None:
        self.name = prefect_limit_name(source)
        self.server_timeout_seconds = server_timeout_seconds
        self.server_retry_seconds = server_retry_seconds
        self.requests_per_second = requests_per_second
        self.limit = burst if burst is not None else shared_bucket(requests_per_second)
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._sleep = sleep
        self._client = client
        self._pace = TokenBucket(requests_per_second, clock=clock, sleep=sleep)
        self._ensured = False
        # Slots are taken from the server a bucket's worth at a time (one API call, not one per
        # request) and handed out here; the shared limit is the same: every request is a slot.
        self._held = 0
        self._lock = asyncio.Lock()
        # When the bucket this process took last is free again on the server (slots decay at
        # requests_per_second): asking sooner is refused (423), and a refusal restarts the
        # limit's decay for every holder (see _take_bucket).
        self._next_bucket_at = 0.0
        self._held_until = 0.0  # when the held slots are dropped
        self.refusals = 0  # bucket requests the server refused (423): other holders took the slots
        self.buckets = 0  # buckets taken
        self.reads = 0  # reads of the limit (while other processes share it) before asking
        self._contended_until = 0.0  # until then, the limit is read before each request for a bucket
        # The server not answering: requests are paced by this process alone until _local_until,
        # when the server is asked again.
        self._local_until: float | None = None
        self._local_since = 0.0
        self._remind_at = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._probe_error: Exception | None = None
        self.outages = 0  # times the server stopped answering and the process paced alone
        self.local_requests = 0  # requests paced by this process alone (not counted on the shared limit)

    @property
    def period(self) -> float:
        """Seconds the server takes to count a bucket's slots free again."""
        return self.limit / self.requests_per_second

    def _prefect_client(self) -> Any:
        if self._client is not None:
            return self._client()
        from prefect.client.orchestration import get_client

        return get_client()

    async def _bounded(self, call: Awaitable[T], doing: str) -> T:
        """One call to the Prefect server, cut after ``server_timeout_seconds`` (the client's own
        retries included). No connection, no answer in time or a 5xx is a :class:`LimitServerUnreachable`."""
        import httpx

        try:
            async with asyncio.timeout(self.server_timeout_seconds):
                return await call
        except TimeoutError as exc:
            raise LimitServerUnreachable(f"{doing}: no answer within {self.server_timeout_seconds:g} s") from exc
        except httpx.TransportError as exc:
            raise LimitServerUnreachable(f"{doing}: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code >= 500:
                raise LimitServerUnreachable(f"{doing}: HTTP {exc.response.status_code}") from exc
            raise

    async def ensure_limit(self) -> None:
        from prefect.exceptions import ObjectAlreadyExists

        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await self._bounded(stack.enter_async_context(self._prefect_client()), "connecting")
                # Another run may create it between our read and our create: theirs is as good.
                with contextlib.suppress(ObjectAlreadyExists):
                    await self._bounded(
                        client.upsert_global_concurrency_limit_by_name(
                            self.name, self.limit, slot_decay_per_second=self.requests_per_second
                        ),
                        "creating the limit",
                    )
                # The upsert corrects the limit and its decay, not whether it is active.
                limit = await self._bounded(
                    client.read_global_concurrency_limit_by_name(self.name), "reading the limit"
                )
                await self._keep_active(client, limit)
        except LimitServerUnreachable:
            raise
        except Exception as exc:  # httpx/Prefect errors: the server is the thing that failed
            raise ServiceError(
                f"cannot create the Prefect rate limit {self.name!r}: {type(exc).__name__}: {exc}; "
                "check that the Prefect server is up (marketpipe status)"
            ) from exc
        self._ensured = True

    async def _keep_active(self, client: Any, limit: Any) -> None:
        """Activate the limit again if the server has it inactive: Prefect grants every request on an
        inactive limit, so the vendor would get every process's requests unlimited."""
        if limit.active:
            return
        from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

        logger.warning(
            "{}: the Prefect rate limit was INACTIVE on the server (the server then grants every request: "
            "nothing limited the requests to the vendor); activating it again at {:g} requests/s. To run "
            "without a shared limit, remove rate_limits.<source>.requests_per_second instead of disabling it",
            self.name,
            self.requests_per_second,
        )
        await self._bounded(
            client.update_global_concurrency_limit(self.name, GlobalConcurrencyLimitUpdate(active=True)),
            "activating the limit",
        )

    async def _take_bucket(self) -> float:
        """``limit`` slots from the server in one call; returns when the request that got them was
        sent. The call is made on the run's own Prefect client (Prefect's ``rate_limit`` goes
        through a service thread of its own and emits an event per call: ~25 ms of this process's
        CPU a bucket, measured). A limit the server does not have raises :class:`LookupError`.

        A refusal (423) restarts the limit's decay on the server: its active slots are kept as
        they were at the last grant while the decay's clock is reset, so every refused request
        pushes the next grant a whole period out, whoever asks. Following the refusal's
        Retry-After (the denied slots' decay, unrelated to when the limit frees) spread the asks
        of processes sharing a limit over the period, each refusing the next: 2-3 processes got
        40-55 % of the limit. After a refusal, and before each request for ``CONTENTION_SECONDS``
        after the last one, the process reads the limit instead (a read changes nothing) and asks
        only once its slots have decayed; the asks then fall together just after the limit
        frees, where a refusal costs little. Alone on the limit, a process never reads it.
        Gives up after ``timeout_seconds`` without a bucket."""
        import httpx

        deadline = self._clock() + self.timeout_seconds if self.timeout_seconds is not None else None
        async with contextlib.AsyncExitStack() as stack:
            client = await self._bounded(stack.enter_async_context(self._prefect_client()), "connecting")
            while True:
                if self._clock() < self._contended_until:
                    await self._until_free(client, deadline)
                sent = self._clock()
                try:
                    response = await self._bounded(
                        client.increment_concurrency_slots(names=[self.name], slots=self.limit, mode="rate_limit"),
                        "asking for slots",
                    )
                except httpx.HTTPStatusError as exc:
                    status = exc.response.status_code
                    if status == 404:
                        raise LookupError(f"the limit {self.name!r} does not exist on the server") from exc
                    if status == 422:  # a bucket larger than the limit: another process set it lower
                        raise self._smaller_on_server(f"the server said: {exc.response.text[:200]}") from exc
                    if status != 423:  # 423 Locked: the limit's slots are taken
                        raise
                    self.refusals += 1
                    self._contended_until = self._clock() + CONTENTION_SECONDS
                    continue
                if not response.json():
                    raise LookupError(f"the limit {self.name!r} does not exist on the server")
                return sent

    async def _until_free(self, client: Any, deadline: float | None) -> None:
        """Returns when the limit has room for a bucket, by reading it (its active slots, decayed)."""
        from prefect.exceptions import ObjectNotFound

        while True:
            try:
                limit = await self._bounded(
                    client.read_global_concurrency_limit_by_name(self.name), "reading the limit"
                )
            except ObjectNotFound as exc:
                raise LookupError(f"the limit {self.name!r} does not exist on the server") from exc
            self.reads += 1
            await self._keep_active(client, limit)
            if limit.limit < self.limit:  # no decay ever makes room for a bucket: say why at once
                raise self._smaller_on_server(f"the server has a limit of {limit.limit} slots")
            missing = limit.active_slots + self.limit - limit.limit  # slots to decay before a bucket fits
            if missing <= 0:
                return
            wait = missing / self.requests_per_second
            if deadline is not None and self._clock() + wait > deadline:
                raise TimeoutError(f"no slot within {self.timeout_seconds} s")
            await self._sleep(wait)

    def _smaller_on_server(self, found: str) -> ServiceError:
        """Another process set the shared limit lower than this process's bucket: no wait helps."""
        return ServiceError(
            f"the Prefect rate limit {self.name!r} is smaller on the server than this process's "
            f"bucket of {self.limit} ({self.requests_per_second:g} requests/s): another process "
            "runs with a lower rate_limits setting; restart this one with the same settings "
            f"({found})"
        )

    async def _new_bucket(self) -> None:
        if not self._ensured:
            await self.ensure_limit()
        early = self._next_bucket_at - self._clock()
        if early > 0:
            await self._sleep(early)
        try:
            try:
                sent = await self._take_bucket()
            except LookupError:
                await self.ensure_limit()
                sent = await self._take_bucket()
        except ServiceError:
            raise
        except TimeoutError as exc:
            raise ServiceError(
                f"no slot of the Prefect rate limit {self.name!r} ({self.requests_per_second:g} requests/s shared) "
                f"within {self.timeout_seconds:g} s: other processes hold all of it; run fewer at once, or raise "
                "rate_limits.<source>.requests_per_second if the vendor's plan allows"
            ) from exc
        except Exception as exc:
            raise ServiceError(
                f"cannot acquire slots of the Prefect rate limit {self.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        self._next_bucket_at = self._clock() + self.period
        self._held_until = sent + self.period
        self._held = self.limit
        self.buckets += 1

    def _pace_alone(self, error: LimitServerUnreachable) -> None:
        """The server did not answer: this process paces alone until the server is asked again."""
        now = self._clock()
        if self._local_until is None:
            self.outages += 1
            self._local_since = now
            self._remind_at = now + OUTAGE_REMINDER_SECONDS
            logger.warning(
                "{}: the Prefect server does not answer ({}); this process now paces its requests ALONE at "
                "{:g}/s, not shared with other processes (N processes may send N x that to the vendor); "
                "asking the server again every {:g} s",
                self.name,
                error,
                self.requests_per_second,
                self.server_retry_seconds,
            )
        elif now >= self._remind_at:
            self._remind_at = now + OUTAGE_REMINDER_SECONDS
            logger.warning(
                "{}: the Prefect server still does not answer after {:.0f} s ({}); {} requests paced by this "
                "process alone so far",
                self.name,
                now - self._local_since,
                error,
                self.local_requests,
            )
        self._local_until = now + self.server_retry_seconds

    async def _ask_again(self) -> None:
        """Whether the server answers again, asked beside the requests paced alone (never holding them)."""
        try:
            await self.ensure_limit()
        except LimitServerUnreachable as exc:
            self._pace_alone(exc)
        except Exception as exc:  # an answer, though not a good one: the next caller raises it
            self._probe_error = exc
        else:
            self._back_on_shared()

    def _back_on_shared(self) -> None:
        logger.warning(
            "{}: the Prefect server answers again after {:.0f} s; back on the shared limit "
            "({} requests were paced by this process alone)",
            self.name,
            self._clock() - self._local_since,
            self.local_requests,
        )
        self._local_until = None

    async def _slot(self) -> bool:
        """A held slot, a new bucket, or False: the server does not answer and the process paces alone."""
        if self._probe_error is not None:
            error, self._probe_error = self._probe_error, None
            raise error
        if self._local_until is not None:
            loop = asyncio.get_running_loop()
            probing = self._probe is not None and not self._probe.done() and self._probe.get_loop() is loop
            if self._clock() >= self._local_until and not probing:
                self._probe = loop.create_task(self._ask_again())
            return False
        if self._held and self._clock() >= self._held_until:
            self._held = 0
        if self._held == 0:
            try:
                await self._new_bucket()
            except LimitServerUnreachable as exc:
                self._pace_alone(exc)
                return False
        return True

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                shared = await self._slot()
                # The pace is taken here, at the moment of sending, after the slot: taken before the
                # lock, the tasks that queued while a bucket was asked for all went at once when it
                # came; taken before the slot, a token taken before a bucket request the server did
                # not answer for seconds went out beside a full burst.
                await self._pace.acquire()
                if not shared:
                    self.local_requests += 1
                    return
                if self._clock() < self._held_until:  # the slot is still ours at the moment of sending
                    self._held -= 1
                    return


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


STORE_RETRY_SECONDS = 30.0  # after the shared store failed, how long requests go on without it


class Resilience:
    """Rate limit, breaker and retries around one request attempt of one source.

    With a ``breaker_store`` the breaker is shared: before a request, at most every
    ``refresh_seconds`` (a cheap read of one row), the breaker adopts what another process
    published; each change of the breaker's own state is published at once. The store failing
    (the database restarting) costs a warning and the next read ``STORE_RETRY_SECONDS`` later,
    never a request: the local breaker goes on alone meanwhile. ``redact`` cleans an error's text before
    the breaker keeps it for publishing.
    """

    def __init__(
        self,
        source: str,
        *,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        breaker_store: BreakerStore | None = None,
        refresh_seconds: float = 2.0,
        redact: Callable[[str], str] = redact_secrets,
        clock: Clock = time.monotonic,
    ) -> None:
        self.source = source
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(source)
        self.limiter = limiter or Unlimited()
        self.breaker_store = breaker_store
        self.refresh_seconds = refresh_seconds
        self._redact = redact
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._next_read: float | None = None  # None: read before the first request
        self._writer = process_name()

    def __repr__(self) -> str:
        state = self.breaker.state.value
        return f"Resilience(source={self.source!r}, policy={self.policy!r}, breaker={state})"

    async def sync_breaker(self, *, force: bool = False) -> None:
        """Adopt the shared record when the last read is older than ``refresh_seconds`` (or ``force``)."""
        store = self.breaker_store
        if store is None or (not force and self._next_read is not None and self._clock() < self._next_read):
            return
        self._next_read = self._clock() + self.refresh_seconds
        try:
            record = await store.read(self.source)
        except Exception as exc:  # the store is a convenience: a request never fails because of it
            self._next_read = self._clock() + max(self.refresh_seconds, STORE_RETRY_SECONDS)
            logger.warning(
                "{}: cannot read the shared circuit breaker ({}); going on with this process's", self.source, exc
            )
            return
        if record is not None:
            self.breaker.adopt(record)

    async def publish_breaker(self) -> None:
        """Publish the breaker's change of state, if any."""
        record = self.breaker.take_change(self._writer)
        if record is None or self.breaker_store is None:
            return
        try:
            await self.breaker_store.publish(record)
        except Exception as exc:
            logger.warning(
                "{}: cannot publish the circuit breaker's state {} ({}); other processes will not see it",
                self.source,
                record.state.value,
                exc,
            )

    async def call(self, attempt: Callable[[], Awaitable[T]], *, describe: str = "request", request: Any = None) -> T:
        """``attempt()`` under the rate limit, the breaker and the retry policy. The error it gives up
        with names ``request`` when the attempt did not (an open breaker fails before any request
        is sent), so the dead-letter queue can record the page and a replay can fetch it. A rate
        limit that gives no slot (the shared limit's server refusing: made smaller by another
        process, no slot in time) is such an error too, not retried (the limiter already waited
        its timeout) and not the vendor's failure (the breaker does not count it)."""
        retry = 0
        while True:
            try:
                await self.sync_breaker()
                self.breaker.before_call()
                await self.publish_breaker()  # a half-open trial going out
                try:
                    await self.limiter.acquire()
                except ServiceError as exc:  # the shared limit's server refused: the vendor was not asked
                    self.breaker.abandon_trial()
                    raise PermanentSourceError(
                        f"{describe} was not sent: {exc}; the collection dead-letters the page: replay it "
                        "(marketpipe dlq replay) once that is fixed",
                        request=request,
                    ) from exc
                except BaseException:
                    self.breaker.abandon_trial()
                    raise
                try:
                    result = await attempt()
                except SourceError as exc:
                    if exc.retryable:
                        self.breaker.record_failure(self._redact(str(exc)))
                    else:
                        self.breaker.record_success()  # the vendor answered; the request was wrong
                    await self.publish_breaker()
                    raise
                except BaseException:
                    self.breaker.abandon_trial()
                    raise
                self.breaker.record_success()
                await self.publish_breaker()
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
