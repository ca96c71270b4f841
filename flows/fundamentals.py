"""Filings and the earnings calendar of the universe, daily (the ``fundamentals/fundamentals-daily``
and ``fundamentals/earnings-daily`` deployments): the ``ingest`` flow with ``data_type``
``fundamentals`` or ``earnings`` over a window ending today.

Filings resume after each symbol's newest filing date (a restatement is a new filing, so it is
found); the window only bounds a first run. The earnings calendar is asked again over its whole
window every run, up to ``ahead_days`` ahead: a report changes after it is first seen (projected,
then confirmed with its actuals), and each change is stored as a new version.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow

from core.calendar import new_york_date
from core.errors import RequestError
from core.settings import load_settings
from flows.ingestion import ingest_flow

KINDS = ("fundamentals", "earnings")


@flow(name="fundamentals", flow_run_name="{data_type}-daily")
async def fundamentals_flow(
    data_type: str = "fundamentals",
    lookback_days: int = 730,
    ahead_days: int = 120,
    symbols: list[str] | None = None,
    source: str = "polygon",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ingest ``data_type`` for ``symbols`` (default: the settings' ``pipeline.symbols``) from
    ``lookback_days`` ago to today (earnings: to ``ahead_days`` after today)."""
    if data_type not in KINDS:
        raise RequestError(f"data_type {data_type!r}: this flow ingests {' or '.join(KINDS)}")
    today = new_york_date(datetime.now(UTC))
    end = today + timedelta(days=ahead_days) if data_type == "earnings" else today
    return await ingest_flow(
        symbols=symbols or list(load_settings(overrides=overrides).pipeline.symbols),
        start_date=(today - timedelta(days=lookback_days)).isoformat(),
        end_date=f"{end.isoformat()}T23:59:59",
        data_type=data_type,
        source=source,
        overrides=overrides,
    )
