"""Hybrid mode against the sandbox, where the review found spans lost for good: two reconnects
before the consumer reaches the first new connection's frames, frames spilled past the lag limit,
and a catch-up slow enough to fill the buffer. Each run ends with exactly the batch path's trades
and 1-minute bars stored (REST is the truth), over real WebSocket and HTTP traffic on 127.0.0.1.

The consumer is held up by a lock on ``ops.watermarks`` (every commit of trades or bars updates it)
taken in another connection: a slow database, while the reader goes on reading. Every wait is
bounded in count and time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from core.settings import Settings
from db.connect import database_connection
from pipeline.health import STREAM_GAP_AFTER
from streaming.service import StreamPlan, StreamReport, StreamService
from tests.support.streaming import OPEN, assert_stored_equals_batch, delete_symbols, new_symbols, stream_url


@pytest.fixture
def gap_symbols(stack: Settings):
    names = new_symbols("GP")
    yield names
    delete_symbols(stack, names)


def with_streaming(stack: Settings, **changes: Any) -> Settings:
    return stack.model_copy(update={"streaming": stack.streaming.model_copy(update=changes)})


async def wait_for(condition: Callable[[], bool], what: str, attempts: int = 150) -> None:
    """Poll every 0.2 s, ``attempts`` times at most."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not reached in {attempts * 0.2:.0f} s")


async def run_stream(
    settings: Settings, plan: StreamPlan, scenario: Callable[[StreamService, httpx.AsyncClient], Awaitable[None]]
) -> StreamReport:
    service = StreamService(settings, plan)
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    try:
        async with httpx.AsyncClient(base_url=settings.sandbox.base_url, timeout=10) as sandbox:
            await wait_for(lambda: service.report.catchups >= 1 and service.report.batches > 5, "the start")
            await scenario(service, sandbox)
            await asyncio.sleep(2)  # a few more market minutes, stored
    finally:
        stop.set()
    return await asyncio.wait_for(runner, 90)


class SlowDatabase:
    """Holds ``ops.watermarks`` locked from another connection: the stream's commits wait."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: Any = None

    def __enter__(self) -> SlowDatabase:
        self.conn = database_connection(self.settings)
        self.conn.execute("LOCK TABLE ops.watermarks IN EXCLUSIVE MODE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()
        self.conn.close()


def hybrid_plan(stack: Settings, symbols: list[str], speed: float = 120) -> StreamPlan:
    url = stream_url(stack, uuid.uuid4().hex, speed=speed)
    return StreamPlan.of("polygon", symbols, ("trades", "bars"), hybrid=True, url=url)


def test_two_reconnects_before_the_consumer_reads_on_lose_no_gap(stack: Settings, gap_symbols) -> None:
    """The review's double reconnect (finding 2a): the first new connection's frames reach the
    consumer after the second connect, in micro-batches of their own. Stored first, they moved the
    trades watermark past gap 1, and the catch-up, reading the watermark then, never fetched it."""
    settings = with_streaming(stack, reconnect_base_seconds=0.05, batch_max_rows=20, buffer_size=100_000)

    async def two_quick_reconnects(service: StreamService, sandbox: httpx.AsyncClient) -> None:
        with SlowDatabase(stack):
            await asyncio.sleep(0.5)  # the consumer waits on its commit; the reader reads on
            for _ in range(2):
                connects = service.report.connects
                assert (await sandbox.post("/_sandbox/streams/disconnect", json={"vendor": "polygon"})).json()[
                    "disconnected"
                ] >= 1
                await wait_for(lambda n=connects: service.report.connects > n, "a reconnect")  # type: ignore[misc]
                await asyncio.sleep(1.5)  # three market minutes read on the new connection

    report = asyncio.run(
        asyncio.wait_for(run_stream(settings, hybrid_plan(stack, gap_symbols), two_quick_reconnects), 240)
    )

    assert report.connects == 3
    assert report.connection["spilled"] == 0 and report.connection["dropped"] == 0  # a reconnect's gap only
    assert assert_stored_equals_batch(stack, stack, gap_symbols) > 100  # every minute of both gaps
    assert report.catchups >= 3  # the start and each reconnect


def test_spilled_frames_are_caught_up_over_rest(stack: Settings, gap_symbols) -> None:
    """Frames the reader spilled past the lag limit (finding 2c) were never read back: a permanent
    gap under bars announced final. Their span is now caught up over REST."""
    settings = with_streaming(stack, buffer_size=20, lag_limit_seconds=0.2)

    async def a_slow_database(service: StreamService, sandbox: httpx.AsyncClient) -> None:
        with SlowDatabase(stack):
            await asyncio.sleep(3)  # six market minutes: the buffer fills and spills

    report = asyncio.run(asyncio.wait_for(run_stream(settings, hybrid_plan(stack, gap_symbols), a_slow_database), 240))

    assert report.connection["spilled"] > 0 and report.connection["dropped"] == 0
    assert assert_stored_equals_batch(stack, stack, gap_symbols) > 100
    assert report.catchups >= 2  # the start and at least one spill


def test_a_slow_catch_up_does_not_make_the_stream_spill(stack: Settings, gap_symbols) -> None:
    """The catch-up ran inside the consumer, symbol after symbol (finding 3): meanwhile the buffer
    filled and spilled the newest frames, a gap the catch-up itself opened. With every REST request
    answered after 3 s, the consumer now goes on reading during the start's catch-up: more rows
    than the buffer holds wait behind it, none is spilled, and nothing is lost."""
    settings = with_streaming(stack, buffer_size=100, lag_limit_seconds=1.0)
    plan = hybrid_plan(stack, gap_symbols, speed=300)

    async def scenario() -> StreamReport:
        async with httpx.AsyncClient(base_url=stack.sandbox.base_url, timeout=10) as sandbox:
            slow = {"median_ms": 3000, "sigma": 0, "vendors": ["polygon"]}
            (await sandbox.post("/_sandbox/latency", json=slow)).raise_for_status()
            try:
                service = StreamService(settings, plan)
                stop = asyncio.Event()
                runner = asyncio.create_task(service.run(stop))
                try:
                    await wait_for(lambda: service.report.catchups >= 1 and service.report.batches > 5, "the start")
                    await asyncio.sleep(1)
                finally:
                    stop.set()
                return await asyncio.wait_for(runner, 90)
            finally:
                await sandbox.delete("/_sandbox/latency")

    report = asyncio.run(asyncio.wait_for(scenario(), 240))

    assert report.connection["spilled"] == 0 and report.connection["dropped"] == 0
    assert assert_stored_equals_batch(stack, stack, gap_symbols) > 100
    assert report.held_rows_peak > settings.streaming.buffer_size  # read on while the catch-up was in flight
    assert report.held_rows == 0  # everything held was stored in the end


def test_a_catch_up_refused_over_rest_is_fetched_again_once_rest_answers(
    stack: Settings, gap_symbols, monkeypatch
) -> None:
    """F4: a catch-up whose REST requests failed held the trades and bars watermarks until the
    process restarted. The sandbox refuses every REST request naming the first symbol (its
    ``killed_symbols`` fault) while the stream starts: the start's catch-up is left open, the stream
    stores what it reads, and health names the stream and the span once a retry was refused. Once
    REST answers again a retry fills the span: the hot store equals the batch path's, and the
    trades watermarks move past the span."""
    from pipeline.health import stream_issues
    from storage.streams import read_stream_status
    from storage.watermarks import read_watermarks

    monkeypatch.setattr("streaming.service.CATCH_UP_RETRY_S", 1.0)
    # the client gives up at once, on breakers of this process that the refusals never open
    collection = {"retry_attempts": 0, "circuit_failure_threshold": 1000, "circuit_share_refresh_seconds": 0.0}
    settings = stack.model_copy(update={"collection": stack.collection.model_copy(update=collection)})
    url = stream_url(stack, uuid.uuid4().hex)
    plan = StreamPlan.of("polygon", gap_symbols, ("trades", "bars"), hybrid=True, url=url, feed=uuid.uuid4().hex[:12])
    service = StreamService(settings, plan)

    def status_row() -> Any:
        with database_connection(stack) as conn:
            return next((s for s in read_stream_status(conn) if s.stream == service.name), None)

    def trades_marks() -> dict[str, Any]:
        with database_connection(stack) as conn:
            marks = read_watermarks(conn, source="polygon", dataset="trades", symbols=gap_symbols)
        return {k[2]: pd.Timestamp(m.high_water_ts) for k, m in marks.items()}

    async def scenario() -> tuple[Any, StreamReport]:
        async with httpx.AsyncClient(base_url=stack.sandbox.base_url, timeout=10) as sandbox:
            refuse = {"seed": 1, "killed_symbols": [gap_symbols[0]], "vendors": ["polygon"]}
            (await sandbox.post("/_sandbox/faults", json=refuse)).raise_for_status()
            stop = asyncio.Event()
            runner = asyncio.create_task(service.run(stop))
            try:
                try:
                    held = None
                    for _ in range(150):  # bounded: until a status row shows a refused retry
                        await asyncio.sleep(0.2)
                        held = await asyncio.to_thread(status_row)
                        if held is not None and int(held.counters.get("open_span_retries") or 0) >= 1:
                            break
                finally:
                    (await sandbox.delete("/_sandbox/faults")).raise_for_status()
                await wait_for(lambda: service.report.reopened_spans >= 1, "the span fetched again")
                await asyncio.sleep(2)  # four market minutes stored after it
            finally:
                stop.set()
            return held, await asyncio.wait_for(runner, 90)

    try:
        held, report = asyncio.run(asyncio.wait_for(scenario(), 240))
        marks = trades_marks()
    finally:
        with database_connection(stack, autocommit=True) as conn:
            conn.execute("DELETE FROM ops.stream_status WHERE stream = %s", (service.name,))

    assert held is not None and held.counters["open_spans"] == 1
    (issue,) = stream_issues([held], held.updated_at)
    assert f"stream {service.name} (running) has 1 span(s) its REST catch-up could not fill" in issue
    assert gap_symbols[0] in issue and "503" in issue
    assert (report.open_spans, report.reopened_spans) == (0, 1)
    assert assert_stored_equals_batch(stack, stack, gap_symbols) > 100  # the span is filled
    assert report.newest_event is not None
    assert all(marks[s] > report.newest_event - pd.Timedelta(minutes=1) for s in gap_symbols)  # past the span


@pytest.mark.parametrize("restart", ["while the market is open", "after the close"])
def test_a_span_left_open_by_a_killed_run_is_fetched_by_the_next_hybrid_run(
    stack: Settings, gap_symbols, monkeypatch, restart: str
) -> None:
    """The spans a hybrid stream missed lived only in its memory: a process killed with a span open
    left it to the watermarks held at its start, which a non-hybrid run (or any writer of those
    symbols) moves past, and health could not name it once the process was gone. Now the span's
    rows are in ops.stream_gaps from the first commit after it is known. Run 1 starts while REST
    refuses the first symbol (the sandbox's ``killed_symbols`` fault): its start's catch-up is left
    open and its rows are written open; the run is killed (cancelled, no retry yet). Health names
    the span from the table alone. The watermarks are moved to the newest stored trade and bar, as
    a non-hybrid run's commits move them. Run 2, hybrid, loads the span, fetches it, marks it
    applied, and the hot store equals the batch path's. After the close run 2 reads no event (its
    clock starts at 16:30): the span is fetched once the stream was quiet for the idle timeout."""
    from pipeline.health import check_health
    from stack.supervisor import Stack
    from storage.watermarks import Watermark, advance_watermarks

    monkeypatch.setattr("streaming.service.CATCH_UP_RETRY_S", 3600.0)  # run 1 never retries
    collection = {"retry_attempts": 0, "circuit_failure_threshold": 1000, "circuit_share_refresh_seconds": 0.0}
    settings = stack.model_copy(update={"collection": stack.collection.model_copy(update=collection)})
    url = stream_url(stack, uuid.uuid4().hex)
    plan = StreamPlan.of("polygon", gap_symbols, ("trades", "bars"), hybrid=True, url=url, feed=uuid.uuid4().hex[:12])
    name = StreamService(settings, plan).name

    def gap_rows() -> list[tuple[Any, ...]]:
        with database_connection(stack) as conn:
            return conn.execute(
                "SELECT symbol, dataset, span_start, span_end, state, recorded_at FROM ops.stream_gaps"
                " WHERE stream = %s AND symbol = ANY(%s) ORDER BY symbol, dataset",
                (name, gap_symbols),
            ).fetchall()

    async def killed_run() -> StreamReport:
        async with httpx.AsyncClient(base_url=stack.sandbox.base_url, timeout=10) as sandbox:
            refuse = {"seed": 1, "killed_symbols": [gap_symbols[0]], "vendors": ["polygon"]}
            (await sandbox.post("/_sandbox/faults", json=refuse)).raise_for_status()
            service = StreamService(settings, plan)
            runner = asyncio.create_task(service.run(asyncio.Event()))
            try:
                await wait_for(lambda: service.report.open_spans >= 1, "the start's catch-up left open")
                batches = service.report.batches
                await wait_for(lambda: service.report.batches > batches + 5, "micro-batches stored after it")
            finally:
                runner.cancel()  # killed: nothing of the run closes its span
                await asyncio.wait({runner}, timeout=30)  # a swallowed cancel ran on to the close (stop 36)
                (await sandbox.delete("/_sandbox/faults")).raise_for_status()
            assert runner.cancelled(), f"the cancelled run stopped in 30 s: {runner}"
            return service.report

    if restart == "after the close":
        closed = stream_url(stack, uuid.uuid4().hex, start="16:30")
        next_plan = StreamPlan.of("polygon", gap_symbols, ("trades", "bars"), hybrid=True, url=closed, feed=plan.feed)
        next_settings = with_streaming(settings, data_idle_timeout_seconds=2.0)
    else:
        next_plan, next_settings = plan, settings

    async def next_run() -> StreamReport:
        service = StreamService(next_settings, next_plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        try:
            await wait_for(lambda: service.report.reopened_spans >= 1, "the killed run's span fetched")
            await asyncio.sleep(2)  # a few more market minutes, stored
        finally:
            stop.set()
        return await asyncio.wait_for(runner, 90)

    try:
        asyncio.run(asyncio.wait_for(killed_run(), 240))
        left = gap_rows()
        recorded = max(row[5] for row in left)
        health = check_health(stack, status=Stack(stack).status(), now=recorded + STREAM_GAP_AFTER * 2)
        with database_connection(stack, autocommit=True) as conn:
            newest = conn.execute(
                "SELECT symbol, max(ts) FROM market.trades WHERE symbol = ANY(%s) GROUP BY symbol", (gap_symbols,)
            ).fetchall()
            minutes = conn.execute(
                "SELECT symbol, max(ts) FROM market.bars_intraday WHERE symbol = ANY(%s) AND timeframe = '1min'"
                " AND quality_flags = 0 GROUP BY symbol",
                (gap_symbols,),
            ).fetchall()
            with conn.transaction():  # what a non-hybrid run's commits do: the watermarks pass the span
                advance_watermarks(
                    conn,
                    [Watermark("polygon", "trades", s, "", ts) for s, ts in newest]
                    + [Watermark("polygon", "bars", s, "1min", ts) for s, ts in minutes],
                )
        report = asyncio.run(asyncio.wait_for(next_run(), 240))
        after = gap_rows()
    finally:
        with database_connection(stack, autocommit=True) as conn:
            conn.execute("DELETE FROM ops.stream_status WHERE stream = %s", (name,))
            conn.execute("DELETE FROM ops.stream_gaps WHERE stream = %s", (name,))

    assert {(s, d) for s, d, *_ in left} == {(s, d) for s in gap_symbols for d in ("trades", "bars")}
    assert {state for *_, state, _ in left} == {"open"}
    assert all(start <= OPEN < end for _, _, start, end, *_ in left)  # the start's span, from the session on
    (issue,) = [i for i in health["issues"] if i.startswith(f"stream {name}: the span of ")]  # from the table
    assert gap_symbols[0] in issue and "(open; " in issue
    assert report.reopened_spans >= 1 and report.open_spans == 0
    assert (report.newest_event is None) == (restart == "after the close")  # no event came after it
    spans = {(s, d, start, end) for s, d, start, end, *_ in left}
    assert {state for *key, state, _ in after if tuple(key) in spans} == {"applied"}  # its rows, and the start's
    assert {state for *_, state, _ in after} == {"applied"}
    assert assert_stored_equals_batch(stack, stack, gap_symbols) > 100  # the killed run's span is filled
