"""The replica tests' primary and standby (tests/support/replica.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from tests.support.replica import ReplicaStack, cli, environment, replica_environment


@pytest.fixture(scope="session")
def replica_stack(stack: Settings) -> Iterator[ReplicaStack]:
    """A cluster of its own with a streaming read replica, started by `marketpipe up --replica`."""
    from stack.supervisor import Stack

    state_dir = Path(tempfile.mkdtemp(prefix="marketpipe-replica-", dir="/tmp"))
    state_dir.chmod(0o755)  # the cluster's OS user must traverse it
    env = replica_environment(stack, state_dir)
    try:
        up = cli(env, "up", "--replica")
        assert up.returncode == 0, up.stdout + up.stderr
        with environment(env):
            settings = load_settings()
        yield ReplicaStack(settings, env, up)
    finally:
        with environment(env):
            Stack(load_settings()).down()
        shutil.rmtree(state_dir, ignore_errors=True)
