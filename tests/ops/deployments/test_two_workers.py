"""Scale-out for real: two `marketpipe worker` processes pull from the `marketpipe` pool, one of them
in its own network namespace reaching the stack over a veth pair (as a second host would, through
its network), and each runs one shard of the universe.

- shards: two `pipeline/ingest-shard` runs with disjoint `symbols` (that deployment has no
  concurrency limit; eod-ingest's limit of 1 would serialise them); each worker takes at most one
  run at a time (`--limit 1`), so with both runs queued each worker takes one;
- no symbol twice: the sandbox counts the vendor requests, one per symbol for this window;
- one rate limit: both runs use polygon's Prefect-backed limit (`marketpipe-rate-polygon`, slot
  decay r per second, capacity b), so any wall-clock second sees at most r + b requests from both
  together; two private limits would allow twice that.

The namespace side needs root (`ip netns`); without it both workers run as plain processes on
this host and the test says so in its output.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from core.settings import Settings
from db.connect import database_connection
from deployments.deploy import QUEUES, deploy_changed, ensure_work_pool
from sources.resilience import default_burst
from tests.support.netns import netns_possible, network_namespace
from tests.support.processes import stop_process_group

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
RPS = 1.0  # below what one run fetches at on its own, so the shared limit is what binds
SYMBOLS_PER_SHARD = 16
WAIT_SECONDS = 300.0


def shard_symbols(count: int) -> tuple[list[str], list[str]]:
    """Two disjoint shards of fresh tickers (no watermark of an earlier session applies)."""
    tag = "".join(secrets.choice(string.ascii_uppercase) for _ in range(2))
    letters = string.ascii_uppercase
    names = [f"W{tag}{letters[i // 26]}{letters[i % 26]}" for i in range(2 * count)]
    return names[:count], names[count:]


@contextmanager
def worker(name: str, log: Path, prefix: list[str] | None = None, env: dict[str, str] | None = None) -> Iterator[Path]:
    """`marketpipe worker --limit 1` as its own process group; stopped (group and all) on exit."""
    argv = [
        *(prefix or []),
        str(BIN / "marketpipe"),
        "worker",
        "--pool",
        "marketpipe",
        "--queue",
        "batch",
        "--name",
        name,
        "--limit",
        "1",
    ]
    full_env = {
        **os.environ,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        **(env or {}),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield log
    finally:
        stop_process_group(process, grace_seconds=20)


def wait_online(names: set[str]) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while True:
            online = {w.name for w in client.read_workers_for_work_pool("marketpipe") if w.status == "ONLINE"}
            if names <= online:
                return
            assert time.monotonic() < deadline, f"workers {names - online} not online within 120 s"
            time.sleep(1)


def wait_final(run_ids: list[str]) -> list:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + WAIT_SECONDS
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(r) for r in run_ids]
            if all(r.state is not None and r.state.is_final() for r in runs):
                return runs
            if time.monotonic() > deadline:
                return runs
            time.sleep(2)


def pause_schedules() -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            for schedule in client.read_deployment_schedules(deployment.id):
                if schedule.active:
                    client.update_deployment_schedule(deployment.id, schedule.id, active=False)


def runs_in(log: Path) -> dict[str, str]:
    """The flow runs whose process logged into this worker's output, with the API address it used
    ("View at http://HOST:PORT/runs/flow-run/ID"; a run's sub-flows appear too)."""
    found = re.findall(r"View at (http://[^/\s]+)/runs/flow-run/([0-9a-f-]{36})", log.read_text(errors="replace"))
    return {run_id: address for address, run_id in found}


def tail(log: Path, lines: int = 40) -> str:
    kept = [line for line in log.read_text(errors="replace").splitlines() if "| DEBUG" not in line]
    return f"--- {log.name} ---\n" + "\n".join(kept[-lines:])


def test_two_workers_split_the_shards_and_share_the_rate_limit(stack: Settings, tmp_path: Path) -> None:
    from prefect.deployments import run_deployment

    ensure_work_pool("marketpipe", QUEUES)
    deploy_changed(REPO)
    pause_schedules()
    sandbox = stack.sandbox.base_url
    httpx.delete(f"{sandbox}/_sandbox/faults", timeout=10)
    httpx.delete(f"{sandbox}/_sandbox/stats", timeout=10)
    shards = shard_symbols(SYMBOLS_PER_SHARD)
    overrides = {
        "pipeline": {
            "source": "polygon",
            "bars": [{"timeframe": "1day", "lookback_days": 10}],
            "corporate_actions": False,
        },
        "rate_limits": {"polygon": {"requests_per_second": RPS}},
    }

    stack_ports = [stack.prefect.port, stack.database.port, stack.lake.port, stack.sandbox.port]
    with ExitStack() as running:
        if netns_possible():
            prefix, host_ip = running.enter_context(network_namespace(stack_ports))
            remote_env = {
                "MARKETPIPE_PREFECT__HOST": host_ip,
                "MARKETPIPE_DATABASE__HOST": host_ip,
                "MARKETPIPE_LAKE__HOST": host_ip,
                "MARKETPIPE_SANDBOX__HOST": host_ip,
            }
            topology = f"second worker in a network namespace via {host_ip}"
        else:
            prefix, remote_env, topology = [], {}, "both workers on this host (no root for ip netns)"
        print(topology)
        logs = {
            "worker-here": running.enter_context(worker("worker-here", tmp_path / "worker-here.log")),
            "worker-remote": running.enter_context(
                worker("worker-remote", tmp_path / "worker-remote.log", prefix, remote_env)
            ),
        }
        wait_online(set(logs))
        created = [
            run_deployment(
                "pipeline/ingest-shard",
                timeout=0,
                parameters={"symbols": shard, "stages": ["ingestion", "processing"], "overrides": overrides},
            )
            for shard in shards
        ]
        run_ids = [str(r.id) for r in created]
        runs = wait_final(run_ids)
    diagnostics = "\n".join(tail(log) for log in logs.values())

    assert all(r.state is not None and r.state.is_completed() for r in runs), (
        f"{[(r.name, r.state) for r in runs]}\n{diagnostics}"
    )
    ran = {name: runs_in(log) for name, log in logs.items()}
    takers = {name: sorted(set(found) & set(run_ids)) for name, found in ran.items()}
    assert sorted(len(ids) for ids in takers.values()) == [1, 1], f"{takers}\n{diagnostics}"  # one run each
    if remote_env:  # the remote run talked to the server through the veth pair, not the loopback
        assert ran["worker-remote"][takers["worker-remote"][0]].startswith(
            f"http://{remote_env['MARKETPIPE_PREFECT__HOST']}:"
        )

    universe = [s for shard in shards for s in shard]
    with database_connection(stack) as conn:
        stored = dict(
            conn.execute(
                "SELECT symbol, count(*) FROM market.bars WHERE symbol = ANY(%s) GROUP BY symbol", (universe,)
            ).fetchall()
        )
        windows = conn.execute(
            "SELECT run_id, min(fetched_at), max(fetched_at), count(*) FROM ops.raw_pages WHERE symbol = ANY(%s) "
            "GROUP BY run_id ORDER BY 2",
            (universe,),
        ).fetchall()
    assert set(stored) == set(universe), sorted(set(universe) - set(stored))
    # Informational: the shared limit is only put to the test while both runs fetch at once.
    spans = [f"{n} pages {first:%H:%M:%S}-{last:%H:%M:%S}" for _, first, last, n in windows]
    print("fetch windows per ingest run: " + "; ".join(spans))

    polygon = httpx.get(f"{sandbox}/_sandbox/stats", timeout=10).json()["vendors"]["polygon"]
    assert polygon["total"] == len(universe), json.dumps(polygon)  # each symbol fetched once, by one run
    burst = default_burst(RPS)
    print(
        f"polygon requests per wall-clock second, both workers together (limit {RPS:g}/s + burst {burst}): "
        f"{polygon['per_second']}"
    )
    assert polygon["max_per_second"] <= RPS + burst, json.dumps(polygon["per_second"])
