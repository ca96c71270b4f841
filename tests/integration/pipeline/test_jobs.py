"""TimescaleDB's background jobs through `marketpipe status` and `marketpipe health`, on real jobs
run by the database's scheduler (tests/support/jobs.py): a continuous-aggregate refresh and a
user-defined action that fail, and a compression policy that succeeds."""

from __future__ import annotations

import json

import psycopg

from core.settings import Settings
from tests.support.cli import run_cli
from tests.support.jobs import FAILURE_MESSAGE, background_jobs, recorded_error


def test_status_reports_the_failed_jobs_with_their_errors_and_the_healthy_one_as_ok(
    stack: Settings, conn: psycopg.Connection
) -> None:
    with background_jobs(conn) as jobs:
        refresh_error = recorded_error(conn, jobs.failing)
        as_json = run_cli("status", "--json")
        human = run_cli("status")

    assert as_json.returncode == 0, as_json.stdout + as_json.stderr  # the components are all up
    report = json.loads(as_json.stdout)["jobs"]
    assert report["edition"] == "timescale" and report["scheduler"] is True and report["unreadable"] is None
    by_id = {j["job_id"]: j for j in report["jobs"]}
    failing, raising, healthy = by_id[jobs.failing], by_id[jobs.raising], by_id[jobs.healthy]
    assert failing["last_run_status"] == "Failed" and failing["state"] == "failed"
    assert failing["hypertable"] == jobs.aggregate
    assert failing["proc"] == "_timescaledb_functions.policy_refresh_continuous_aggregate"
    assert failing["last_error"] == refresh_error
    assert failing["total_failures"] >= 1 and failing["last_run_started_at"] and failing["last_error_at"]
    assert raising["state"] == "failed" and raising["hypertable"] is None
    assert raising["proc"] == f"{jobs.schema}.raising_action"
    assert raising["last_error"] == f"job {jobs.raising} {FAILURE_MESSAGE}"
    assert healthy["last_run_status"] == "Success" and healthy["state"] == "ok"
    assert healthy["hypertable"] == jobs.hypertable and healthy["total_failures"] == 0
    assert healthy["last_error"] is None and healthy["next_start"]

    assert human.returncode == 0, human.stdout + human.stderr
    lines = human.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == [str(jobs.raising)])
    assert lines[at].split()[1] == "FAILED" and f"({jobs.schema}.raising_action)" in lines[at]
    assert lines[at + 1].strip() == f"last error: job {jobs.raising} {FAILURE_MESSAGE}"
    failing_line = next(line for line in lines if line.split()[:1] == [str(jobs.failing)])
    assert failing_line.split()[1] == "FAILED" and f"on {jobs.aggregate}:" in failing_line
    healthy_line = next(line for line in lines if line.split()[:1] == [str(jobs.healthy)])
    assert healthy_line.split()[1] == "ok" and f"on {jobs.hypertable}:" in healthy_line
    assert "last run Success" in healthy_line


def test_health_reports_each_failed_job_as_an_issue_and_not_the_healthy_one(
    stack: Settings, conn: psycopg.Connection
) -> None:
    with background_jobs(conn) as jobs:
        refresh_error = recorded_error(conn, jobs.failing)
        result = run_cli("health", "--json")
    after = json.loads(run_cli("health", "--json").stdout)

    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is False

    def about(job_id: int, issues: list[str]) -> list[str]:
        return [i for i in issues if f"job {job_id} (" in i]

    (refresh,) = about(jobs.failing, report["issues"])
    assert f"on {jobs.aggregate})" in refresh and refresh_error in refresh
    assert "materialization falls behind" in refresh and f"alter_job({jobs.failing}, next_start => now())" in refresh
    (action,) = about(jobs.raising, report["issues"])
    assert f"job {jobs.raising} {FAILURE_MESSAGE}" in action
    assert not about(jobs.healthy, report["issues"] + report["warnings"])
    assert {j["job_id"] for j in report["jobs"]["jobs"]} >= {jobs.failing, jobs.raising, jobs.healthy}
    # the jobs are gone with their schema: nothing of them is left to report
    assert not about(jobs.failing, after["issues"]) and not about(jobs.raising, after["issues"])
