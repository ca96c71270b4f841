"""``DataFlowConfig.batch_size`` and ``interval_seconds`` bound a stream's micro-batches.

They are the facade's names for ``streaming.batch_max_rows`` and ``streaming.batch_max_delay_seconds``:
a micro-batch is committed once it holds ``batch_size`` messages or ``interval_seconds`` after its
first frame was read. Measured on a real stream from the sandbox (a session replayed at 120x), by
the stream's own counters: frames read, micro-batches committed.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from core.settings import Settings
from marketpipe.api import DataFlowConfig, DataPipelineOrchestrator, PipelineMode
from tests.support.streaming import SESSION, delete_symbols, new_symbols

FRAMES = 50  # frames read before the counters are compared (about a second at 120x)


@pytest.fixture
def stream_symbols(stack: Settings):
    names = new_symbols("DF")
    yield names
    delete_symbols(stack, names)


@pytest.fixture
def sandbox_replay(stack: Settings):
    """Every stream connection replays SESSION from 10:00 at 120x on one shared clock."""
    body = {"session": SESSION, "from": "10:00", "speed": 120, "clock": uuid.uuid4().hex}
    assert httpx.post(f"{stack.sandbox.base_url}/_sandbox/streams/defaults", json=body).status_code == 200
    yield
    httpx.delete(f"{stack.sandbox.base_url}/_sandbox/streams/defaults")


def frames_sent(stack: Settings) -> int:
    """Frames the sandbox has sent on every stream connection so far (its control API)."""
    connections = httpx.get(f"{stack.sandbox.base_url}/_sandbox/streams").json()["connections"]
    return sum(c["frames"] for c in connections)


def run_stream(stack: Settings, symbols: list[str], config: DataFlowConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a real-time stream with ``config``; once the sandbox has sent it FRAMES frames and
    it has had a moment to read them, its counters; then stop it (drain) and its final summary."""

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        before = frames_sent(stack)
        stream = await DataPipelineOrchestrator(stack).start_real_time_flow(symbols, config)
        try:
            for _ in range(300):  # bounded: at most 60 s
                if await asyncio.to_thread(frames_sent, stack) - before >= FRAMES:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # the frames sent are read
            running = stream.report
        finally:
            summary = await stream.stop()
        return running, summary

    return asyncio.run(scenario())


def test_batch_size_commits_a_micro_batch_per_few_messages(stack, stream_symbols, sandbox_replay):
    config = DataFlowConfig(mode=PipelineMode.REAL_TIME, batch_size=1, interval_seconds=600)

    running, summary = run_stream(stack, stream_symbols, config)

    # with the default 20,000 rows and the 600 s asked for, nothing would be committed while running
    assert running["batches"] >= 5 and summary["received"] >= FRAMES


def test_interval_seconds_holds_a_micro_batch_open_that_long(stack, stream_symbols, sandbox_replay):
    config = DataFlowConfig(mode=PipelineMode.REAL_TIME, batch_size=1_000_000, interval_seconds=600)

    running, summary = run_stream(stack, stream_symbols, config)

    # at the default 0.1 s, seconds of frames would have made many micro-batches: here the one
    # open micro-batch holds every message read until the stop drains it
    assert running["batches"] == 0
    assert summary["batches"] == 1 and summary["messages"] > 0 and summary["received"] >= FRAMES
