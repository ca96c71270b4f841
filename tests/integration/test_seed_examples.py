"""The seed's usage examples, run as written: only their import lines changed (``main.*`` ->
``marketpipe.api``), against the real embedded stack and its market sandbox.

Each example's code sits verbatim between ``# --- seed ---`` and ``# --- end seed ---``; what
precedes it is the context the seed assumes (an ``orchestrator``, a ``pipeline_manager``), built
with a small universe so the full pipeline runs in seconds; what follows asserts real outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
from datetime import datetime, timedelta

import pytest

from core.settings import Settings
from db.connect import database_connection

# Tickers no other test uses, so the first run really ingests (runs are incremental); the sandbox
# trades any ticker of at most six characters.
UNIVERSE = ["SEEDXA", "SEEDXB"]
SMALL = {
    "pipeline": {
        "symbols": UNIVERSE,
        "bars": [{"timeframe": "1day", "lookback_days": 30}, {"timeframe": "1min", "lookback_days": 5}],
    }
}


def count(settings: Settings, sql: str, *params) -> int:
    with database_connection(settings) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


@pytest.fixture(scope="module")
def basic_run(stack: Settings):
    """ "Basic Pipeline Execution", verbatim; returns the manager and what the example produced."""
    from marketpipe.api import DataPipelineManager, DataPipelineOrchestrator

    orchestrator = DataPipelineOrchestrator(overrides=SMALL)

    async def example():
        # fmt: off
        # --- seed ---
        # Initialize pipeline
        pipeline_manager = DataPipelineManager(orchestrator)
        await pipeline_manager.initialize()

        # Start pipeline
        await pipeline_manager.start()

        # Run full pipeline
        result = await pipeline_manager.run_pipeline()

        # Check status
        status = await pipeline_manager.get_pipeline_status()
        print(f"Pipeline status: {status['status']}")
        # --- end seed ---
        # fmt: on
        return pipeline_manager, result, status

    with contextlib.redirect_stdout(io.StringIO()) as out:
        manager, result, status = asyncio.run(example())
    return manager, result, status, out.getvalue().splitlines()


def test_basic_pipeline_execution_fills_the_hot_store(stack: Settings, basic_run) -> None:
    _, result, status, printed = basic_run
    assert printed == ["Pipeline status: idle"]
    assert result["stages"] == ["ingestion", "processing", "historical", "features"]
    assert result["records_ingested"] > 0 and result["records_stored"] > 0
    daily = count(stack, "SELECT count(*) FROM market.bars_daily WHERE symbol = ANY(%s)", UNIVERSE)
    minute = count(
        stack, "SELECT count(*) FROM market.bars_intraday WHERE symbol = ANY(%s) AND timeframe = '1min'", UNIVERSE
    )
    assert daily >= 2 * 15  # 30 calendar days: at least 15 sessions per symbol
    assert minute >= 2 * 210  # 5 calendar days: at least one completed (half) session per symbol, holidays included
    assert status["last_run"]["kind"] == "pipeline" and status["last_run"]["records_ingested"] > 0
    assert status["runs_completed"] == 1 and status["error"] is None


def test_basic_pipeline_run_is_recorded_once(stack: Settings, basic_run) -> None:
    _, _, status, _ = basic_run
    recorded = status["last_recorded_run"]
    assert recorded is not None and recorded["flow"] == "pipeline"
    assert count(stack, "SELECT count(*) FROM ops.pipeline_runs WHERE run_id = %s", recorded["run_id"]) == 1


def test_targeted_data_ingestion(stack: Settings, basic_run) -> None:
    pipeline_manager = basic_run[0]

    async def example():
        # fmt: off
        # --- seed ---
        # Ingest specific symbols and date range
        symbols = ['AAPL', 'GOOGL', 'MSFT']
        start_date = datetime.now() - timedelta(days=30)
        end_date = datetime.now()

        result = await pipeline_manager.run_ingestion(
            data_type='market_data',
            symbols=symbols,
            start_date=start_date,
            end_date=end_date,
            timeframe='1day'
        )
        # --- end seed ---
        # fmt: on
        return result

    result = asyncio.run(example())
    assert result["data_type"] == "market_data" and result["timeframe"] == "1day"
    assert {c["symbol"] for c in result["collected"]} | set(result["up_to_date"]) == {"AAPL", "GOOGL", "MSFT"}
    assert result["failed"] == []
    for symbol in ("AAPL", "GOOGL", "MSFT"):
        stored = count(
            stack,
            "SELECT count(*) FROM market.bars_daily WHERE symbol = %s AND ts >= now() - interval '30 days'",
            symbol,
        )
        assert stored >= 15, symbol


def test_real_time_streaming_setup(stack: Settings) -> None:
    """ "Real-Time Streaming Setup", verbatim: AAPL and GOOGL stream from the sandbox's Polygon
    WebSocket into the hot store; the trades stored equal the sandbox's REST trades of the same span."""
    import httpx
    import pandas as pd

    from marketpipe.api import DataFlowConfig, DataPipelineOrchestrator, PipelineMode
    from sources.factory import build_source
    from storage.trades import read_trades

    # The sandbox replays its last session from 10:00 at 120x (two market minutes per second).
    defaults = httpx.post(f"{stack.sandbox.base_url}/_sandbox/streams/defaults", json={"speed": 120, "from": "10:00"})
    assert defaults.status_code == 200, defaults.text
    orchestrator = DataPipelineOrchestrator(overrides=SMALL)

    async def example():
        # fmt: off
        # --- seed ---
        # Configure for real-time
        flow_config = DataFlowConfig(
            mode=PipelineMode.REAL_TIME,
            batch_size=100,
            interval_seconds=1.0
        )

        # Start streaming
        await orchestrator.start_real_time_flow(['AAPL', 'GOOGL'])
        # --- end seed ---
        # fmt: on
        assert flow_config.mode is PipelineMode.REAL_TIME
        stream = orchestrator.streams[-1]
        for _ in range(120):  # bounded: up to a minute for a few market minutes of both symbols
            if stream.report.get("trades", 0) > 200 and stream.report.get("final_bars", 0) >= 4:
                break
            await asyncio.sleep(0.5)
        return await orchestrator.stop_streams()

    try:
        (summary,) = asyncio.run(example())
    finally:
        httpx.delete(f"{stack.sandbox.base_url}/_sandbox/streams/defaults")
    assert summary["trades"] > 200 and summary["final_bars"] >= 4 and summary["dead"] == 0
    with database_connection(stack) as conn:
        span = conn.execute(
            "SELECT min(ts), max(ts) FROM market.trades WHERE symbol = 'AAPL' AND source = 'polygon'"
        ).fetchone()
        lo, hi = pd.Timestamp(span[0]), pd.Timestamp(span[1]) + pd.Timedelta(milliseconds=1)  # stream times are ms
        stored = read_trades(conn, ["AAPL"], lo, hi)

    async def rest():
        async with build_source("polygon", stack) as source:
            return await source.client.trades("AAPL", lo, hi)

    served = asyncio.run(rest())
    served["ts"] = served["ts"].dt.floor("ms")  # Polygon's stream stamps trades in ms, its REST API in ns
    key = ["ts", "exchange", "trade_id"]
    assert len(stored) > 100
    pd.testing.assert_frame_equal(
        stored.sort_values(key).reset_index(drop=True)[["ts", "price", "size", "exchange", "trade_id"]],
        served.sort_values(key).reset_index(drop=True)[["ts", "price", "size", "exchange", "trade_id"]],
    )


def test_selective_stage_execution(stack: Settings) -> None:
    from marketpipe.api import DataPipelineManager, DataPipelineOrchestrator

    symbol = "SEEDXC"
    pipeline_manager = DataPipelineManager(
        DataPipelineOrchestrator(
            overrides={
                "pipeline": {
                    "symbols": [symbol],
                    "bars": [{"timeframe": "1day", "lookback_days": 20}],
                    "corporate_actions": False,
                }
            }
        )
    )
    pending_sql = "SELECT count(*) FROM ops.raw_pages WHERE symbol = %s AND processed_at IS NULL"
    stored_sql = "SELECT count(*) FROM market.bars_daily WHERE symbol = %s"
    observed = {}

    async def example():
        await pipeline_manager.initialize()
        await pipeline_manager.start()
        # fmt: off
        # --- seed ---
        # Run only specific stages
        await pipeline_manager.run_pipeline(stages=['ingestion'])
        # --- end seed ---
        # fmt: on
        observed["after_ingestion"] = (count(stack, pending_sql, symbol), count(stack, stored_sql, symbol))
        # fmt: off
        # --- seed ---
        await pipeline_manager.run_pipeline(stages=['processing', 'historical'])
        # --- end seed ---
        # fmt: on

    asyncio.run(example())
    pending, stored = observed["after_ingestion"]
    assert pending > 0 and stored == 0  # collected into the raw zone only
    assert count(stack, pending_sql, symbol) == 0
    assert count(stack, stored_sql, symbol) >= 10  # 20 calendar days of sessions


def test_pipeline_metrics(stack: Settings, basic_run) -> None:
    pipeline_manager = basic_run[0]

    async def example():
        # fmt: off
        # --- seed ---
        # Get current metrics
        metrics = await pipeline_manager.get_pipeline_metrics()
        print(f"Records ingested: {metrics.ingestion_records}")
        print(f"Quality score: {metrics.quality_score:.2%}")
        print(f"Throughput: {metrics.throughput_records_per_second:.2f} rec/s")
        # --- end seed ---
        # fmt: on
        return metrics

    with contextlib.redirect_stdout(io.StringIO()) as out:
        metrics = asyncio.run(example())
    printed = out.getvalue().splitlines()
    assert metrics.runs >= 1
    assert metrics.ingestion_records >= basic_run[1]["records_ingested"] > 0
    assert 0.0 < metrics.quality_score <= 1.0 and not math.isnan(metrics.quality_score)
    assert metrics.throughput_records_per_second > 0
    assert metrics.storage_utilization["hot_store_bytes"] > 0
    assert metrics.storage_utilization["hypertable_bytes"]["market.bars_daily_store"] > 0
    assert metrics.storage_utilization["lake_bytes"] > 0  # the raw zone holds every vendor page
    assert printed[0] == f"Records ingested: {metrics.ingestion_records}"
    assert printed[1].startswith("Quality score: ") and printed[1].endswith("%")
    assert printed[2].endswith(" rec/s")


def test_health_monitoring(stack: Settings, basic_run) -> None:
    pipeline_manager = basic_run[0]

    async def example():
        # fmt: off
        # --- seed ---
        # Trigger health check
        health = await pipeline_manager.trigger_health_check()
        if not health['healthy']:
            print(f"Issues detected: {health['issues']}")
        # --- end seed ---
        # fmt: on
        return health

    with contextlib.redirect_stdout(io.StringIO()) as out:
        health = asyncio.run(example())
    printed = out.getvalue().splitlines()
    assert health["healthy"] is (not health["issues"])
    assert printed == ([] if health["healthy"] else [f"Issues detected: {health['issues']}"])
    assert {"postgres", "lake", "prefect", "sandbox"} <= set(health["components"])
    assert all(c["healthy"] for c in health["components"].values())
    daily = next(
        f for f in health["freshness"] if (f["source"], f["dataset"], f["timeframe"]) == ("polygon", "bars", "1day")
    )
    assert not set(UNIVERSE) & set(daily["stale_symbols"])  # just collected: fresh
    assert health["sources"]["polygon"]["state"] in ("unknown", "closed")
    assert health["dead_letters"]["open"] >= 0
