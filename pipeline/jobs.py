"""TimescaleDB's background jobs (compression policies, continuous-aggregate refreshes, retention)
as the status and the health check report them.

The full edition runs these jobs in its own scheduler, inside PostgreSQL, where no flow run sees
them fail: a compression policy that fails leaves chunks uncompressed, a refresh policy that fails
leaves an aggregate's materialization behind, and nothing else says so. :func:`read_jobs` reads
``timescaledb_information.jobs`` and ``job_stats``, plus each job's newest row of ``job_errors``
for its last error message, in one query at the database's clock; the rest is pure:

* a job whose last run failed is an issue (:func:`job_issues`), whether the scheduler will retry it
  or has unscheduled it after ``max_retries``;
* a scheduled job whose next start is overdue by more than twice its interval and at least
  :data:`OVERDUE_GRACE` is a warning (:func:`job_warnings`), not an issue: lateness has benign
  causes (the cluster was down, a long compression holds the shared background workers) that
  resolve themselves, and a job that then fails becomes an issue anyway. Warnings are reported,
  raise no alert and leave the pipeline healthy.

The Apache edition has no policies to run: its report is one line saying so, and nothing is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

OVERDUE_GRACE = timedelta(hours=1)
APACHE_NOTE = (
    "background jobs: none (TimescaleDB apache edition has no job scheduler; compression and "
    "continuous-aggregate policies need the full edition)"
)
# What a failing job of a known procedure leaves undone, for the issue's reader.
CONSEQUENCES = {
    "policy_compression": "its hypertable's older chunks stay uncompressed (more disk, slower scans; no data is lost)",
    "policy_refresh_continuous_aggregate": (
        "the aggregate's materialization falls behind (real-time aggregation still answers from the raw bars, "
        "more slowly)"
    ),
    "policy_retention": "chunks past the retention window are not dropped",
    "policy_reorder": "chunks are not reordered",
}

# ``-infinity`` marks "not yet" in TimescaleDB's job statistics; psycopg cannot load it into a
# datetime, so every timestamp read here goes through isfinite().
JOBS_QUERY = """
SELECT now() AS read_at,
       j.job_id, j.application_name, j.proc_schema, j.proc_name, j.hypertable_schema, j.hypertable_name,
       j.schedule_interval, j.scheduled, s.job_status, s.last_run_status,
       CASE WHEN isfinite(s.last_run_started_at) THEN s.last_run_started_at END AS last_run_started_at,
       CASE WHEN isfinite(s.last_run_started_at) THEN s.last_run_started_at + s.last_run_duration END
           AS last_run_finished_at,
       CASE WHEN isfinite(s.last_successful_finish) THEN s.last_successful_finish END AS last_successful_finish,
       CASE WHEN isfinite(s.next_start) THEN s.next_start END AS next_start,
       coalesce(s.total_runs, 0) AS total_runs, coalesce(s.total_failures, 0) AS total_failures,
       e.err_message AS last_error, e.error_at AS last_error_at
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN LATERAL (
    SELECT err_message,
           CASE WHEN isfinite(coalesce(finish_time, start_time)) THEN coalesce(finish_time, start_time) END AS error_at
    FROM timescaledb_information.job_errors
    WHERE job_errors.job_id = j.job_id
    ORDER BY start_time DESC NULLS LAST
    LIMIT 1
) e ON true
ORDER BY j.job_id
"""


@dataclass(frozen=True)
class BackgroundJob:
    """One row of ``timescaledb_information.jobs`` with its ``job_stats`` and newest error."""

    job_id: int
    application_name: str
    proc: str  # schema.name of the procedure the job calls
    hypertable: str | None  # schema.name; a continuous aggregate's view for its refresh policy
    schedule_interval: timedelta | None
    scheduled: bool  # False: paused by hand, or unscheduled by the scheduler after max_retries
    job_status: str | None  # 'Scheduled' | 'Running' | 'Paused'
    last_run_status: str | None  # 'Success' | 'Failed' | None (never finished a run)
    last_run_started_at: datetime | None
    last_run_finished_at: datetime | None
    last_successful_finish: datetime | None
    next_start: datetime | None
    total_runs: int
    total_failures: int
    last_error: str | None  # the newest of job_errors, which may predate a later success
    last_error_at: datetime | None

    @property
    def failed(self) -> bool:
        return self.last_run_status == "Failed"

    @property
    def label(self) -> str:
        on = f" on {self.hypertable}" if self.hypertable else ""
        return f"job {self.job_id} ({self.application_name}, {self.proc}{on})"

    def overdue_by(self, now: datetime) -> timedelta | None:
        """How far past its next start a scheduled, idle job is, when that is "far" (see the module)."""
        if not self.scheduled or self.job_status == "Running" or self.next_start is None:
            return None
        late = now - self.next_start
        allowed = max(2 * (self.schedule_interval or timedelta(0)), OVERDUE_GRACE)
        return late if late > allowed else None

    def state(self, now: datetime) -> str:
        """One word for the status: failed, running, overdue, paused, ok, or never-run."""
        if self.failed:
            return "failed"
        if self.job_status == "Running":
            return "running"
        if self.overdue_by(now) is not None:
            return "overdue"
        if not self.scheduled:
            return "paused"
        return "ok" if self.last_run_status == "Success" else "never-run"

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "application_name": self.application_name,
            "proc": self.proc,
            "hypertable": self.hypertable,
            "schedule_interval_seconds": _seconds(self.schedule_interval),
            "scheduled": self.scheduled,
            "job_status": self.job_status,
            "last_run_status": self.last_run_status,
            "last_run_started_at": _iso(self.last_run_started_at),
            "last_run_finished_at": _iso(self.last_run_finished_at),
            "last_successful_finish": _iso(self.last_successful_finish),
            "next_start": _iso(self.next_start),
            "total_runs": self.total_runs,
            "total_failures": self.total_failures,
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "state": self.state(now),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackgroundJob:
        seconds = data["schedule_interval_seconds"]
        return cls(
            job_id=int(data["job_id"]),
            application_name=data["application_name"],
            proc=data["proc"],
            hypertable=data["hypertable"],
            schedule_interval=None if seconds is None else timedelta(seconds=seconds),
            scheduled=bool(data["scheduled"]),
            job_status=data["job_status"],
            last_run_status=data["last_run_status"],
            last_run_started_at=_from_iso(data["last_run_started_at"]),
            last_run_finished_at=_from_iso(data["last_run_finished_at"]),
            last_successful_finish=_from_iso(data["last_successful_finish"]),
            next_start=_from_iso(data["next_start"]),
            total_runs=int(data["total_runs"]),
            total_failures=int(data["total_failures"]),
            last_error=data["last_error"],
            last_error_at=_from_iso(data["last_error_at"]),
        )


@dataclass(frozen=True)
class JobsReport:
    """The background jobs of one database, read at ``read_at`` (the database's clock).

    ``unreadable`` says why the jobs could not be read on an edition that has them."""

    edition: str
    read_at: datetime | None
    jobs: tuple[BackgroundJob, ...] = field(default_factory=tuple)
    unreadable: str | None = None

    @property
    def scheduler(self) -> bool:
        """Whether this edition runs background jobs at all."""
        return self.edition != "apache"

    def to_dict(self) -> dict[str, Any]:
        now = self.read_at
        return {
            "edition": self.edition,
            "scheduler": self.scheduler,
            "read_at": _iso(now),
            "unreadable": self.unreadable,
            "note": None if self.scheduler else APACHE_NOTE,
            "jobs": [j.to_dict(now) for j in self.jobs] if now else [],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobsReport:
        return cls(
            edition=data["edition"],
            read_at=_from_iso(data["read_at"]),
            jobs=tuple(BackgroundJob.from_dict(j) for j in data["jobs"]),
            unreadable=data["unreadable"],
        )

    def lines(self) -> list[str]:
        """The human form, for ``marketpipe status``."""
        if not self.scheduler:
            return [APACHE_NOTE]
        if self.unreadable:
            return [f"background jobs: cannot be read ({self.unreadable})"]
        if not self.jobs or self.read_at is None:
            return ["background jobs: none"]
        now = self.read_at
        lines = [f"background jobs ({len(self.jobs)}):"]
        for job in self.jobs:
            state = job.state(now)
            mark = state.upper() if state in ("failed", "overdue") else state
            last = (
                f"last run {job.last_run_status} at {_short(job.last_run_started_at)}"
                if job.last_run_started_at
                else "never run"
            )
            builtin = job.proc.startswith("_timescaledb_functions.")  # a policy: its name says what it runs
            lines.append(
                f"  {job.job_id:<5} {mark:<9} {job.application_name}"
                + ("" if builtin else f" ({job.proc})")
                + (f" on {job.hypertable}" if job.hypertable else "")
                + f": every {_interval(job.schedule_interval)}; {last}; next {_short(job.next_start)}; "
                f"{job.total_failures} of {job.total_runs} runs failed"
            )
            if job.failed and job.last_error:
                lines.append(f"        last error: {job.last_error}")
        return lines


def jobs_report(edition: str, rows: list[dict[str, Any]]) -> JobsReport:
    """A report from the rows of :data:`JOBS_QUERY` (each a column -> value mapping)."""
    if not rows:
        return JobsReport(edition=edition, read_at=None)
    jobs = tuple(
        BackgroundJob(
            job_id=int(r["job_id"]),
            application_name=r["application_name"],
            proc=f"{r['proc_schema']}.{r['proc_name']}",
            hypertable=f"{r['hypertable_schema']}.{r['hypertable_name']}" if r["hypertable_name"] else None,
            schedule_interval=r["schedule_interval"],
            scheduled=bool(r["scheduled"]),
            job_status=r["job_status"],
            last_run_status=r["last_run_status"],
            last_run_started_at=r["last_run_started_at"],
            last_run_finished_at=r["last_run_finished_at"],
            last_successful_finish=r["last_successful_finish"],
            next_start=r["next_start"],
            total_runs=int(r["total_runs"]),
            total_failures=int(r["total_failures"]),
            last_error=r["last_error"],
            last_error_at=r["last_error_at"],
        )
        for r in rows
    )
    return JobsReport(edition=edition, read_at=rows[0]["read_at"], jobs=jobs)


def read_jobs(conn: psycopg.Connection, edition: str) -> JobsReport:
    """The jobs of ``conn``'s database; nothing is read on the Apache edition. A failed read is
    reported in the report (``unreadable``), not raised: the status must still answer."""
    if edition == "apache":
        return JobsReport(edition=edition, read_at=None)
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(JOBS_QUERY).fetchall()
    except psycopg.Error as exc:
        return JobsReport(edition=edition, read_at=None, unreadable=f"{type(exc).__name__}: {exc}".strip())
    return jobs_report(edition, rows)


def job_issues(report: JobsReport) -> list[str]:
    """One issue per job whose last run failed, and one when the jobs cannot be read."""
    if not report.scheduler:
        return []
    if report.unreadable:
        return [
            f"TimescaleDB's background jobs cannot be read ({report.unreadable}); check that the database role "
            "may read the timescaledb_information views (it should own the database) and `marketpipe status`"
        ]
    return [failed_job_issue(j) for j in report.jobs if j.failed]


def failed_job_issue(job: BackgroundJob) -> str:
    error = f": {job.last_error}" if job.last_error else " (no error recorded in job_errors)"
    when = f" at {_short(job.last_run_started_at)}" if job.last_run_started_at else ""
    consequence = CONSEQUENCES.get(job.proc.rsplit(".", 1)[-1])
    retry = (
        f"the scheduler retries it (next start {_short(job.next_start)})"
        if job.scheduled
        else f"it is unscheduled (paused by hand or after max_retries): resume it with "
        f"`SELECT alter_job({job.job_id}, scheduled => true)` once fixed"
    )
    return (
        f"TimescaleDB background {job.label} failed its last run{when}{error} "
        f"({job.total_failures} of {job.total_runs} runs failed)"
        + (f"; until it succeeds {consequence}" if consequence else "")
        + f"; {retry}. Fix the cause (history: `SELECT * FROM timescaledb_information.job_errors WHERE job_id = "
        f"{job.job_id}`), then have the scheduler run it now with "
        f"`SELECT alter_job({job.job_id}, next_start => now())` and check `marketpipe status` "
        "(`CALL run_job(...)` in psql runs it in your session but records no run)"
    )


def job_warnings(report: JobsReport) -> list[str]:
    """One warning per scheduled job overdue by far (see the module)."""
    now = report.read_at
    if now is None:
        return []
    warnings = []
    for job in report.jobs:
        late = job.overdue_by(now)
        if late is None or job.failed:
            continue
        warnings.append(
            f"TimescaleDB background {job.label} is overdue: it should have started at {_short(job.next_start)}, "
            f"{_duration(late)} ago (every {_interval(job.schedule_interval)}); look for the TimescaleDB "
            "scheduler's warnings in the PostgreSQL log (<state_dir>/log/) and check that "
            "timescaledb.max_background_workers leaves it a worker"
        )
    return warnings


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _seconds(interval: timedelta | None) -> float | None:
    return interval.total_seconds() if interval is not None else None


def _short(ts: datetime | None) -> str:
    return f"{ts.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if ts else "-"


def _interval(interval: timedelta | None) -> str:
    """A schedule interval as people write it: 5 min, 12 h, 1 day (``-`` when the job has none)."""
    if interval is None:
        return "-"
    seconds = int(interval.total_seconds())
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if unit == "day" and count != 1 else "")
    return f"{seconds} s"


def _duration(interval: timedelta) -> str:
    hours = interval.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
