"""Stopping a worker for good: its whole process group, not only the process the test started.

`marketpipe worker` runs `prefect worker start` as a child, which runs flow-run processes. The
wrapper can exit on SIGTERM while the Prefect worker is still shutting down; a worker that lingers
keeps polling the pool and takes the next test's runs. So wait until no process of the group is
left, and kill the group when the grace period ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


def stop_process_group(process: subprocess.Popen, grace_seconds: float = 15) -> None:
    """SIGTERM to the group of ``process`` (started with ``start_new_session=True``), then wait for
    every member to exit; SIGKILL to what is left after ``grace_seconds``."""
    group = process.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        process.wait(timeout=5)
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or the group never looks empty
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    process.wait(timeout=5)
