"""Flow-run names say what a run fetched, so the Prefect UI's run list reads on its own."""

from __future__ import annotations

from flows.ingestion import ingest_run_name


def test_bar_runs_are_named_by_timeframe_and_last_day() -> None:
    assert ingest_run_name("polygon", "market_data", "1min", "2026-11-20") == "ingest-polygon-1min-2026-11-20"


def test_other_data_types_are_named_by_data_type() -> None:
    name = ingest_run_name("polygon", "corporate_actions", "1day", "2026-11-20T00:00:00")
    assert name == "ingest-polygon-corporate-actions-2026-11-20"


def test_a_run_without_an_end_is_named_latest() -> None:
    assert ingest_run_name("alpaca", "market_data", "1day", None) == "ingest-alpaca-1day-latest"
