"""The seed's facade, run metrics and the health check against the embedded stack: lifecycle and
status, refusals before any flow run, one metrics row per run, staleness and dead-letter growth."""

from __future__ import annotations

import asyncio
import math
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import RequestError, ServiceError
from core.settings import Settings
from db.connect import database_connection
from marketpipe.api import (
    DataFlowConfig,
    DataPipelineManager,
    DataPipelineOrchestrator,
    PipelineMode,
)
from pipeline.health import check_health
from pipeline.metrics import aggregate_metrics, read_recent_runs, record_run, run_metrics
from sources.dead_letters import record_dead_letter_sync
from stack.supervisor import Stack


def pipeline_runs(settings: Settings) -> int:
    with database_connection(settings) as conn:
        return int(conn.execute("SELECT count(*) FROM ops.pipeline_runs").fetchone()[0])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_initialize_names_what_is_down_and_marketpipe_up(stack: Settings) -> None:
    manager = DataPipelineManager(overrides={"database": {"port": closed_port()}})
    with pytest.raises(ServiceError) as caught:
        asyncio.run(manager.initialize())
    message = str(caught.value)
    assert message.startswith("the pipeline cannot start: the database (postgres at 127.0.0.1:")
    assert "marketpipe up" in message and "the lake" not in message and "Prefect" not in message  # only it
    status = asyncio.run(manager.get_pipeline_status())
    assert status["status"] == "error" and status["error"] == message and status["last_recorded_run"] is None


def test_status_goes_stopped_idle_running_idle_stopped(stack: Settings) -> None:
    manager = DataPipelineManager(DataPipelineOrchestrator(stack))
    seen = []

    async def lifecycle():
        seen.append((await manager.get_pipeline_status())["status"])
        await manager.start()  # initializes first
        seen.append((await manager.get_pipeline_status())["status"])
        run = asyncio.create_task(
            manager.run_ingestion(
                data_type="market_data",
                symbols=["APIST"],
                start_date="2024-03-04",
                end_date="2024-03-08T23:59:59",
                timeframe="1day",
            )
        )
        await asyncio.sleep(0)  # the run has registered itself
        seen.append((await manager.get_pipeline_status())["status"])
        summary = await run
        seen.append((await manager.get_pipeline_status())["status"])
        await manager.stop()
        seen.append((await manager.get_pipeline_status())["status"])
        return summary, await manager.get_pipeline_status()

    summary, status = asyncio.run(lifecycle())
    assert seen == ["stopped", "idle", "running", "idle", "stopped"]
    assert status["last_run"]["kind"] == "ingestion" and status["last_run"]["records_ingested"] == 5
    assert summary["collected"][0]["records"] == 5  # five sessions, 2024-03-04 .. 03-08


def test_bad_requests_are_refused_before_any_flow_run(stack: Settings) -> None:
    manager = DataPipelineManager(DataPipelineOrchestrator(stack))
    before = pipeline_runs(stack)
    with pytest.raises(RequestError, match="start_date"):
        asyncio.run(manager.run_ingestion(symbols=["AAPL"], start_date="2024-03-08", end_date="2024-03-01"))
    with pytest.raises(RequestError, match="not a valid ticker"):
        asyncio.run(
            manager.run_ingestion(symbols=["AAPL'; DROP TABLE x"], start_date="2024-03-01", end_date="2024-03-08")
        )
    with pytest.raises(RequestError, match="unknown stage"):
        asyncio.run(manager.run_pipeline(stages=["bogus"]))
    with pytest.raises(RequestError, match="unknown stage"):
        asyncio.run(manager.run_pipeline(stages=["bogus"], mode=PipelineMode.HYBRID))
    assert pipeline_runs(stack) == before
    status = asyncio.run(manager.get_pipeline_status())
    assert status["runs_failed"] == 0 and status["status"] == "stopped"  # a refusal is not a pipeline error


def test_a_stream_with_bad_input_is_refused_before_any_flow_run(stack: Settings) -> None:
    orchestrator = DataPipelineOrchestrator(stack, flow_config=DataFlowConfig(mode=PipelineMode.REAL_TIME))
    before = pipeline_runs(stack)
    with pytest.raises(RequestError, match="no symbols to stream"):
        asyncio.run(orchestrator.start_real_time_flow([]))
    with pytest.raises(RequestError, match="unknown stream source 'yahoo'; streams exist for polygon, alpaca"):
        asyncio.run(orchestrator.start_real_time_flow(["AAPL"], source="yahoo"))
    assert pipeline_runs(stack) == before


def test_flow_config_is_checked() -> None:
    assert DataFlowConfig(mode="hybrid").mode is PipelineMode.HYBRID
    with pytest.raises(RequestError, match="batch_size"):
        DataFlowConfig(batch_size=0)
    with pytest.raises(RequestError, match="unknown pipeline mode 'sideways'"):
        DataFlowConfig(mode="sideways")


def test_a_run_through_the_facade_is_recorded_once_with_its_figures(stack: Settings) -> None:
    manager = DataPipelineManager(DataPipelineOrchestrator(stack))
    summary = asyncio.run(
        manager.run_ingestion(
            symbols=["APIREC"], start_date="2024-03-04", end_date="2024-03-08T23:59:59", timeframe="1day"
        )
    )
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT flow, status, records_ingested, records_stored, quality_score FROM ops.pipeline_runs "
            "WHERE run_id = %s",
            (summary["run_id"],),
        ).fetchall()
    assert rows == [("ingest", "completed", 5, 5, summary["quality_score"])]


def test_record_run_is_an_upsert_on_run_id(stack: Settings) -> None:
    summary = {"run_id": f"test-{uuid.uuid4()}", "collected": [{"symbol": "X", "records": 10}], "seconds": 2.0}
    with database_connection(stack) as conn:
        assert record_run(conn, run_metrics(summary, "ingest"))
        assert not record_run(conn, run_metrics({**summary, "seconds": 1.0}, "ingest"), replace=False)
        [kept] = [r for r in read_recent_runs(conn, 50) if r.run_id == summary["run_id"]]
        assert kept.throughput_records_per_second == 5.0  # the first record stays
        record_run(conn, run_metrics({**summary, "seconds": 1.0}, "ingest"))
        [replaced] = [r for r in read_recent_runs(conn, 50) if r.run_id == summary["run_id"]]
        assert replaced.throughput_records_per_second == 10.0
        count = conn.execute("SELECT count(*) FROM ops.pipeline_runs WHERE run_id = %s", (summary["run_id"],))
        assert count.fetchone()[0] == 1


def test_aggregates_count_top_level_runs_only(stack: Settings) -> None:
    since = datetime.now(UTC) + timedelta(days=365)  # a window no other test writes into
    finished = since + timedelta(minutes=1)
    parent = {
        "run_id": f"p-{uuid.uuid4()}",
        "records_ingested": 100,
        "records_stored": 90,
        "rejected": 10,
        "quality_score": 0.9,
        "seconds": 4.0,
    }
    child = {"run_id": f"c-{uuid.uuid4()}", "collected": [{"symbol": "X", "records": 100}], "seconds": 3.0}
    with database_connection(stack) as conn:
        record_run(conn, run_metrics(parent, "pipeline", finished_at=finished))
        record_run(conn, run_metrics(child, "ingest", finished_at=finished, parent_run_id=parent["run_id"]))
        metrics = aggregate_metrics(conn, since, lake_bytes=1234)
        conn.execute("DELETE FROM ops.pipeline_runs WHERE run_id = ANY(%s)", ([parent["run_id"], child["run_id"]],))
        conn.commit()
    assert (metrics.runs, metrics.ingestion_records, metrics.records_stored, metrics.rejected) == (1, 100, 90, 10)
    assert metrics.quality_score == pytest.approx(0.9)
    assert metrics.throughput_records_per_second == pytest.approx(25.0)
    assert metrics.storage_utilization["lake_bytes"] == 1234


def test_metrics_of_an_empty_window_are_zero_and_nan(stack: Settings) -> None:
    manager = DataPipelineManager(DataPipelineOrchestrator(stack))
    metrics = asyncio.run(manager.get_pipeline_metrics(since=datetime.now(UTC) + timedelta(days=3650)))
    assert (metrics.runs, metrics.ingestion_records, metrics.throughput_records_per_second) == (0, 0, 0.0)
    assert math.isnan(metrics.quality_score) and f"{metrics.quality_score:.2%}" == "nan%"
    assert metrics.storage_utilization["hot_store_bytes"] > 0


def test_health_reports_a_stale_series_and_growing_dead_letters(stack: Settings) -> None:
    manager = DataPipelineManager(DataPipelineOrchestrator(stack))
    asyncio.run(
        manager.run_ingestion(
            symbols=["APISTL"], start_date="2024-03-04", end_date="2024-03-08T23:59:59", timeframe="1day"
        )
    )
    source = f"healthsrc{uuid.uuid4().hex[:6]}"
    with database_connection(stack) as conn:
        record_dead_letter_sync(conn, source=source, dataset="bars", request={"url": "/v2/x"}, error="HTTP 500")
        conn.commit()
    health = check_health(stack, status=Stack(stack).status())
    assert health["healthy"] is False
    daily = next(f for f in health["freshness"] if (f["source"], f["timeframe"]) == ("polygon", "1day"))
    assert "APISTL" in daily["stale_symbols"] and daily["missed_sessions"] > 100
    assert any(i.startswith(f"dead letters of {source} are growing: 1 request(s)") for i in health["issues"])
    assert health["dead_letters"]["by_source"][source] == {
        "source": source,
        "open": 1,
        "last_hour": 1,
        "previous_hour": 0,
    }
    assert all(c["healthy"] for c in health["components"].values())
    assert health["timescaledb"]["edition"]


def test_health_of_a_stopped_database_says_so_without_reading_tables(stack: Settings) -> None:
    settings = stack.model_copy(update={"database": stack.database.model_copy(update={"port": closed_port()})})
    health = check_health(settings, status=Stack(settings).status())
    assert health["healthy"] is False and health["freshness"] is None
    assert health["components"]["postgres"]["healthy"] is False
    assert health["issues"][0].startswith("the database (postgres at 127.0.0.1:")
