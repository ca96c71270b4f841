"""The 10-minute soak (marked slow: `pytest -m slow tests/ops/streaming/test_soak.py`): the stream
service takes 20,000 messages/s (trades and quotes of 40 symbols, paced by the sandbox's `rate`) for
MARKETPIPE_SOAK_SECONDS (default 600) into the hot store. Memory stays flat, nothing is spilled or
dropped, and the commit lag it reports is printed for the README."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from urllib.parse import urlencode

import pytest

from core.settings import Settings
from streaming.service import StreamPlan, StreamService
from tests.support.streaming import SESSION, delete_symbols

SECONDS = float(os.environ.get("MARKETPIPE_SOAK_SECONDS", "600"))
RATE = 20_000
SYMBOLS = [f"SK{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(40)]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 600)
def test_ten_minutes_at_20k_messages_per_second_keep_memory_flat_and_lose_nothing(stack: Settings) -> None:
    query = {"session": SESSION, "sessions": 5, "rate": RATE, "universe": ",".join(SYMBOLS), "stamp": "send"}
    url = stack.sandbox.base_url.replace("http://", "ws://") + "/stocks?" + urlencode(query)
    plan = StreamPlan.of("polygon", SYMBOLS, ("trades", "quotes"), url=url)

    async def soak() -> tuple[dict, list[int]]:
        service = StreamService(stack, plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        samples = []
        for _ in range(int(SECONDS // 10)):
            await asyncio.sleep(10)
            samples.append(rss_bytes())
        stop.set()
        report = await asyncio.wait_for(runner, 120)
        return report.as_dict(), samples

    try:
        report, rss = asyncio.run(soak())
    finally:
        delete_symbols(stack, SYMBOLS)
    print(json.dumps({"report": report, "rss_mb": [round(r / 2**20) for r in rss]}, default=str))
    assert report["messages"] >= RATE * SECONDS * 0.5  # it really ran at load
    assert report["spilled"] == 0 and report["dropped"] == 0 and report["dead"] == 0
    settled = rss[len(rss) // 5]  # after the first fifth (caches, numba, pools warmed up)
    assert max(rss[len(rss) // 5 :]) <= settled * 1.25, [round(r / 2**20) for r in rss]
