"""Health findings as alerts: the Prefect events the health flow emits and automations react to.

These conditions raise an alert, each its own event name so an automation can pick one:

* ``marketpipe.health.quality-low``: a top-level pipeline run scored below ``quality.min_quality_score``;
* ``marketpipe.health.data-stale``: a dataset's symbols miss more closed NYSE sessions than allowed;
* ``marketpipe.health.dead-letters-growing``: a source dead-lettered requests in the last hour;
* ``marketpipe.health.job-failed``: a TimescaleDB background job's last run failed (``pipeline.jobs``);
* ``marketpipe.health.stream-degraded``: a live stream lost frames or stopped reporting;
* ``marketpipe.health.breaker-open``: a source's circuit breaker is open, in whichever process
  opened it (``ops.circuit_breakers``);
* ``marketpipe.health.replica-lagging``: the read replica lags more than
  ``database.read_replica.max_lag_seconds`` behind the primary.

The resource of an alert is what it is about (a dataset, a source, a run), so an automation can
react once per resource (``for_each``) and the Prefect UI's event feed groups them. Everything here
is pure: the health flow gathers the inputs and emits what these functions return.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the event names are imported by `marketpipe deploy`, which needs no pandas
    from pipeline.health import DatasetFreshness, DeadLetterCounts
    from pipeline.jobs import JobsReport
    from pipeline.metrics import RunMetrics

QUALITY_LOW = "marketpipe.health.quality-low"
DATA_STALE = "marketpipe.health.data-stale"
DEAD_LETTERS_GROWING = "marketpipe.health.dead-letters-growing"
JOB_FAILED = "marketpipe.health.job-failed"
STREAM_DEGRADED = "marketpipe.health.stream-degraded"
BREAKER_OPEN = "marketpipe.health.breaker-open"
REPLICA_LAGGING = "marketpipe.health.replica-lagging"
ALERT_EVENTS = (
    QUALITY_LOW,
    DATA_STALE,
    DEAD_LETTERS_GROWING,
    JOB_FAILED,
    STREAM_DEGRADED,
    BREAKER_OPEN,
    REPLICA_LAGGING,
)
# Emitted by the stream flow itself (flows/streaming_flow.py): every few seconds while it runs, once
# when it ends. The "stream stalled" automation fires when a heartbeat is followed by neither.
STREAM_HEARTBEAT = "marketpipe.stream.heartbeat"
STREAM_STOPPED = "marketpipe.stream.stopped"
RESOURCE_PREFIX = "marketpipe."


@dataclass(frozen=True)
class Alert:
    """One Prefect event to emit: ``event`` about ``resource_id``, with a human ``message``."""

    event: str
    resource_id: str
    resource_name: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def resource(self) -> dict[str, str]:
        return {
            "prefect.resource.id": self.resource_id,
            "prefect.resource.name": self.resource_name,
            "marketpipe.alert": self.event.rsplit(".", 1)[-1],
        }

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, **self.details}


def stale_alerts(freshness: Iterable[DatasetFreshness]) -> list[Alert]:
    """One alert per stale (source, dataset, timeframe)."""
    alerts = []
    for f in freshness:
        if not f.stale:
            continue
        label = " ".join(p for p in (f.source, f.dataset, f.timeframe) if p)
        alerts.append(
            Alert(
                event=DATA_STALE,
                resource_id=f"marketpipe.dataset.{f.source}.{f.dataset}.{f.timeframe or 'none'}",
                resource_name=label,
                message=f.issue(),
                details={
                    "stale_symbols": list(f.stale_symbols)[:50],
                    "missed_sessions": f.missed_sessions,
                    "allowed_missed_sessions": f.allowed_missed_sessions,
                    "oldest_symbol": f.oldest_symbol,
                    "oldest_ts": f.oldest_ts.isoformat(),
                },
            )
        )
    return alerts


def dead_letter_alerts(counts: Iterable[DeadLetterCounts]) -> list[Alert]:
    """One alert per source that dead-lettered requests in the last hour."""
    return [
        Alert(
            event=DEAD_LETTERS_GROWING,
            resource_id=f"marketpipe.source.{c.source}",
            resource_name=c.source,
            message=(
                f"dead letters of {c.source} are growing: {c.last_hour} in the last hour ({c.previous_hour} "
                f"in the hour before, {c.open} open); `marketpipe dlq list --source {c.source}`, then "
                "`marketpipe dlq replay` once the cause is fixed"
            ),
            details={"open": c.open, "last_hour": c.last_hour, "previous_hour": c.previous_hour},
        )
        for c in counts
        if c.last_hour > 0
    ]


def quality_alerts(runs: Sequence[RunMetrics], minimum: float) -> list[Alert]:
    """One alert per top-level run whose quality score is below ``minimum`` (runs without a score,
    and sub-flow runs, whose data their parent's score already covers, never alert)."""
    alerts = []
    for run in runs:
        score = run.quality_score
        if run.parent_run_id or score is None or math.isnan(score) or score >= minimum:
            continue
        reasons = [str(r) for r in run.details.get("quality_reasons") or []][:5]
        alerts.append(
            Alert(
                event=QUALITY_LOW,
                resource_id=f"marketpipe.run.{run.run_id}",
                resource_name=f"{run.flow} {run.finished_at:%Y-%m-%d %H:%M} UTC",
                message=(
                    f"data quality of {run.flow} run {run.run_id} is {score:.3f}, below the threshold "
                    f"{minimum}"
                    + (f": {reasons[0]}" if reasons else "")
                    + "; see its quality report artifact in the Prefect UI and `marketpipe dlq list`"
                ),
                details={
                    "quality_score": score,
                    "threshold": minimum,
                    "flow": run.flow,
                    "run_id": run.run_id,
                    "rejected": run.rejected,
                    "quality_reasons": reasons,
                },
            )
        )
    return alerts


def job_alerts(report: JobsReport | None) -> list[Alert]:
    """One alert per TimescaleDB background job whose last run failed; the resource is the job
    (its id is unique in the database), so a job failing run after run alerts once per quiet period."""
    from pipeline.jobs import failed_job_issue

    if report is None:
        return []
    return [
        Alert(
            event=JOB_FAILED,
            resource_id=f"marketpipe.timescaledb-job.{job.job_id}",
            resource_name=f"TimescaleDB {job.application_name}" + (f" on {job.hypertable}" if job.hypertable else ""),
            message=failed_job_issue(job),
            details={
                "job_id": job.job_id,
                "application_name": job.application_name,
                "proc": job.proc,
                "hypertable": job.hypertable,
                "last_run_started_at": job.last_run_started_at.isoformat() if job.last_run_started_at else None,
                "total_runs": job.total_runs,
                "total_failures": job.total_failures,
                "last_error": job.last_error,
            },
        )
        for job in report.jobs
        if job.failed
    ]


def stream_alerts(streams: Iterable[dict[str, Any]], now: datetime) -> list[Alert]:
    """One alert per stream the health check finds degraded (see :func:`pipeline.health.stream_issues`);
    ``streams`` are the health report's ``streams`` entries."""
    from pipeline.health import stream_issues
    from storage.streams import StreamStatus

    alerts = []
    for entry in streams:
        status = StreamStatus(
            **{
                **entry,
                "started_at": datetime.fromisoformat(entry["started_at"]),
                "updated_at": datetime.fromisoformat(entry["updated_at"]),
                "newest_event": datetime.fromisoformat(entry["newest_event"]) if entry["newest_event"] else None,
            }
        )
        for issue in stream_issues([status], now):
            alerts.append(
                Alert(
                    event=STREAM_DEGRADED,
                    resource_id=f"marketpipe.stream.{status.stream}",
                    resource_name=f"stream {status.stream}",
                    message=issue,
                    details={"state": status.state, "counters": status.counters},
                )
            )
    return alerts


def breaker_alerts(sources: dict[str, dict[str, Any]]) -> list[Alert]:
    """One alert per source whose breaker is open; ``sources`` are the health report's ``sources``."""
    from pipeline.health import open_breaker_issue

    return [
        Alert(
            event=BREAKER_OPEN,
            resource_id=f"marketpipe.source.{name}",
            resource_name=name,
            message=open_breaker_issue(name, state),
            details={
                k: state.get(k)
                for k in ("opened_at", "consecutive_failures", "retry_in_seconds", "last_error", "seen_by")
            },
        )
        for name, state in sources.items()
        if state.get("state") == "open"
    ]


def replica_alerts(replication: dict[str, Any] | None, issues: Sequence[str]) -> list[Alert]:
    """One alert when the health report's ``replication`` says the read replica lags; its message is
    the report's issue about it; the resource is the replica (its address)."""
    if not replication or not replication.get("lagging"):
        return []
    address = replication["address"]
    message = next(
        (i for i in issues if i.startswith(f"the read replica at {address} ")), f"read replica {address} lags"
    )
    return [
        Alert(
            event=REPLICA_LAGGING,
            resource_id=f"marketpipe.replica.{address}",
            resource_name=f"read replica {address}",
            message=message,
            details={
                k: replication.get(k)
                for k in ("lag_seconds", "max_lag_seconds", "replay_lsn", "behind_bytes", "replay_paused")
            },
        )
    ]


def freshness_from_dict(data: dict[str, Any]) -> DatasetFreshness:
    """A :class:`DatasetFreshness` back from its ``to_dict()`` form (the health report's)."""
    from datetime import datetime

    from pipeline.health import DatasetFreshness

    return DatasetFreshness(
        source=data["source"],
        dataset=data["dataset"],
        timeframe=data["timeframe"],
        symbols=int(data["symbols"]),
        newest_ts=datetime.fromisoformat(data["newest_ts"]),
        oldest_ts=datetime.fromisoformat(data["oldest_ts"]),
        oldest_symbol=data["oldest_symbol"],
        missed_sessions=int(data["missed_sessions"]),
        allowed_missed_sessions=data["allowed_missed_sessions"],
        stale_symbols=tuple(data["stale_symbols"]),
    )
