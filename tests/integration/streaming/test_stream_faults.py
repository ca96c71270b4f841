"""Bad input on a live stream: a tenth of the frames malformed. Each is dead-lettered with its raw
text (visible in `marketpipe dlq list`), and the stream goes on storing the good ones."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlencode

import pytest

from core.settings import Settings
from db.connect import database_connection
from streaming.service import StreamPlan, StreamService
from tests.support.streaming import SESSION, delete_symbols, new_symbols


@pytest.fixture
def fault_symbols(stack: Settings):
    names = new_symbols("MF")
    yield names
    delete_symbols(stack, names)
    with database_connection(stack, autocommit=True) as conn:
        conn.execute("DELETE FROM ops.dead_letters WHERE dataset = 'stream' AND request->>'feed' = %s", (names[0],))


def test_malformed_frames_are_dead_lettered_and_the_stream_goes_on(stack: Settings, fault_symbols) -> None:
    query = {"session": SESSION, "from": "10:00", "speed": 600, "malformed": 0.1, "clock": uuid.uuid4().hex}
    url = stack.sandbox.base_url.replace("http://", "ws://") + "/stocks?" + urlencode(query)
    # the feed names the test's dead letters (Polygon has no feeds: it only labels the request)
    plan = StreamPlan.of("polygon", fault_symbols, ("trades",), url=url, feed=fault_symbols[0])

    async def scenario():
        service = StreamService(stack, plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        for _ in range(300):  # bounded: until enough frames were dead-lettered and trades kept coming
            if service.report.dead >= 5 and service.report.trades > 100:
                break
            await asyncio.sleep(0.2)
        stop.set()
        return await asyncio.wait_for(runner, 60)

    report = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert report.dead >= 5 and report.trades > 100 and report.connects == 1  # never reconnected for it
    with database_connection(stack) as conn:
        letters = conn.execute(
            "SELECT error, payload #>> '{}' FROM ops.dead_letters WHERE source = 'polygon' AND dataset = 'stream'"
            " AND request->>'feed' = %s",
            (fault_symbols[0],),
        ).fetchall()
    assert len(letters) >= 5
    assert all(payload and '"ev"' in payload for _, payload in letters)  # the raw frame, cut short
