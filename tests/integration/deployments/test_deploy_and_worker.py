"""Deployments for real: the work pool, `prefect deploy --all`, a process worker started through
`marketpipe worker`, and `prefect deployment run ... --watch` landing rows in the hot store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ServiceError
from core.settings import Settings
from db.connect import database_connection
from deployments.deploy import QUEUES, deploy_all, ensure_work_pool
from tests.support.processes import stop_process_group

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SYMBOL = "DEPA"
EXPECTED = {
    "pipeline/eod-ingest",
    "pipeline/ingest-shard",
    "intraday/intraday-ingest",
    "options/options-snapshots",
    "news/news-ingest",
    "pipeline/gap-repair",
    "features/features-recompute",
    "tiering/nightly-tiering",
    "health/health-check",
    "smoke/smoke",
    "stream/stream-polygon",
    "stream/stream-alpaca",
    "fundamentals/fundamentals-daily",
    "fundamentals/earnings-daily",
}


def pause_schedules(names: list[str]) -> None:
    """A scheduled run coming due during the test must not reach the worker."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        short = [n.split("/", 1)[1] for n in names]
        by_name = DeploymentFilter(name=DeploymentFilterName(any_=short))
        for deployment in client.read_deployments(deployment_filter=by_name):
            for schedule in client.read_deployment_schedules(deployment.id):
                client.update_deployment_schedule(deployment.id, schedule.id, active=False)


def start_worker(log: Path) -> subprocess.Popen:
    """`marketpipe worker` polling only the batch queue; output to a file (a pipe nobody reads
    fills up and blocks the worker and its flow runs)."""
    env = {**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    with log.open("w") as out:
        return subprocess.Popen(
            [str(BIN / "marketpipe"), "worker", "--pool", "marketpipe", "--queue", "batch", "--name", "test-worker"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(worker: subprocess.Popen, log: Path) -> str:
    """Terminate the worker's process group (the worker, prefect and any flow-run process)."""
    stop_process_group(worker)
    lines = [line for line in log.read_text(errors="replace").splitlines() if "| DEBUG" not in line]
    return "\n".join(lines[-60:])


def test_pool_and_deployments_are_idempotent_and_a_worker_runs_the_daily_deployment(
    stack: Settings, tmp_path: Path
) -> None:
    ensure_work_pool("marketpipe", QUEUES)
    assert ensure_work_pool("marketpipe", QUEUES) == []  # second call: nothing to create
    names = deploy_all(REPO)
    assert set(names) >= EXPECTED, names
    pause_schedules(names)

    overrides = {
        "pipeline": {
            "symbols": [SYMBOL],
            "bars": [{"timeframe": "1day", "lookback_days": 10}],
            "corporate_actions": False,
        }
    }
    worker_log = tmp_path / "worker.log"
    worker = start_worker(worker_log)
    try:
        run = subprocess.run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "pipeline/eod-ingest",
                "--param",
                f"overrides={json.dumps(overrides)}",
                "--param",
                'stages=["ingestion", "processing"]',
                "--watch",
                "--watch-interval",
                "1",
                "--watch-timeout",
                "120",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        log = stop_worker(worker, worker_log)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-3000:]}\n--- worker ---\n{log}"

    from prefect.client.orchestration import get_client

    # The run this command created (not one the schedule created before it was paused: those are
    # still SCHEDULED, with no start time, and sort first).
    created = re.search(r"UUID:\s*([0-9a-f-]{36})", run.stdout)
    assert created, run.stdout
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(created.group(1))
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run
    with database_connection(stack) as conn:
        rows = conn.execute("SELECT count(*) FROM market.bars WHERE symbol = %s", (SYMBOL,)).fetchone()[0]
    assert rows > 0


def test_deploy_all_names_prefects_refusal(stack: Settings, tmp_path: Path) -> None:
    (tmp_path / "prefect.yaml").write_text(
        "name: broken\ndeployments:\n  - name: nowhere\n    entrypoint: flows/missing.py:nope\n"
        "    work_pool: {name: marketpipe}\n"
    )
    started = time.monotonic()
    with pytest.raises(ServiceError, match="prefect deploy --all failed") as refused:
        deploy_all(tmp_path, timeout=60)
    assert len(str(refused.value).splitlines()) > 1  # the command's output tail follows
    assert time.monotonic() - started < 60
