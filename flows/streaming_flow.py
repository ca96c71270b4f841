"""The live stream as a long-running Prefect flow run (deployment ``stream/stream``, queue
``streaming``, one run per vendor key at a time).

The flow hosts :class:`streaming.service.StreamService` and nothing else: no task run per message
or batch (a flow keeps every task run's state in memory and the server spends 25-100 ms of CPU per
task run). What the UI shows instead: a ``marketpipe.stream.heartbeat`` event every
``HEARTBEAT_S`` seconds with throughput, lag and the connection's counters (the stalled/lagging
stream automation reacts to them), one at the start (so a stream that never connects, and sends no
other, fires the "stream stalled" automation too), and a ``stream-report`` artifact when the run ends.

Stopping: cancelling the run in the UI (or SIGTERM from the worker) sets the service's stop event;
it drains — frames already read are parsed, windowed and committed, open windows stored provisional — and the
run ends. A run watches its own state too, so a cancel that arrives as ``Cancelling`` without a
signal stops it the same way.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.states import Cancelled, State

from core.settings import load_settings
from pipeline.alerts import STREAM_HEARTBEAT, STREAM_STOPPED
from streaming.service import StreamPlan, StreamReport, StreamService, local_stream

HEARTBEAT_S = 5.0
STATE_POLL_S = 2.0


class _Heartbeat:
    def __init__(self, source: str, every_s: float = HEARTBEAT_S) -> None:
        self.source, self.every_s = source, every_s
        # the first call (the service's, at its start) is sent: it arms the "stream stalled" automation
        # for a stream that never connects and so never sends another (a connected stream beats from
        # its status ticker even when it reads nothing)
        self.last, self.last_messages = time.monotonic() - every_s, 0

    def __call__(self, report: StreamReport) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        payload = report.as_dict()
        payload["msgs_per_s"] = round((report.messages - self.last_messages) / (now - self.last), 1)
        self.last, self.last_messages = now, report.messages
        emit_event(
            event=STREAM_HEARTBEAT,
            resource={"prefect.resource.id": f"marketpipe.stream.{self.source}", "marketpipe.stream": self.source},
            payload=payload,
        )


async def _watch_for_cancel(stop: asyncio.Event, cancelled: asyncio.Event) -> None:
    from prefect.client.orchestration import get_client

    run_id = flow_run.get_id()
    if run_id is None:
        return
    async with get_client() as client:
        while not stop.is_set():
            await asyncio.sleep(STATE_POLL_S)
            state = (await client.read_flow_run(run_id)).state
            if state is not None and state.name in ("Cancelling", "Cancelled"):
                cancelled.set()
                stop.set()


@flow(name="stream", flow_run_name="stream-{source}")
async def stream_flow(
    source: str = "polygon",
    symbols: list[str] | None = None,
    datasets: list[str] | None = None,
    hybrid: bool = True,
    feed: str | None = None,
    url: str | None = None,
    duration_seconds: float | None = None,
    overrides: dict[str, Any] | None = None,
    stop_key: str | None = None,
) -> dict[str, Any] | State:
    """Stream ``symbols`` of ``source`` into the hot store until cancelled (or ``duration_seconds``)."""
    settings = load_settings(overrides=overrides)
    plan = StreamPlan.of(
        source,
        symbols or settings.pipeline.symbols,
        datasets or ("trades", "quotes", "bars"),
        hybrid=hybrid,
        feed=feed,
        url=url,
    )
    logger = get_run_logger()
    logger.info(
        "streaming %s of %d symbol(s) from %s%s",
        ",".join(plan.datasets),
        len(plan.symbols),
        source,
        " (hybrid)" if hybrid else "",
    )
    loop = asyncio.get_running_loop()
    local = local_stream(stop_key) if stop_key else None  # run by the Python API in its process
    stop = local.stop if local is not None else asyncio.Event()
    if local is None and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    if duration_seconds is not None:
        loop.call_later(duration_seconds, stop.set)
    cancelled = asyncio.Event()
    watcher = asyncio.create_task(_watch_for_cancel(stop, cancelled))
    try:
        service = StreamService(settings, plan)
        service.heartbeat = _Heartbeat(service.name)
        if local is not None:
            local.service, service.connected = service, local.connected
            local.flow_run_id = str(flow_run.get_id()) if flow_run.get_id() else None
        report = await service.run(stop)
    finally:
        watcher.cancel()
    summary = report.as_dict()
    emit_event(
        event=STREAM_STOPPED,
        resource={"prefect.resource.id": f"marketpipe.stream.{service.name}", "marketpipe.source": source},
        payload=summary,
    )
    lines = "\n".join(f"| {k} | {v} |" for k, v in summary.items())
    await create_markdown_artifact(
        f"# Stream {source}\n\n| counter | value |\n|---|---|\n{lines}\n",
        key="stream-report",
        description=f"marketpipe stream of {source}",
    )
    logger.info(
        "stream ended: %s messages, %s trades, %s final bars",
        summary["messages"],
        summary["trades"],
        summary["final_bars"],
    )
    if cancelled.is_set():  # cancelled in the UI: drained, and the run says so
        return Cancelled(message=f"cancelled; drained: {summary['messages']} messages committed", data=summary)
    return summary
