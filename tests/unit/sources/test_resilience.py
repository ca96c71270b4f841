import asyncio
import random
from datetime import UTC, datetime

import pytest

from core.errors import PermanentSourceError, RetryableSourceError
from sources.resilience import (
    BreakerState,
    CircuitBreaker,
    Resilience,
    RetryPolicy,
    TokenBucket,
    default_burst,
    parse_retry_after,
    shared_bucket,
    source_error,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def run(coro):
    return asyncio.run(coro)


# Backoff ---------------------------------------------------------------------------------------


def test_full_jitter_stays_within_the_doubling_ceiling():
    policy = RetryPolicy(base_delay_seconds=0.5, max_delay_seconds=4.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        delays = [policy.backoff_seconds(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole interval


def test_without_exponential_backoff_the_delay_is_constant():
    policy = RetryPolicy(exponential_backoff=False, base_delay_seconds=0.25)
    assert {policy.backoff_seconds(r, random.Random(r)) for r in range(1, 6)} == {0.25}


def test_retry_after_is_a_floor_and_is_capped():
    policy = RetryPolicy(base_delay_seconds=0.1, max_retry_after_seconds=60)
    assert policy.delay_seconds(1, random.Random(1), retry_after_seconds=7) == 7
    assert policy.delay_seconds(1, random.Random(1), retry_after_seconds=10_000) == 60


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), (" 2.5 ", 2.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0), ("soon", None), (None, None)],
)
def test_parse_retry_after(header, expected):
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


# Breaker --------------------------------------------------------------------------------------


def test_breaker_opens_after_threshold_consecutive_failures():
    clock = FakeClock()
    breaker = CircuitBreaker("polygon", failure_threshold=3, cooldown_seconds=10, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(RetryableSourceError, match="open") as raised:
        breaker.before_call()
    assert raised.value.retry_after_seconds == pytest.approx(10)


def test_a_success_resets_the_failure_count():
    breaker = CircuitBreaker("polygon", failure_threshold=2, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 1


def test_breaker_half_opens_after_cooldown_and_admits_one_trial():
    clock = FakeClock()
    breaker = CircuitBreaker("polygon", failure_threshold=1, cooldown_seconds=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the trial
    with pytest.raises(RetryableSourceError):
        breaker.before_call()  # a second caller while the trial is out
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()


def test_failed_trial_reopens_for_a_full_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker("polygon", failure_threshold=1, cooldown_seconds=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot()["retry_in_seconds"] == 10
    assert breaker.snapshot()["healthy"] is False


# Resilience.call ------------------------------------------------------------------------------


class Script:
    """An attempt that raises the scripted errors in order, then returns 'ok'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def transient(status: int = 503, retry_after: float | None = None):
    return source_error(RetryableSourceError, f"HTTP {status}", status_code=status, retry_after_seconds=retry_after)


def test_transient_errors_are_retried_until_success():
    sleeps = Sleeps()
    resilience = Resilience("x", policy=RetryPolicy(retry_attempts=3), sleep=sleeps, rng=random.Random(1))
    attempt = Script(transient(), transient())
    assert run(resilience.call(attempt)) == "ok"
    assert attempt.calls == 3 and len(sleeps.calls) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_permanent_errors_are_never_retried(status):
    sleeps = Sleeps()
    resilience = Resilience("x", policy=RetryPolicy(retry_attempts=5), sleep=sleeps)
    attempt = Script(source_error(PermanentSourceError, f"HTTP {status}", status_code=status))
    with pytest.raises(PermanentSourceError):
        run(resilience.call(attempt))
    assert attempt.calls == 1 and sleeps.calls == []


def test_retries_stop_after_retry_attempts_and_say_so():
    resilience = Resilience("x", policy=RetryPolicy(retry_attempts=2), sleep=Sleeps())
    attempt = Script(*(transient() for _ in range(5)))
    with pytest.raises(RetryableSourceError, match="gave up after 3 attempts") as raised:
        run(resilience.call(attempt))
    assert attempt.calls == 3 and raised.value.attempts == 3


def test_zero_retry_attempts_means_one_try():
    attempt = Script(transient())
    with pytest.raises(RetryableSourceError):
        run(Resilience("x", policy=RetryPolicy(retry_attempts=0), sleep=Sleeps()).call(attempt))
    assert attempt.calls == 1


def test_a_429_waits_at_least_its_retry_after():
    sleeps = Sleeps()
    resilience = Resilience("x", policy=RetryPolicy(base_delay_seconds=0.01), sleep=sleeps)
    run(resilience.call(Script(transient(429, retry_after=3.0))))
    assert sleeps.calls[0] >= 3.0


def test_consecutive_transient_failures_open_the_breaker_and_permanent_ones_do_not():
    clock = FakeClock()
    breaker = CircuitBreaker("x", failure_threshold=2, cooldown_seconds=30, clock=clock)
    resilience = Resilience("x", policy=RetryPolicy(retry_attempts=0), breaker=breaker, sleep=clock.sleep)
    for _ in range(3):
        with pytest.raises(PermanentSourceError):
            run(resilience.call(Script(source_error(PermanentSourceError, "404"))))
    assert breaker.state is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(RetryableSourceError):
            run(resilience.call(Script(transient())))
    assert breaker.state is BreakerState.OPEN
    attempt = Script()
    with pytest.raises(RetryableSourceError, match="circuit breaker"):
        run(resilience.call(attempt))
    assert attempt.calls == 0  # an open breaker fails fast without touching the vendor


def test_giving_up_on_an_open_breaker_names_the_request_for_the_dead_letter_queue():
    clock = FakeClock()
    breaker = CircuitBreaker("x", failure_threshold=1, cooldown_seconds=30, clock=clock)
    resilience = Resilience("x", policy=RetryPolicy(retry_attempts=0), breaker=breaker, sleep=clock.sleep)
    with pytest.raises(RetryableSourceError):
        run(resilience.call(Script(transient()), request="page A"))
    with pytest.raises(RetryableSourceError, match="circuit breaker") as raised:
        run(resilience.call(Script(), request="page B"))
    assert raised.value.request == "page B"  # the breaker's error names no request of its own
    named = source_error(RetryableSourceError, "HTTP 503", request="page C")
    with pytest.raises(RetryableSourceError) as raised:
        run(Resilience("x", policy=RetryPolicy(retry_attempts=0), sleep=clock.sleep).call(Script(named), request="D"))
    assert raised.value.request == "page C"  # an error that names its request keeps it


def test_retry_waits_out_an_open_breaker_then_succeeds_through_the_trial():
    clock = FakeClock()
    breaker = CircuitBreaker("x", failure_threshold=1, cooldown_seconds=5, clock=clock)
    resilience = Resilience("x", policy=RetryPolicy(retry_attempts=3), breaker=breaker, sleep=clock.sleep)
    attempt = Script(transient())
    assert run(resilience.call(attempt)) == "ok"
    assert attempt.calls == 2 and breaker.state is BreakerState.CLOSED


# Token bucket ---------------------------------------------------------------------------------


def test_token_bucket_admits_burst_then_paces_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(10, burst=2, clock=clock, sleep=clock.sleep)
    start = clock.now

    async def take(n: int) -> list[float]:
        times = []
        for _ in range(n):
            await bucket.acquire()
            times.append(clock.now - start)
        return times

    times = run(take(12))
    assert times[:2] == [0.0, 0.0]
    assert times[-1] == pytest.approx(1.0)  # 10 more tokens at 10/s
    # any one-second window holds at most rate + burst acquisitions
    assert max(sum(1 for t in times if w <= t < w + 1.0) for w in times) <= 12


def test_default_burst_keeps_bursts_within_ten_percent():
    assert default_burst(50) == 5 and default_burst(150) == 15 and default_burst(1) == 1


def test_a_shared_bucket_is_half_a_second_of_requests():
    assert shared_bucket(50) == 25 and shared_bucket(10) == 5 and shared_bucket(1) == 1 and shared_bucket(0.2) == 1
