"""News and posts of the universe, every 5 minutes in session hours (the ``news/news-ingest``
deployment): the ``ingest`` flow with ``data_type="news"`` for each news vendor, then
``data_type="social"`` for Reddit.

Each run asks the last ``lookback_hours`` up to now; an incremental ingest resumes an hour before
each symbol's newest stored item (pipeline.plan.TEXT_OVERLAP), so a run every 5 minutes fetches
little and late items are not missed; the upserts keep a refetch exact. On a day NYSE is closed the
run ends at once as a Completed state named "Skipped" that says why.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from core.calendar import closed_reason, new_york_date
from core.settings import load_settings
from flows.ingestion import ingest_flow

SKIPPED = "Skipped"


@flow(name="news", flow_run_name="news-ingest")
async def news_flow(
    symbols: list[str] | None = None,
    sources: list[str] | None = None,
    social: bool = True,
    lookback_hours: int = 24,
    day: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any] | State:
    """Ingest the news of ``symbols`` (default: the settings' ``pipeline.symbols``) from each of
    ``sources`` (default polygon and alpaca), and Reddit's posts when ``social``, unless NYSE is
    closed on ``day`` (ISO date; default: today in New York)."""
    now = datetime.now(UTC)
    today = date.fromisoformat(day) if day else new_york_date(now)
    reason = closed_reason(today)
    if reason is not None:
        message = f"market closed: {reason}; no news run"
        get_run_logger().info("skipping the news run: %s", message)
        return Completed(name=SKIPPED, message=message, data={"skipped": True, "reason": reason})
    universe = symbols or list(load_settings(overrides=overrides).pipeline.symbols)
    start = (now - timedelta(hours=lookback_hours)).isoformat()
    runs: dict[str, Any] = {}
    for source in sources or ["polygon", "alpaca"]:
        runs[source] = await ingest_flow(
            symbols=universe, start_date=start, end_date=now.isoformat(), data_type="news", source=source,
            overrides=overrides,
        )  # fmt: skip
    if social:
        runs["reddit"] = await ingest_flow(
            symbols=universe, start_date=start, end_date=now.isoformat(), data_type="social", source="reddit",
            overrides=overrides,
        )  # fmt: skip
    return runs
