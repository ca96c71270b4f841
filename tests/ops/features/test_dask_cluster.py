"""The features flow on a Dask cluster: a LocalCluster of two worker processes plus one `dask worker`
in its own network namespace (a second host: it reaches the scheduler, the hot store, the lake and
the Prefect API through a veth pair) computes, from history tiered to the lake's Parquet and recent
rows in the hot store, exactly the features the threaded path stores; with that worker killed
(SIGKILL, nanny and all) in the middle of a run, every symbol still ends up computed once.

What the scheduler was sent is recorded by a scheduler plugin: no shard's parameters, and no
task spec at all, carries the database password or the lake's secret key (workers read those from
their own environment).

The namespace needs root (`ip netns`); without it the third worker runs on this host, and the test
says so in its output.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import string
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from distributed import Client, LocalCluster

from core.settings import Settings
from db.connect import database_connection
from flows.features_flow import features_flow
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.tiering import tier_chunks
from tests.support.dask_cluster import ShardLedger, dask_worker, executing
from tests.support.netns import netns_possible, network_namespace
from tests.support.tiering import make_bars

SYMBOLS = 9  # one shard each: three workers take several apiece
HISTORY = ("1973-01-02", 20)  # sessions tiered to the lake
RECENT = ("1974-01-02", 5)  # sessions left in the hot store
START, END = "1973-01-01", "1974-02-01"
WAIT_SECONDS = 240


def fresh_symbols() -> list[str]:
    tag = "".join(secrets.choice(string.ascii_uppercase) for _ in range(3))
    return [f"DK{tag}{k}" for k in range(SYMBOLS)]


@dataclass
class Cluster:
    address: str
    client: Client
    ledger: ShardLedger
    prefix: list[str]  # how to run a command in the namespace (or nothing)
    remote_env: dict[str, str]  # the settings a worker there needs to reach the stack
    remote_host: str  # the host-side address of the namespace's link (or 127.0.0.1)
    topology: str


@pytest.fixture(scope="module")
def history(stack: Settings) -> Iterator[list[str]]:
    """Fresh symbols' 1-minute bars: a year tiered to the lake, a month after it still hot."""
    symbols = fresh_symbols()
    with database_connection(stack, autocommit=True) as conn:
        upsert_bars(conn, make_bars(symbols, HISTORY[0], HISTORY[1], per_session=30, seed=3))
        report = tier_chunks(
            conn,
            Lake.from_settings(stack.lake),
            stack,
            dataset="bars_intraday",
            older_than=datetime(1973, 12, 1, tzinfo=UTC),
            newer_than=datetime(1973, 1, 1, tzinfo=UTC),
        )
        assert report.rows >= SYMBOLS * HISTORY[1] * 30, report
        upsert_bars(conn, make_bars(symbols, RECENT[0], RECENT[1], per_session=30, seed=4))
    yield symbols


@pytest.fixture(scope="module")
def cluster(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("dask")
    with ExitStack() as running:
        if netns_possible():
            ports = [stack.database.port, stack.lake.port, stack.prefect.port]
            # Prefect hands each task the flow's own API address (127.0.0.1): the namespace serves it too.
            prefix, host_ip = running.enter_context(network_namespace(ports, loopback_ports=[stack.prefect.port]))
            remote_env = {"MARKETPIPE_DATABASE__HOST": host_ip, "MARKETPIPE_LAKE__HOST": host_ip}
            remote_host, listen = host_ip, "0.0.0.0"
            topology = f"third worker in a network namespace via {host_ip}"
        else:
            prefix, remote_env, remote_host, listen = [], {}, "127.0.0.1", "127.0.0.1"
            topology = "third worker on this host (no root for ip netns)"
        print(topology)
        local = running.enter_context(
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host=listen,
                dashboard_address=None,
                env={"NUMBA_NUM_THREADS": "1"},
            )
        )
        ledger = ShardLedger()
        local.scheduler.add_plugin(ledger)
        port = local.scheduler.port
        address = f"tcp://{remote_host}:{port}"
        running.enter_context(dask_worker(address, "remote", logs / "remote.log", prefix, remote_env))
        client = running.enter_context(Client(local.scheduler_address))
        client.wait_for_workers(3, timeout=120)
        yield Cluster(address, client, ledger, prefix, remote_env, remote_host, topology)


def run_features(symbols: list[str], compute: dict[str, Any]) -> dict[str, Any]:
    overrides = {"compute": {"symbols_per_shard": 1, **compute}}
    return asyncio.run(
        features_flow(symbols=symbols, timeframe="1min", start_date=START, end_date=END, overrides=overrides)
    )


def stored_features(stack: Settings, symbols: list[str]) -> pd.DataFrame:
    with database_connection(stack) as conn:
        cursor = conn.execute(
            "SELECT * FROM features.bar_features WHERE symbol = ANY(%s) ORDER BY symbol, ts", (symbols,)
        )
        columns = [c.name for c in cursor.description or []]
        rows = cursor.fetchall()
    return pd.DataFrame(rows, columns=columns).drop(columns=["computed_at"])


def forget_features(stack: Settings, symbols: list[str]) -> None:
    with database_connection(stack) as conn:
        conn.execute("DELETE FROM features.bar_features WHERE symbol = ANY(%s)", (symbols,))
        conn.commit()


@pytest.fixture(scope="module")
def threaded(stack: Settings, history: list[str]) -> pd.DataFrame:
    """What the threaded path stores (the reference), then forgotten for the cluster's runs."""
    summary = run_features(history, {"task_runner": "threads"})
    features = stored_features(stack, history)
    assert summary["bars"] == len(features) == SYMBOLS * (HISTORY[1] + RECENT[1]) * 30
    forget_features(stack, history)
    return features


def worker_address(cluster: Cluster, name: str) -> str:
    workers = cluster.client.scheduler_info(n_workers=-1)["workers"]
    return next(address for address, worker in workers.items() if worker.get("name") == name)


def secrets_of(stack: Settings) -> list[bytes]:
    """The secrets only marketpipe knows (Prefect's own settings travel with every task it runs:
    its API address and login, by prefect-dask's design)."""
    assert stack.database.password is not None and stack.lake.secret_key is not None
    return [stack.database.password.get_secret_value().encode(), stack.lake.secret_key.get_secret_value().encode()]


def test_the_cluster_computes_exactly_the_threaded_features_and_sends_no_secret(
    stack: Settings, history: list[str], threaded: pd.DataFrame, cluster: Cluster
) -> None:
    print(cluster.topology)
    sent, finished = len(cluster.ledger.wire), len(cluster.ledger.finished)

    summary = run_features(history, {"task_runner": "dask", "dask_address": cluster.address})

    pd.testing.assert_frame_equal(stored_features(stack, history), threaded, check_exact=True)
    assert summary["bars"] == len(threaded)
    assert len(summary["batches"]) == SYMBOLS  # one shard per symbol, each reported once
    workers = {worker for _, worker in cluster.ledger.finished[finished:]}
    assert worker_address(cluster, "remote") in workers, workers  # the namespace's worker took shards
    assert len(workers) >= 2, workers
    shards = cluster.ledger.parameters[sent:]
    assert sorted(s for p in shards for s in p["symbols"]) == sorted(history)
    parameters = [repr(p).encode() for p in shards]
    for secret in stack.secret_values():  # not even Prefect's login travels as a parameter
        assert not any(secret.encode() in p for p in parameters)
    for secret in secrets_of(stack):  # nor anywhere in the task, context included
        assert not any(secret in wire for wire in cluster.ledger.wire[sent:])


def test_a_worker_killed_mid_run_leaves_every_symbol_computed_once(
    stack: Settings, history: list[str], threaded: pd.DataFrame, cluster: Cluster, tmp_path: Path
) -> None:
    forget_features(stack, history)
    with dask_worker(cluster.address, "doomed", tmp_path / "doomed.log", cluster.prefix, cluster.remote_env) as doomed:
        cluster.client.wait_for_workers(4, timeout=120)
        target = worker_address(cluster, "doomed")
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["summary"] = run_features(history, {"task_runner": "dask", "dask_address": cluster.address})
            except BaseException as exc:  # reported by the assertion below
                outcome["error"] = exc

        flow = threading.Thread(target=run)
        flow.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while not (killed := cluster.client.run(executing, workers=[target])[target]):
            assert flow.is_alive() and time.monotonic() < deadline, f"no shard ran on the doomed worker: {outcome}"
            time.sleep(0.05)
        os.killpg(doomed.pid, signal.SIGKILL)  # nanny and worker, in the middle of a shard: nothing restarts it
        flow.join(WAIT_SECONDS)

    assert not flow.is_alive(), "the run did not finish after its worker died"
    assert "error" not in outcome, outcome
    summary = outcome["summary"]
    stored = stored_features(stack, history)
    assert summary["bars"] == len(threaded)
    assert len(summary["batches"]) == SYMBOLS
    assert not stored.duplicated(["symbol", "timeframe", "ts", "feature_set"]).any()
    assert stored.groupby("symbol").size().to_dict() == threaded.groupby("symbol").size().to_dict()
    pd.testing.assert_frame_equal(stored, threaded, check_exact=True)
    rerun = {key: worker for key, worker in cluster.ledger.finished if key in killed}
    assert set(rerun) == set(killed) and target not in rerun.values(), rerun  # the lost shards ran elsewhere
