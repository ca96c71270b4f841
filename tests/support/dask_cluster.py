"""A Dask cluster for the scale-out tests: a ledger of what its scheduler was sent and where each
task finished, and `dask worker` processes started (in a network namespace, say) and killed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cloudpickle
from distributed.diagnostics.plugin import SchedulerPlugin

from tests.support.processes import stop_process_group

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class ShardLedger(SchedulerPlugin):
    """Added to an in-process scheduler: every submitted task's parameters and its whole pickled
    spec (what crossed the wire), and the worker each task finished on."""

    name = "shard-ledger"

    def __init__(self) -> None:
        self.parameters: list[dict[str, Any]] = []
        self.wire: list[bytes] = []
        self.finished: list[tuple[str, str]] = []

    def update_graph(self, scheduler: Any, *, keys: set[Any], **kwargs: Any) -> None:
        for key in keys:
            spec = scheduler.tasks[key].run_spec
            self.parameters.append(dict(spec.kwargs.get("parameters") or {}))
            self.wire.append(cloudpickle.dumps(spec))

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory" and kwargs.get("worker"):
            self.finished.append((str(key), str(kwargs["worker"])))


def executing(dask_worker: Any) -> list[str]:
    """Run on a worker (``Client.run``): the keys of the tasks it is executing right now."""
    return [str(task.key) for task in dask_worker.state.executing]


@contextmanager
def dask_worker(
    scheduler: str, name: str, log: Path, prefix: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """`dask worker SCHEDULER` (one process, one thread) as its own process group, under ``prefix``
    (``ip netns exec NS``); stopped, group and all, when the block ends."""
    argv = [*prefix, str(BIN / "dask"), "worker", scheduler, "--name", name, "--nthreads", "1", "--nworkers", "1"]
    argv.append("--no-dashboard")
    full_env = {**os.environ, "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        stop_process_group(process, grace_seconds=10)
