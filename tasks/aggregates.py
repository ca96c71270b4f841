"""Continuous aggregates after a write: bars written older than the refresh policies' window (a
backfill, a gap repair, a vendor's correction) are materialized at once, so 5min..1day reads of
those sessions come from the stored minutes (storage/aggregates.py) without waiting or a vendor
fetch. Newer writes are left to the policies and to real-time aggregation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from core.model import to_utc
from storage.aggregates import POLICY_WINDOW, refresh_bar_aggregates
from storage.tiering import cutoff
from tasks.resources import RunResources


def needs_refresh(start: str, now: datetime) -> bool:
    """Pure: whether minutes from ``start`` on reach below what the refresh policies cover."""
    return to_utc(start) < to_utc(now) - POLICY_WINDOW


def refresh_below_policies(resources: RunResources, start: str, end: str) -> tuple[datetime, datetime] | None:
    """Refresh every aggregate level over ``[start, end]`` (clipped to the hot window) when it
    reaches below the policies' window; the window refreshed, or None."""
    now = datetime.now(UTC)
    if not needs_refresh(start, now):
        return None
    hot_since = cutoff(now, resources.settings.storage.routing.hot_days("bars_intraday"))
    with resources.connect(autocommit=True) as conn:
        # ``end`` is the last minute written: the window runs to the end of that minute
        return refresh_bar_aggregates(conn, start, to_utc(end) + pd.Timedelta(minutes=1), hot_since)


@task(name="refresh-aggregates", cache_policy=NONE)
async def refresh_aggregates_task(resources: RunResources, start: str, end: str) -> dict[str, Any] | None:
    """:func:`refresh_below_policies` in a thread; returns the window refreshed, or None. Async so
    it runs on the flow's own API client: a sync task called from an async flow builds a Prefect
    client of its own (an SSL context, ~20 ms of CPU) for every task run."""
    window = await asyncio.to_thread(refresh_below_policies, resources, start, end)
    if window is None:
        return None
    get_run_logger().info("refreshed the bar aggregates over [%s, %s)", window[0], window[1])
    return {"from": window[0].isoformat(), "to": window[1].isoformat()}
