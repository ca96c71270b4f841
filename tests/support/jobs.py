"""Real TimescaleDB background jobs for the status/health/alert tests, all run by the database's own
job scheduler (``CALL run_job`` runs a job in the caller's session and records no statistics, so
the tests wait for the scheduler instead, bounded):

* ``failing``: a continuous-aggregate refresh policy whose aggregate calls an immutable function
  that raises on a negative price, over a hypertable holding one. TimescaleDB 2.28.3 records this
  refresh's failure as "invalid transaction termination", not the function's message, so the tests
  compare its error with ``job_errors`` itself;
* ``raising``: a user-defined action (``add_job``) that raises :data:`FAILURE_MESSAGE`, for a
  failure whose recorded error is known in advance (it has no hypertable);
* ``healthy``: a compression policy on the same hypertable (nothing old enough to compress: it
  succeeds at once).

Everything lives in a schema of its own, dropped afterwards with the jobs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

SCHEDULER_WAIT_SECONDS = 90.0
FAILURE_MESSAGE = "fails on purpose (marketpipe test)"


@dataclass(frozen=True)
class ScheduledJobs:
    schema: str
    failing: int  # the refresh policy's job id
    raising: int  # the user-defined action's job id
    healthy: int  # the compression policy's job id

    @property
    def hypertable(self) -> str:
        return f"{self.schema}.ticks"

    @property
    def aggregate(self) -> str:
        return f"{self.schema}.ticks_1h"


@contextmanager
def background_jobs(conn: psycopg.Connection) -> Iterator[ScheduledJobs]:
    """Create the three jobs on ``conn`` (autocommit), wait until the scheduler ran each once, yield them."""
    schema = f"jobtest_{secrets.token_hex(3)}"
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        conn.execute(f"CREATE TABLE {schema}.ticks (ts timestamptz NOT NULL, price double precision NOT NULL)")
        conn.execute(f"SELECT create_hypertable('{schema}.ticks', by_range('ts', interval '1 day'))")
        conn.execute(
            f"""CREATE FUNCTION {schema}.checked(price double precision) RETURNS double precision
                LANGUAGE plpgsql IMMUTABLE AS $$
                BEGIN
                    IF price < 0 THEN RAISE EXCEPTION 'negative price % in the test aggregate', price; END IF;
                    RETURN price;
                END $$"""
        )
        conn.execute(
            f"""CREATE PROCEDURE {schema}.raising_action(job_id int, config jsonb) LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'job % {FAILURE_MESSAGE}', job_id; END $$"""
        )
        conn.execute(f"INSERT INTO {schema}.ticks VALUES (now() - interval '2 days', -1)")
        conn.execute(
            f"""CREATE MATERIALIZED VIEW {schema}.ticks_1h WITH (timescaledb.continuous) AS
                SELECT time_bucket('1 hour', ts) AS bucket, max({schema}.checked(price)) AS high
                FROM {schema}.ticks GROUP BY 1 WITH NO DATA"""
        )
        conn.execute(f"ALTER TABLE {schema}.ticks SET (timescaledb.compress, timescaledb.compress_orderby = 'ts')")
        failing = _job_id(
            conn,
            f"""SELECT add_continuous_aggregate_policy('{schema}.ticks_1h', start_offset => NULL,
                    end_offset => interval '1 hour', schedule_interval => interval '1 hour', initial_start => now())""",
        )
        healthy = _job_id(
            conn,
            f"""SELECT add_compression_policy('{schema}.ticks', compress_after => interval '30 days',
                    schedule_interval => interval '1 hour', initial_start => now())""",
        )
        raising = _job_id(conn, f"SELECT add_job('{schema}.raising_action', interval '1 hour', initial_start => now())")
        jobs = ScheduledJobs(schema, failing, raising, healthy)
        _wait_for_runs(conn, jobs)
        yield jobs
    finally:  # dropping the aggregate and the hypertable deletes their policies' jobs, not the action
        conn.execute("SELECT delete_job(job_id) FROM timescaledb_information.jobs WHERE proc_schema = %s", (schema,))
        conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {schema}.ticks_1h")
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def recorded_error(conn: psycopg.Connection, job_id: int) -> str:
    """The newest error TimescaleDB recorded for ``job_id``, straight from ``job_errors``."""
    row = conn.execute(
        "SELECT err_message FROM timescaledb_information.job_errors WHERE job_id = %s ORDER BY start_time DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    assert row is not None and row[0], f"no error recorded for job {job_id}"
    return str(row[0])


def _job_id(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def _wait_for_runs(conn: psycopg.Connection, jobs: ScheduledJobs) -> None:
    """Until job_stats shows a finished run of every job; fails after SCHEDULER_WAIT_SECONDS."""
    deadline = time.monotonic() + SCHEDULER_WAIT_SECONDS
    while True:
        rows = conn.execute(
            "SELECT job_id, last_run_status FROM timescaledb_information.job_stats WHERE job_id = ANY(%s)",
            ([jobs.failing, jobs.raising, jobs.healthy],),
        ).fetchall()
        finished = {job_id: status for job_id, status in rows if status is not None}
        if len(finished) == 3:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the job scheduler did not run jobs {jobs.failing}, {jobs.raising} and {jobs.healthy} within "
                f"{SCHEDULER_WAIT_SECONDS:.0f} s (finished: {finished})"
            )
        time.sleep(0.5)
