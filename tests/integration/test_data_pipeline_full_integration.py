"""The seed's integration test command:
``pytest tests/integration/test_data_pipeline_full_integration.py -m integration``.

The whole batch pipeline on the embedded stack, fed by the Polygon adapter from the market sandbox:
all three stages, corporate actions and adjusted reads, the run recorded in the metrics, and an
incremental second run that stores nothing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from prefect import get_client

from core.calendar import nyse_sessions
from core.settings import Settings
from db.connect import database_connection
from flows.pipeline_flow import pipeline_flow
from storage.hot import read_bars

UNIVERSE = ["FIA", "FIB", "FIC"]
SERIES = [{"timeframe": "1day", "lookback_days": 120}, {"timeframe": "1min", "lookback_days": 5}]
OVERRIDES = {"pipeline": {"symbols": UNIVERSE, "corporate_actions": True, "bars": SERIES}}


def completed_sessions(start, end) -> int:
    schedule = nyse_sessions(start, end)
    now_ns = int(datetime.now(UTC).timestamp() * 1e9)
    return int((schedule.close_ns <= now_ns).sum())


def test_full_pipeline_then_an_incremental_rerun(stack: Settings) -> None:
    today = datetime.now(UTC).date()
    first = asyncio.run(pipeline_flow(overrides=OVERRIDES))
    assert first["stages"] == ["ingestion", "processing", "historical", "features"]
    assert first["rejected"] == 0 and first["quality_score"] == pytest.approx(1.0)

    daily_expected = completed_sessions(today - timedelta(days=120), today)
    with database_connection(stack) as conn:
        per_symbol = dict(
            conn.execute(
                "SELECT symbol, count(*) FROM market.bars WHERE symbol = ANY(%s) AND timeframe = '1day' GROUP BY 1",
                (UNIVERSE,),
            ).fetchall()
        )
        minute = conn.execute(
            "SELECT count(*) FROM market.bars WHERE symbol = ANY(%s) AND timeframe = '1min'", (UNIVERSE,)
        ).fetchone()[0]
        feature_rows = conn.execute(
            "SELECT count(*) FROM features.bar_features WHERE symbol = ANY(%s) AND timeframe = '1day'", (UNIVERSE,)
        ).fetchone()[0]
        runs = conn.execute(
            "SELECT records_ingested, records_stored FROM ops.pipeline_runs WHERE run_id = %s", (first["run_id"],)
        ).fetchone()
    # today's session, if still trading, may be partly there: at least every completed session
    assert all(n >= daily_expected for n in per_symbol.values()) and set(per_symbol) == set(UNIVERSE)
    assert minute >= 390 * completed_sessions(today - timedelta(days=5), today) * len(UNIVERSE)
    assert runs == (first["records_ingested"], first["records_stored"])
    assert feature_rows == sum(per_symbol.values())  # one feature row per stored daily bar

    # whole days around the window, so the read does not depend on the time of day
    since = datetime.combine(today - timedelta(days=121), datetime.min.time(), UTC)
    until = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    with database_connection(stack) as conn:
        raw = read_bars(conn, UNIVERSE[:1], since, until, "1day")
        adjusted = read_bars(conn, UNIVERSE[:1], since, until, "1day", adjustment="all")
    assert len(raw) == len(adjusted) == per_symbol[UNIVERSE[0]]
    assert (adjusted["close"] <= raw["close"] + 1e-9).all()  # backward adjustment never raises a past price

    # every stage's sub-flow run is tagged with its source and dataset (UI filters, automations)
    with get_client(sync_client=True) as client:
        ingest_tags = [set(client.read_flow_run(UUID(run["run_id"])).tags) for run in first["ingestion"]]
    assert all({"source:polygon"} <= t for t in ingest_tags)
    assert {"dataset:market_data", "timeframe:1day"} in [t - {"source:polygon"} for t in ingest_tags]
    assert {"dataset:market_data", "timeframe:1min"} in [t - {"source:polygon"} for t in ingest_tags]
    assert any("dataset:corporate_actions" in t for t in ingest_tags)

    second = asyncio.run(pipeline_flow(overrides=OVERRIDES))
    assert second["records_stored"] == 0
    # at most the session still trading is fetched again
    refetched = [sum(c["records"] for c in run["collected"]) for run in second["ingestion"]]
    assert all(n <= 390 * len(UNIVERSE) for n in refetched)
