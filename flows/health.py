"""The health check as a Prefect flow (deployment ``health/health-check``, every 5 minutes).

It runs :func:`pipeline.health.check_health` on what the worker's probes find (it manages no
process: :func:`pipeline.components.probe_components`), turns what it finds into alerts
(:mod:`pipeline.alerts`: low quality, stale data, growing dead letters, a failed TimescaleDB
background job, a degraded stream, an open circuit breaker, a lagging read replica) and emits each as a
Prefect event; the automations ``marketpipe deploy`` creates react to those events. The run itself
completes whether or not the pipeline is healthy: an unhealthy pipeline is news, not a failure of
the check. Its markdown artifact ``health-report`` lists the issues.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from core.settings import load_settings
from pipeline.alerts import (
    breaker_alerts,
    dead_letter_alerts,
    freshness_from_dict,
    job_alerts,
    replica_alerts,
    stale_alerts,
    stream_alerts,
)
from pipeline.health import DeadLetterCounts
from pipeline.jobs import JobsReport
from tasks.health import check_health_task, quality_alerts_task, report_markdown
from tasks.resources import RunResources


@flow(name="health", flow_run_name="health-check")
def health_flow(
    allowed_missed_sessions: dict[str, int] | None = None,
    quality_window_minutes: int = 5,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the pipeline and emit an event per alert. ``allowed_missed_sessions`` maps a timeframe
    to the closed sessions a series may miss before it is stale (default: the health module's);
    quality is judged on top-level runs finished in the last ``quality_window_minutes`` (the
    schedule's interval, so each run is judged once)."""
    with RunResources.from_settings(load_settings(overrides=overrides)) as resources:
        since = datetime.now(UTC) - timedelta(minutes=quality_window_minutes)
        report = check_health_task(resources, allowed_missed_sessions)
        counts = [DeadLetterCounts(**c) for c in report["dead_letters"]["by_source"].values()]
        freshness = [freshness_from_dict(f) for f in report["freshness"] or []]
        jobs = JobsReport.from_dict(report["jobs"]) if report["jobs"] else None
        alerts = [
            *quality_alerts_task(resources, since),
            *stale_alerts(freshness),
            *dead_letter_alerts(counts),
            *job_alerts(jobs),
            *stream_alerts(report.get("streams") or [], datetime.fromisoformat(report["checked_at"])),
            *breaker_alerts(report["sources"]),
            *replica_alerts(report.get("replication"), report["issues"]),
        ]
        logger = get_run_logger()
        for alert in alerts:
            emit_event(event=alert.event, resource=alert.resource(), payload=alert.payload())
            logger.warning("%s: %s", alert.event, alert.message)
        if not alerts and report["healthy"]:
            logger.info("healthy")
        create_markdown_artifact(
            report_markdown(report, alerts), key="health-report", description="marketpipe health check"
        )
        emitted = [{"event": a.event, "resource_id": a.resource_id, "message": a.message} for a in alerts]
        return {
            "healthy": report["healthy"] and not alerts,
            "issues": report["issues"],
            "warnings": report["warnings"],
            "alerts": emitted,
        }
