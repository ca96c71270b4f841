"""TimescaleDB background jobs (pure): the report built from the views' rows, the failed-job issue,
the overdue warning, the Apache edition's one line, the report's dict form and the alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.alerts import JOB_FAILED, job_alerts
from pipeline.components import ComponentStatus, StackStatus, TimescaleInfo
from pipeline.jobs import APACHE_NOTE, BackgroundJob, JobsReport, job_issues, job_warnings, jobs_report, read_jobs

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ERROR = "division by zero. CONTEXT: PL/pgSQL function boom(double precision) line 3"


def row(job_id: int, **changes: Any) -> dict[str, Any]:
    """One row of pipeline.jobs.JOBS_QUERY: a compression policy that last ran fine an hour ago."""
    base: dict[str, Any] = {
        "read_at": NOW,
        "job_id": job_id,
        "application_name": f"Compression Policy [{job_id}]",
        "proc_schema": "_timescaledb_functions",
        "proc_name": "policy_compression",
        "hypertable_schema": "market",
        "hypertable_name": "bars_intraday",
        "schedule_interval": timedelta(hours=12),
        "scheduled": True,
        "job_status": "Scheduled",
        "last_run_status": "Success",
        "last_run_started_at": NOW - timedelta(hours=1),
        "last_run_finished_at": NOW - timedelta(hours=1) + timedelta(seconds=2),
        "last_successful_finish": NOW - timedelta(hours=1) + timedelta(seconds=2),
        "next_start": NOW + timedelta(hours=11),
        "total_runs": 4,
        "total_failures": 0,
        "last_error": None,
        "last_error_at": None,
    }
    return {**base, **changes}


def failed(job_id: int, **changes: Any) -> dict[str, Any]:
    return row(
        job_id,
        last_run_status="Failed",
        total_failures=3,
        last_error=ERROR,
        last_error_at=NOW - timedelta(hours=1),
        **changes,
    )


def test_a_job_whose_last_run_failed_is_an_issue_naming_it_its_hypertable_its_error_and_what_to_do() -> None:
    report = jobs_report("timescale", [row(1000), failed(1001)])
    issues = job_issues(report)
    assert len(issues) == 1
    issue = issues[0]
    assert (
        "job 1001 (Compression Policy [1001], _timescaledb_functions.policy_compression on market.bars_intraday)"
        in issue
    )
    assert f"failed its last run at 2026-12-01 11:00:00 UTC: {ERROR}" in issue
    assert "3 of 4 runs failed" in issue
    assert "older chunks stay uncompressed" in issue
    assert "SELECT alter_job(1001, next_start => now())" in issue and "job_errors WHERE job_id = 1001" in issue
    assert "the scheduler retries it" in issue


def test_a_job_unscheduled_after_max_retries_is_still_an_issue_and_says_how_to_resume_it() -> None:
    report = jobs_report("timescale", [failed(1002, scheduled=False, job_status="Paused", next_start=None)])
    (issue,) = job_issues(report)
    assert "SELECT alter_job(1002, scheduled => true)" in issue


def test_jobs_that_ran_fine_or_never_ran_are_no_issue() -> None:
    never = row(
        1003, last_run_status=None, last_run_started_at=None, total_runs=0, next_start=NOW + timedelta(minutes=5)
    )
    report = jobs_report("timescale", [row(1000), never])
    assert job_issues(report) == [] and job_warnings(report) == []
    assert [j.state(NOW) for j in report.jobs] == ["ok", "never-run"]


def test_an_old_error_followed_by_a_success_is_reported_but_is_no_issue() -> None:
    report = jobs_report(
        "timescale", [row(1000, total_failures=1, last_error=ERROR, last_error_at=NOW - timedelta(days=2))]
    )
    assert job_issues(report) == []
    assert report.to_dict()["jobs"][0]["last_error"] == ERROR


def test_a_job_overdue_by_far_is_a_warning_not_an_issue() -> None:
    late = row(1004, schedule_interval=timedelta(minutes=5), next_start=NOW - timedelta(hours=3))
    report = jobs_report("timescale", [late])
    assert job_issues(report) == []
    (warning,) = job_warnings(report)
    assert "job 1004" in warning and "is overdue" in warning and "3.0 h ago (every 5 min)" in warning
    assert "timescaledb.max_background_workers" in warning
    assert report.jobs[0].state(NOW) == "overdue"


def test_lateness_within_twice_the_interval_or_the_grace_hour_is_no_warning() -> None:
    daily = row(1005, schedule_interval=timedelta(days=1), next_start=NOW - timedelta(hours=30))
    frequent = row(1006, schedule_interval=timedelta(minutes=5), next_start=NOW - timedelta(minutes=50))
    running = row(
        1007, job_status="Running", schedule_interval=timedelta(minutes=5), next_start=NOW - timedelta(hours=5)
    )
    paused = row(1008, scheduled=False, job_status="Paused", next_start=NOW - timedelta(days=5))
    assert job_warnings(jobs_report("timescale", [daily, frequent, running, paused])) == []


def test_the_apache_edition_says_so_in_one_line_reads_nothing_and_fails_nothing() -> None:
    class NoConnection:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the Apache edition's report used the connection ({name})")

    report = read_jobs(NoConnection(), "apache")  # type: ignore[arg-type]
    assert report.lines() == [APACHE_NOTE]
    assert job_issues(report) == [] and job_warnings(report) == [] and job_alerts(report) == []
    assert report.to_dict()["scheduler"] is False and report.to_dict()["note"] == APACHE_NOTE


def test_jobs_that_cannot_be_read_are_an_issue() -> None:
    report = JobsReport(edition="timescale", read_at=None, unreadable="InsufficientPrivilege: permission denied")
    (issue,) = job_issues(report)
    assert "cannot be read (InsufficientPrivilege: permission denied)" in issue
    assert report.lines() == ["background jobs: cannot be read (InsufficientPrivilege: permission denied)"]


def test_the_status_lines_mark_a_failed_job_and_show_its_error() -> None:
    lines = jobs_report("timescale", [row(1000), failed(1001)]).lines()
    assert lines[0] == "background jobs (2):"
    assert lines[1].split()[:2] == ["1000", "ok"]
    assert (
        "Compression Policy [1000] on market.bars_intraday: every 12 h; last run Success at 2026-12-01 11:00:00 UTC"
        in lines[1]
    )
    assert lines[2].split()[:2] == ["1001", "FAILED"] and "3 of 4 runs failed" in lines[2]
    assert lines[3].strip() == f"last error: {ERROR}"
    assert JobsReport(edition="timescale", read_at=None).lines() == ["background jobs: none"]


def test_the_report_survives_its_json_dict_form() -> None:
    report = jobs_report("timescale", [row(1000), failed(1001, next_start=None, last_run_finished_at=None)])
    again = JobsReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert report.to_dict()["jobs"][1]["state"] == "failed"


def test_the_stack_status_carries_the_jobs_in_its_dict_form() -> None:
    jobs = jobs_report("timescale", [failed(1001)])
    postgres = ComponentStatus("postgres", True, "127.0.0.1:5433", None, "ok")
    status = StackStatus({"postgres": postgres}, TimescaleInfo("2.28.3", "timescale", jobs))
    data = json.loads(json.dumps(status.to_dict()))
    assert status.healthy and data["healthy"] is True  # a failed job is a health issue, not a component down
    assert data["timescaledb"] == {"version": "2.28.3", "edition": "timescale"}
    assert [j["job_id"] for j in data["jobs"]["jobs"]] == [1001]


def test_a_failed_job_alerts_once_about_the_job() -> None:
    report = jobs_report("timescale", [row(1000), failed(1001)])
    (alert,) = job_alerts(report)
    assert alert.event == JOB_FAILED
    assert alert.resource_id == "marketpipe.timescaledb-job.1001"
    assert alert.resource()["prefect.resource.name"] == "TimescaleDB Compression Policy [1001] on market.bars_intraday"
    assert alert.message == job_issues(report)[0]
    assert alert.payload()["last_error"] == ERROR and alert.payload()["hypertable"] == "market.bars_intraday"
    assert job_alerts(None) == []


def test_a_job_of_a_continuous_aggregate_names_the_aggregate_and_its_consequence() -> None:
    refresh = failed(
        1009,
        application_name="Refresh Continuous Aggregate Policy [1009]",
        proc_name="policy_refresh_continuous_aggregate",
        hypertable_name="bars_5min",
    )
    job: BackgroundJob = jobs_report("timescale", [refresh]).jobs[0]
    assert job.hypertable == "market.bars_5min"
    assert "materialization falls behind" in job_issues(jobs_report("timescale", [refresh]))[0]
