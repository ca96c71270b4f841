"""The Prefect-backed rate limit holds across three parallel processes (as across flow runs/hosts)."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support.vendors import stats

REPO = Path(__file__).resolve().parents[3]
RPS = 10


def test_three_parallel_runs_stay_within_the_shared_limit(stack, sandbox_url):
    env = {**os.environ, "PREFECT_API_URL": stack.prefect.resolved_api_url}
    worker = "tests.support.rate_limit_worker"
    processes = [
        subprocess.Popen([sys.executable, "-m", worker, sandbox_url, str(RPS), "25"], cwd=REPO, env=env)
        for _ in range(3)
    ]
    assert [p.wait(timeout=240) for p in processes] == [0, 0, 0]
    polygon = stats(sandbox_url)["vendors"]["polygon"]
    assert polygon["total"] == 75
    assert polygon["max_per_second"] <= RPS * 1.1 + 1e-9


def test_a_lone_holder_asks_for_slots_only_when_they_are_free(stack) -> None:
    """A limiter paces its bucket requests by the limit's decay: alone on the limit, none is refused
    (each refusal adds denied slots that push every holder's next try further out)."""
    import asyncio
    import uuid

    from prefect.client.orchestration import get_client

    from sources.resilience import PrefectRateLimiter

    os.environ["PREFECT_API_URL"] = stack.prefect.resolved_api_url
    source = f"pace{uuid.uuid4().hex[:8]}"
    limiter = PrefectRateLimiter(source, 50.0)

    async def take_and_read() -> int:
        for _ in range(100):  # 4 buckets of 25 (half a second at 50/s): about 2 s
            await limiter.acquire()
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(limiter.name)
            await client.delete_global_concurrency_limit_by_name(limiter.name)
        return limit.limit

    assert asyncio.run(take_and_read()) == 25
    assert limiter.refusals == 0 and limiter.buckets == 4


def test_slots_held_through_an_idle_spell_are_dropped(stack) -> None:
    """A bucket's slots are used within its period (from the request that got them) or not at all:
    slots the server counts free again, sent now, would add to another process's requests."""
    import asyncio
    import uuid

    from prefect.client.orchestration import get_client

    from sources.resilience import PrefectRateLimiter

    os.environ["PREFECT_API_URL"] = stack.prefect.resolved_api_url
    limiter = PrefectRateLimiter(f"idle{uuid.uuid4().hex[:8]}", 50.0)  # buckets of 25, 0.5 s

    async def take_idle_take() -> list[int]:
        await limiter.acquire()
        taken = [limiter.buckets]
        await asyncio.sleep(1.5)  # 24 slots held, past the bucket's period
        await limiter.acquire()
        taken.append(limiter.buckets)
        async with get_client() as client:
            await client.delete_global_concurrency_limit_by_name(limiter.name)
        return taken

    assert asyncio.run(take_idle_take()) == [1, 2]
    assert limiter.refusals == 0


def test_a_limit_disabled_on_the_server_is_activated_again(stack) -> None:
    """An inactive limit grants every request (the real server, as the model in
    tests/unit/sources/test_shared_rate_limit_model.py): the limiter activates it again."""
    import asyncio
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from sources.resilience import PrefectRateLimiter

    os.environ["PREFECT_API_URL"] = stack.prefect.resolved_api_url
    limiter = PrefectRateLimiter(f"off{uuid.uuid4().hex[:8]}", 50.0)

    async def disable_then_take() -> tuple[bool, int]:
        async with get_client() as client:
            await client.upsert_global_concurrency_limit_by_name(limiter.name, 25, slot_decay_per_second=50.0)
            await client.update_global_concurrency_limit(limiter.name, GlobalConcurrencyLimitUpdate(active=False))
            await limiter.acquire()
            limit = await client.read_global_concurrency_limit_by_name(limiter.name)
            await client.delete_global_concurrency_limit_by_name(limiter.name)
        return bool(limit.active), limit.active_slots

    active, slots_taken = asyncio.run(disable_then_take())
    assert active and slots_taken > 0  # the bucket was counted on the limit
