"""The stream as a Prefect flow run: started by the Python API in hybrid mode, cancelled from the
API the UI uses, it drains (everything read is committed) and ends Cancelled; heartbeats and its
report are on the server; `marketpipe stream tail` prints the closed bars a stream commits."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from marketpipe.api import DataFlowConfig, DataPipelineOrchestrator, PipelineMode
from pipeline.alerts import STREAM_HEARTBEAT, STREAM_STOPPED
from tests.support.streaming import SESSION, assert_stored_equals_batch, delete_symbols, new_symbols

BIN = Path(sys.executable).parent


@pytest.fixture
def flow_symbols(stack: Settings):
    names = new_symbols("FL")
    yield names
    delete_symbols(stack, names)


@pytest.fixture
def sandbox_replay(stack: Settings):
    """Every stream connection replays SESSION from 10:00 at 120x on one shared clock."""
    clock = uuid.uuid4().hex
    body = {"session": SESSION, "from": "10:00", "speed": 120, "clock": clock}
    assert httpx.post(f"{stack.sandbox.base_url}/_sandbox/streams/defaults", json=body).status_code == 200
    yield clock
    httpx.delete(f"{stack.sandbox.base_url}/_sandbox/streams/defaults")


def test_cancelling_the_flow_run_drains_the_stream_and_ends_it_cancelled(stack, flow_symbols, sandbox_replay):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.states import Cancelling

    orchestrator = DataPipelineOrchestrator(stack)

    async def scenario() -> tuple[str, dict]:
        stream = await orchestrator.start_real_time_flow(flow_symbols, DataFlowConfig(mode=PipelineMode.HYBRID))
        for _ in range(150):  # bounded: until the stream has streamed past its catch-up
            if stream.report.get("trades", 0) > stream.report.get("catchup_trades", 0) + 20:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(6)  # at least one heartbeat
        run_id = stream.flow_run_id
        assert run_id is not None
        async with get_client() as client:
            await client.set_flow_run_state(run_id, Cancelling(), force=True)
        began = time.monotonic()
        with pytest.raises(BaseException):  # noqa: B017 - a cancelled flow run's call raises
            await asyncio.wait_for(stream.wait(), 30)
        print(f"cancel to drained and ended: {time.monotonic() - began:.2f} s")  # reported, not asserted
        return run_id, stream.report

    run_id, report = asyncio.run(scenario())
    assert report["trades"] > 0 and report["catchups"] == 1

    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).state.name == "Cancelled"
        resource = EventResourceFilter(id=["marketpipe.stream.polygon"])
        ours = EventFilter(event=EventNameFilter(name=[STREAM_HEARTBEAT, STREAM_STOPPED]), resource=resource)
        seen: set[str] = set()
        for _ in range(40):  # bounded: the server stores events a moment after they are sent
            seen = {e.event for e in client.read_events(ours, limit=50).events}
            if seen >= {STREAM_HEARTBEAT, STREAM_STOPPED}:
                break
            time.sleep(0.5)
        assert seen >= {STREAM_HEARTBEAT, STREAM_STOPPED}
    assert assert_stored_equals_batch(stack, stack, flow_symbols) > 50  # nothing read was lost


def test_stream_tail_prints_the_bars_a_stream_commits(stack, flow_symbols, sandbox_replay):
    env = dict(os.environ)
    tail = subprocess.Popen(
        [str(BIN / "marketpipe"), "stream", "tail", "--symbols", flow_symbols[0], "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(3)  # the tail is listening before the stream commits its first bar
    stream = subprocess.run(
        [str(BIN / "marketpipe"), "stream", "--symbols", ",".join(flow_symbols), "--duration", "8"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert stream.returncode == 0, stream.stderr[-3000:]
    assert "stream polygon stopped:" in stream.stdout
    out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err[-3000:]
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(flow_symbols[0] in line and " 1min " in line for line in lines), out


def test_a_hybrid_pipeline_runs_the_batch_stages_then_streams(stack, flow_symbols, sandbox_replay):
    overrides = {"pipeline": {"symbols": flow_symbols, "bars": [{"timeframe": "1day", "lookback_days": 10}]}}
    orchestrator = DataPipelineOrchestrator(overrides=overrides)

    async def scenario() -> tuple[dict, dict]:
        result = await orchestrator.run_pipeline(stages=["ingestion", "processing"], mode=PipelineMode.HYBRID)
        stream = result["stream"]
        assert stream.running and stream.hybrid and set(stream.symbols) == set(flow_symbols)
        for _ in range(150):  # bounded: until the stream committed trades of its own
            if stream.report.get("trades", 0) > stream.report.get("catchup_trades", 0):
                break
            await asyncio.sleep(0.2)
        return result, await stream.stop()

    result, summary = asyncio.run(scenario())
    assert result["mode"] == "hybrid" and result["records_stored"] > 0  # the batch stages ran first
    assert summary["catchups"] == 1 and summary["trades"] > summary["catchup_trades"] > 0
