"""The shared rate limit (:class:`sources.resilience.PrefectRateLimiter`) against a model of the
Prefect server's rate-limit endpoint, in virtual time: what a vendor sees in any second, however
the processes' requests fall (tests/integration/sources/test_shared_rate_limit.py runs the real
server, in real time, with calendar-second counts).

The model is Prefect 3.9's ``/v2/concurrency_limits/increment`` in ``rate_limit`` mode
(prefect/server/models/concurrency_limits_v2.py): the active and denied slots decay by
``floor(decay * seconds since updated)``; a grant adds the slots; a refusal (423, Retry-After)
adds them to the denied ones and sets ``updated`` without decaying the active ones; a request
for more slots than the limit is a 422. An inactive limit (``prefect gcl disable``) grants every
request and counts none.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import selectors
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from loguru import logger
from prefect.exceptions import ObjectNotFound

from core.errors import PermanentSourceError, ServiceError
from sources.http import Request
from sources.resilience import PrefectRateLimiter, Resilience, RetryPolicy, default_burst

ROUND_TRIP = 0.02  # seconds to the server and back


class _VirtualSelector(selectors.DefaultSelector):
    """A selector whose waits take no real time: a wait with nothing ready moves the clock on."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout:
            self._loop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now


def _status(code: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/increment")
    response = httpx.Response(code, headers=headers, request=request)
    return httpx.HTTPStatusError(str(code), request=request, response=response)


class ModelServer:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.limit: int | None = None
        self.decay = 0.0
        self.active = self.denied = 0
        self.enabled = True  # the limit's ``active`` flag (``active`` here: its active slots)
        self.updated = 0.0
        self.grants: list[tuple[float, int]] = []
        self.refused = self.reads = 0
        # (from, to): the server does not answer; ``hangs``: each call waits a minute first (the
        # Prefect client retrying with its backoff), else the connection is refused at once.
        self.outage: tuple[float, float] | None = None
        self.hangs = True

    async def answer(self) -> None:
        """Raises while the server is down, as the Prefect client would."""
        if self.outage is not None and self.outage[0] <= self.clock() < self.outage[1]:
            if self.hangs:
                await asyncio.sleep(60.0)
            raise httpx.ConnectError("All connection attempts failed")

    def upsert(self, limit: int, decay: float) -> None:
        if self.limit is None:
            self.updated = self.clock()
        self.limit, self.decay = limit, decay

    def _decayed(self, slots: int) -> int:
        return max(0, slots - math.floor(self.decay * (self.clock() - self.updated)))

    def read(self) -> Any:
        """GET /v2/concurrency_limits/{name}: the active slots after decay; changes nothing."""
        if self.limit is None:
            raise ObjectNotFound(http_exc=_status(404))
        self.reads += 1
        return SimpleNamespace(limit=self.limit, active_slots=self._decayed(self.active), active=self.enabled)

    def update(self, active: bool | None) -> None:
        """PATCH /v2/concurrency_limits/{name} (only its ``active`` flag is modelled)."""
        if self.limit is None:
            raise ObjectNotFound(http_exc=_status(404))
        if active is not None:
            self.enabled = active

    def increment(self, slots: int) -> list[dict[str, int]]:
        if self.limit is None:
            return []
        if not self.enabled:
            return [{"granted": 0}]  # the limit is listed in the answer, nothing is counted
        if slots > self.limit:
            raise _status(422)
        active, denied = self._decayed(self.active), self._decayed(self.denied)
        if active + slots <= self.limit:
            self.active, self.denied, self.updated = active + slots, denied, self.clock()
            self.grants.append((self.clock(), slots))
            return [{"granted": slots}]
        retry = (slots + self.denied) / self.decay
        self.denied, self.updated = denied + slots, self.clock()
        self.refused += 1
        raise _status(423, {"Retry-After": f"{retry:.3f}"})


class ModelClient:
    """The calls of the Prefect client the limiter makes, a round trip each."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def upsert_global_concurrency_limit_by_name(
        self, name: str, limit: int, slot_decay_per_second: float
    ) -> None:
        await self.server.answer()
        await asyncio.sleep(ROUND_TRIP)
        self.server.upsert(limit, slot_decay_per_second)

    async def read_global_concurrency_limit_by_name(self, name: str) -> Any:
        await self.server.answer()
        await asyncio.sleep(ROUND_TRIP / 2)
        try:
            return self.server.read()
        finally:
            await asyncio.sleep(ROUND_TRIP / 2)

    async def update_global_concurrency_limit(self, name: str, concurrency_limit: Any) -> None:
        await self.server.answer()
        await asyncio.sleep(ROUND_TRIP)
        self.server.update(concurrency_limit.active)

    async def increment_concurrency_slots(self, names: list[str], slots: int, mode: str) -> httpx.Response:
        await self.server.answer()
        await asyncio.sleep(ROUND_TRIP / 2)
        try:
            granted = self.server.increment(slots)
        finally:
            await asyncio.sleep(ROUND_TRIP / 2)
        return httpx.Response(200, json=granted)


Plan = list[tuple[float, int, int]]  # per process: (start at, requests, concurrent tasks)


def run(plans: list[Plan], requests_per_second: float) -> tuple[list[float], ModelServer]:
    """Each plan a process with its own limiter on one shared limit; the instants requests went out."""
    loop = VirtualTimeLoop()
    server = ModelServer(loop.time)
    sent: list[float] = []

    def limiter() -> PrefectRateLimiter:
        return PrefectRateLimiter(
            "model", requests_per_second, clock=loop.time, sleep=asyncio.sleep, client=lambda: ModelClient(server)
        )

    async def task(limits: PrefectRateLimiter, left: list[int]) -> None:
        while left[0] > 0:  # the requests of a step, shared by its tasks
            left[0] -= 1
            await limits.acquire()
            sent.append(loop.time())

    async def process(plan: Plan) -> None:
        limits = limiter()
        for at, requests, tasks in plan:
            await asyncio.sleep(max(0.0, at - loop.time()))
            await asyncio.gather(*(task(limits, left) for left in [[requests]] for _ in range(tasks)))

    async def main() -> None:
        await asyncio.gather(*(process(plan) for plan in plans))

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return sorted(sent), server


def most_in_any(sent: list[float], seconds: float) -> int:
    """The most requests inside any window of ``seconds`` (a sliding window, not calendar seconds)."""
    most, first = 0, 0
    for last, at in enumerate(sent):
        while sent[first] <= at - seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize("rate", [5.0, 7.0, 50.0])
def test_one_process_never_sends_more_than_the_limit_and_its_burst_in_any_second(rate: float) -> None:
    sent, _ = run([[(0.0, int(rate * 6), 30)]], rate)
    assert len(sent) == int(rate * 6)
    assert most_in_any(sent, 1.0) <= rate + default_burst(rate)


def test_the_tasks_waiting_for_a_bucket_do_not_go_out_at_once() -> None:
    """30 tasks of one process queue while a bucket is asked for: when it comes they go out at the
    limit's pace, at most its burst (and the request that asked) in the same instant."""
    sent, _ = run([[(0.0, 150, 30)]], 50.0)
    assert most_in_any(sent, 1e-6) <= default_burst(50.0) + 1


def test_slots_held_past_their_period_are_not_sent_beside_another_processs_bucket() -> None:
    """A takes a bucket, sends one request and is busy until 0.7 s; B takes the slots the server
    counts free again from 0.5 s. A's 24 left are dropped, not sent beside B's: before, 72 requests
    went out in one second of a 50/s limit."""
    for a_back, b_from in [(0.7, 0.5), (0.6, 0.55), (0.8, 0.5), (0.9, 0.6)]:
        sent, server = run([[(0.0, 1, 1), (a_back, 60, 1)], [(b_from, 60, 1)]], 50.0)
        assert len(sent) == 121
        assert len(server.grants) >= 5
        assert most_in_any(sent, 1.0) <= 50 * 1.1, (a_back, b_from)


class OneProcess:
    """A limiter at 50/s on the model server, in virtual time; ``take(n)`` sends n requests."""

    def __init__(self, timeout_seconds: float = 300.0) -> None:
        self.loop = VirtualTimeLoop()
        self.server = ModelServer(self.loop.time)
        self.limits = PrefectRateLimiter(
            "model",
            50.0,
            timeout_seconds=timeout_seconds,
            clock=self.loop.time,
            client=lambda: ModelClient(self.server),
        )

    def take(self, n: int) -> None:
        async def requests() -> None:
            for _ in range(n):
                await self.limits.acquire()

        self.loop.run_until_complete(requests())


def test_a_limit_deleted_on_the_server_is_created_again() -> None:
    process = OneProcess()
    try:
        process.take(25)
        process.server.limit = None  # deleted (`prefect gcl delete`)
        process.take(26)
    finally:
        process.loop.close()
    assert process.limits.buckets == 3 and process.server.limit == 25


def test_a_limit_made_smaller_by_another_process_is_an_error_that_says_so() -> None:
    process = OneProcess()
    try:
        process.take(25)
        process.server.upsert(5, 10.0)  # another process, configured at 10 requests/s
        with pytest.raises(ServiceError, match="smaller on the server than this process's bucket of 25"):
            process.take(1)
    finally:
        process.loop.close()
    assert process.server.limit == 5  # the lower limit holds


def test_a_limit_made_smaller_while_the_process_is_contended_is_the_same_error_at_once() -> None:
    """Contended (after a refusal), the process reads the limit before asking. Before, a limit made
    smaller than its bucket never had room: it slept and read again until the 300 s timeout, its
    lock holding every request of the process, then raised a generic "no slot" timeout."""
    process = OneProcess()
    limit_held_by_another_process(process)
    try:
        process.take(1)  # refused once (423), then granted: contended for CONTENTION_SECONDS
        assert process.server.refused == 1
        process.server.upsert(5, 10.0)  # another process, configured at 10 requests/s
        started = process.loop.time()
        with pytest.raises(ServiceError, match=r"bucket of 25 .*the server has a limit of 5 slots") as raised:
            process.take(25)  # the 25th needs a new bucket
        waited = process.loop.time() - started
    finally:
        process.loop.close()
    assert "lower rate_limits setting" in str(raised.value)
    assert waited < 5.0  # virtual seconds: read once and raised, not slept to the timeout


def test_a_limit_found_inactive_on_the_server_is_activated_again() -> None:
    """An inactive limit grants every request: taken as granted, nothing limited the vendor."""
    process = OneProcess()
    process.server.upsert(25, 50.0)
    process.server.enabled = False  # `prefect gcl disable marketpipe-rate-model`
    try:
        process.take(100)
    finally:
        process.loop.close()
    assert process.server.enabled
    assert sum(slots for _, slots in process.server.grants) == 100  # every request counted on the limit


def smaller_limit(process: OneProcess) -> None:
    process.take(25)
    process.server.upsert(5, 10.0)  # another process, configured at 10 requests/s


def limit_held_by_another_process(process: OneProcess) -> None:
    process.server.upsert(25, 50.0)
    process.server.active = 25  # another process's bucket, granted now: free again in 0.5 s


@pytest.mark.parametrize(
    ("refusal", "timeout_seconds", "says"),
    [
        (smaller_limit, 300.0, "smaller on the server than this process's bucket of 25"),
        (limit_held_by_another_process, 0.1, "no slot of the Prefect rate limit 'marketpipe-rate-model'"),
    ],
    ids=["made-smaller", "no-slot-in-time"],
)
def test_a_page_the_shared_limit_gives_no_slot_for_is_an_error_naming_it_for_the_dead_letter_queue(
    refusal: Callable[[OneProcess], None], timeout_seconds: float, says: str
) -> None:
    """A ServiceError of the limit's server went past Resilience, neither retried nor naming the
    page: the collection dead-letters only SourceErrors naming their request, so the page was lost
    from the run. Now it is a permanent SourceError naming the page, the limit and what to do."""
    process = OneProcess(timeout_seconds)
    refusal(process)
    resilience = Resilience("model", policy=RetryPolicy(retry_attempts=3), limiter=process.limits)
    request = Request("model", "bars", "/v2/aggs/ticker/AAPL", {}, {"symbol": "AAPL"})
    sent: list[Request] = []

    async def attempt() -> None:
        sent.append(request)

    try:
        with pytest.raises(PermanentSourceError, match="dlq replay") as raised:
            process.loop.run_until_complete(resilience.call(attempt, describe="AAPL bars", request=request))
    finally:
        process.loop.close()
    assert raised.value.request is request and raised.value.attempts == 1  # type: ignore[attr-defined]
    assert says in str(raised.value) and not sent
    assert resilience.breaker.state.value == "closed"  # not the vendor's failure


@pytest.mark.parametrize("hangs", [True, False], ids=["slow", "refused"])
def test_while_the_server_does_not_answer_the_process_paces_alone_then_goes_back_to_the_shared_limit(
    hangs: bool,
) -> None:
    """The server is down from 2 s to 20 s. Before, the Prefect client's retries ran under the
    limiter's lock (every queued caller stalled a minute) and then the request failed."""
    process = OneProcess()
    process.server.outage, process.server.hangs = (2.0, 20.0), hangs
    sent: list[float] = []
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")

    async def task(left: list[int]) -> None:
        while left[0] > 0:
            left[0] -= 1
            await process.limits.acquire()
            sent.append(process.loop.time())

    async def tasks() -> None:
        await asyncio.gather(*(task(left) for left in [[1500]] for _ in range(20)))

    try:
        process.loop.run_until_complete(tasks())
    finally:
        logger.remove(sink)
        process.loop.close()
    limits = process.limits
    assert len(sent) == 1500
    assert most_in_any(sent, 1.0) <= 50 + default_burst(50.0)  # never over the rate, alone or shared
    longest_wait = max(later - earlier for earlier, later in itertools.pairwise(sent))
    assert longest_wait <= limits.server_timeout_seconds + 0.1
    # The requests went on meanwhile, held once by the request that found the server gone.
    assert sum(2.0 <= at < 20.0 for at in sent) >= 50 * (18 - limits.server_timeout_seconds - 1)
    assert limits.outages == 1 and limits.local_requests > 0
    assert any(at >= 20.0 for at, _ in process.server.grants)  # back on the shared limit
    assert any("paces its requests ALONE" in line for line in warnings)
    assert any("answers again" in line for line in warnings)


@pytest.mark.parametrize("starts", [[0.0, 0.13], [0.0, 0.13, 0.31], [0.0, 0.21, 0.37], [0.0, 0.05, 0.45]])
def test_processes_saturating_one_limit_together_use_nine_tenths_of_it_and_never_more(starts: list[float]) -> None:
    """A refusal restarts the limit's decay on the server. Before, a refused process waited the
    refusal's Retry-After and asked in the middle of another's period, refusing it in turn: 2-3
    processes got 40-55 % of the limit. They read the limit now and ask once it has room."""
    requests = 20 * 50  # each process: 20 seconds of the limit
    sent, server = run([[(at, requests, 20)] for at in starts], 50.0)
    assert len(sent) == requests * len(starts)
    assert most_in_any(sent, 1.0) <= 50
    used = len(sent) / (sent[-1] - sent[0]) / 50
    assert used >= 0.9, f"{used:.0%} of the limit used, {server.refused} refusals"
