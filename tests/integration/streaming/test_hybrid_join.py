"""Hybrid mode against the sandbox: a stream disconnected several times during a session, each gap
filled over REST, leaves exactly the batch path's trades and 1-minute bars — no gap, no duplicate.

The sandbox replays 2024-06-03 from 10:00 at 120x on a clock shared by the test's connections, so a
reconnect resumes at the clock's current market time and the missed span exists only over REST.
Every wait is bounded in count and time."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pandas as pd
import pytest

from core.settings import Settings
from streaming.service import StreamPlan, StreamReport, StreamService
from tests.support.streaming import OPEN, assert_stored_equals_batch, delete_symbols, new_symbols, stream_url

DISCONNECTS = 3


@pytest.fixture
def hybrid_symbols(stack: Settings):
    names = new_symbols()
    yield names
    delete_symbols(stack, names)


async def run_with_disconnects(stack: Settings, plan: StreamPlan) -> StreamReport:
    settings = stack.model_copy(
        update={"streaming": stack.streaming.model_copy(update={"reconnect_base_seconds": 0.05})}
    )
    service = StreamService(settings, plan)
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    async with httpx.AsyncClient(base_url=stack.sandbox.base_url, timeout=10) as sandbox:
        for _ in range(DISCONNECTS):
            for _ in range(100):  # up to 20 s for the (re)connection to carry data
                if service.report.connects >= 1 and service.report.batches > 5:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # six market minutes streamed
            dropped = (await sandbox.post("/_sandbox/streams/disconnect", json={"vendor": "polygon"})).json()
            assert dropped["disconnected"] >= 1
            seen = service.report.connects
            for _ in range(100):
                if service.report.connects > seen:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
        await asyncio.sleep(3)
    stop.set()
    return await asyncio.wait_for(runner, 60)


def test_a_stream_disconnected_three_times_stores_what_the_batch_path_stores(stack: Settings, hybrid_symbols) -> None:
    plan = StreamPlan.of(
        "polygon", hybrid_symbols, ("trades", "bars"), hybrid=True, url=stream_url(stack, uuid.uuid4().hex)
    )
    report = asyncio.run(asyncio.wait_for(run_with_disconnects(stack, plan), 180))

    assert report.connects == DISCONNECTS + 1
    assert report.catchups == DISCONNECTS + 1  # at start and after every reconnect
    assert report.newest_event is not None and report.newest_event - OPEN >= pd.Timedelta(minutes=40)
    compared = assert_stored_equals_batch(stack, stack, hybrid_symbols)
    assert compared > 500


def test_a_vendor_bar_before_the_first_trade_does_not_hide_the_earlier_minutes(stack: Settings, hybrid_symbols) -> None:
    """The replay's first message is the vendor's bar of the minute that just ended (due at the start
    instant); at 1x the first trade comes later, in a micro-batch of its own. That bar must wait for the
    catch-up: stored first, it would mark the session's minutes before it as already fetched."""
    settings = stack.model_copy(
        update={"streaming": stack.streaming.model_copy(update={"batch_max_delay_seconds": 0.005})}
    )
    plan = StreamPlan.of(
        "polygon", hybrid_symbols, ("trades", "bars"), hybrid=True, url=stream_url(stack, uuid.uuid4().hex, speed=1)
    )

    async def scenario() -> StreamReport:
        service = StreamService(settings, plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        for _ in range(150):  # up to 30 s until the catch-up is stored and the stream goes on
            if service.report.catchups >= 1 and service.report.batches > 5:
                break
            await asyncio.sleep(0.2)
        stop.set()
        return await asyncio.wait_for(runner, 60)

    report = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert report.catchups == 1
    assert assert_stored_equals_batch(stack, stack, hybrid_symbols) > 100
