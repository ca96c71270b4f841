"""The daily flow the deployments run and the seed's facade, for fundamentals and earnings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, timedelta

import psycopg
import pytest

from core.errors import RequestError
from core.settings import Settings
from flows.fundamentals import fundamentals_flow
from marketpipe.api import DataPipelineManager, DataPipelineOrchestrator
from tests.support.fundamentals import wipe


@pytest.fixture
def clean(conn: psycopg.Connection) -> Iterator[None]:
    wipe(conn)
    yield
    wipe(conn)


def test_the_daily_flow_ingests_the_calendar_ahead_and_the_filings_behind(
    stack: Settings, conn: psycopg.Connection, clean: None
) -> None:
    earnings = asyncio.run(fundamentals_flow(data_type="earnings", symbols=["FNDD"], lookback_days=400))
    assert earnings["data_type"] == "earnings" and not earnings["failed"]
    latest = conn.execute("SELECT max(report_date) FROM market.earnings WHERE symbol = 'FNDD'").fetchone()[0]
    assert latest > date.today(), "the calendar reaches past today"
    filings = asyncio.run(fundamentals_flow(data_type="fundamentals", symbols=["FNDD"], lookback_days=400))
    assert filings["data_type"] == "fundamentals" and not filings["failed"]
    oldest = conn.execute("SELECT min(filing_date) FROM market.financial_statements WHERE symbol = 'FNDD'").fetchone()
    assert oldest[0] >= date.today() - timedelta(days=400)


def test_run_ingestion_takes_fundamentals_and_refuses_a_vendor_without_them(
    stack: Settings, conn: psycopg.Connection, clean: None
) -> None:
    manager = DataPipelineManager(DataPipelineOrchestrator(stack))
    summary = asyncio.run(
        manager.run_ingestion(
            data_type="fundamentals", symbols=["FNDE"], start_date="2023-01-01", end_date="2023-12-31"
        )
    )
    stored = conn.execute("SELECT count(*) FROM market.financial_statements WHERE symbol = 'FNDE'").fetchone()[0]
    assert stored > 0 and sum(p["inserted"] for p in summary["processed"]) == stored
    with pytest.raises(RequestError, match="source 'yahoo' serves no earnings"):
        asyncio.run(
            manager.run_ingestion(
                data_type="earnings", symbols=["FNDE"], start_date="2023-01-01", end_date="2023-12-31", source="yahoo"
            )
        )
