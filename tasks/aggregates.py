"""Continuous aggregates after a write: bars written older than the refresh policies' window (a
backfill, a gap repair, a vendor's correction) are materialized at once, so 5min..1day reads of
those sessions come from the stored minutes (storage/aggregates.py) without waiting or a vendor
fetch. Newer writes are left to the policies and to real-time aggregation. The ranges come from
``ops.aggregate_refreshes``, where the processing transaction recorded them with the bars: every
run's refresh also does what a run killed between its commit and its refresh left."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from core.model import to_utc
from storage.aggregates import (
    POLICY_WINDOW,
    forget_refreshes,
    merged_ranges,
    recorded_refreshes,
    refresh_bar_aggregates,
)
from storage.tiering import cutoff
from tasks.resources import RunResources


def needs_refresh(start: object, now: datetime) -> bool:
    """Pure: whether minutes from ``start`` on reach below what the refresh policies cover."""
    return to_utc(start) < to_utc(now) - POLICY_WINDOW


def refresh_recorded(resources: RunResources) -> list[tuple[datetime, datetime]]:
    """Refresh every aggregate level over the ranges recorded in ``ops.aggregate_refreshes`` (by
    this run's processing or by a run killed before its refresh; merged, clipped to the hot
    window) that reach below the policies' window, then forget the ranges read; the windows
    refreshed. A refresh that fails forgets nothing: the next run tries again."""
    now = datetime.now(UTC)
    hot_since = cutoff(now, resources.settings.storage.routing.hot_days("bars_intraday"))
    with resources.connect(autocommit=True) as conn:  # TimescaleDB refreshes outside a transaction
        recorded = recorded_refreshes(conn)
        windows = []
        for first, last in merged_ranges([(first, last) for _, first, last in recorded]):
            if not needs_refresh(first, now):
                continue  # the policies' (and real-time aggregation's) until then
            # ``last`` is the last minute written: the window runs to the end of that minute
            window = refresh_bar_aggregates(conn, first, to_utc(last) + pd.Timedelta(minutes=1), hot_since)
            if window is not None:
                windows.append(window)
        forget_refreshes(conn, [row_id for row_id, _, _ in recorded])
    return windows


@task(name="refresh-aggregates", cache_policy=NONE)
async def refresh_aggregates_task(resources: RunResources) -> list[dict[str, Any]]:
    """:func:`refresh_recorded` in a thread; returns the windows refreshed. Async so it runs on the
    flow's own API client: a sync task called from an async flow builds a Prefect client of its
    own (an SSL context, ~20 ms of CPU) for every task run."""
    windows = await asyncio.to_thread(refresh_recorded, resources)
    for first, end in windows:
        get_run_logger().info("refreshed the bar aggregates over [%s, %s)", first, end)
    return [{"from": first.isoformat(), "to": end.isoformat()} for first, end in windows]
