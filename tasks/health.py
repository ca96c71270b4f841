"""The health check's tasks: the check itself on what the worker's probes find, the quality
alerts of recent runs, and the report's markdown."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from pipeline.alerts import Alert, quality_alerts
from pipeline.components import probe_components
from pipeline.health import check_health, format_health
from pipeline.metrics import read_recent_runs
from tasks.resources import RunResources

RECENT_RUNS = 500  # more top-level runs than finish within any sensible quality window


@task(name="check-health", cache_policy=NONE)
def check_health_task(resources: RunResources, allowed_missed_sessions: dict[str, int] | None) -> dict[str, Any]:
    settings = resources.settings
    return check_health(settings, status=probe_components(settings), thresholds=allowed_missed_sessions)


@task(name="recent-quality", cache_policy=NONE)
def quality_alerts_task(resources: RunResources, since: datetime) -> list[Alert]:
    with resources.connect() as conn:
        runs = read_recent_runs(conn, RECENT_RUNS, top_level_only=True)
    return quality_alerts([r for r in runs if r.finished_at >= since], resources.settings.quality.min_quality_score)


def report_markdown(report: dict[str, Any], alerts: list[Alert]) -> str:
    head = "**healthy**" if report["healthy"] and not alerts else "**UNHEALTHY**"
    lines = [f"# marketpipe health at {report['checked_at']}", "", head, ""]
    lines += [f"- {issue}" for issue in report["issues"]]
    lines += [f"- {a.message}" for a in alerts if a.message not in report["issues"]]
    lines += [f"- warning: {w}" for w in report["warnings"]]
    if alerts:
        lines += ["", "Events emitted:", ""] + [f"- `{a.event}` about `{a.resource_id}`" for a in alerts]
    lines += ["", "What was checked:", "", "```", *format_health(report), "```"]
    return "\n".join(lines)
