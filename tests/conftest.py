"""Test-session wiring.

The whole session talks to one embedded stack started on free, non-default ports in a temporary
state directory. Its coordinates travel in MARKETPIPE_* environment variables set in
``pytest_configure`` (before any test module imports Prefect, whose settings are read at import),
so in-process code and ``marketpipe`` subprocesses see the same stack. The ``stack`` fixture starts
it on first use and stops it at the end of the session.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GRPC_OFFSET = 10000


def _free_port(avoid: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid and port + GRPC_OFFSET <= 65535 and _bindable(port + GRPC_OFFSET):
            avoid.add(port)
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_block(avoid: set[int], size: int = 4) -> int:
    """A base port with size consecutive free ports (and their gRPC twins).

    The search starts at a random place so that test sessions running side by side (developers'
    machines) do not all reach for the same block before either has started its stack.
    """
    first = random.randrange(20000, 30000)
    for base in [*range(first, 40000 - size, 7), *range(20000, first, 7)]:
        ports = range(base, base + size)
        if any(p in avoid for p in ports):
            continue
        if all(_bindable(p) and _bindable(p + GRPC_OFFSET) for p in ports):
            avoid.update(ports)
            return base
    raise RuntimeError("no free block of ports for the test lake")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("MARKETPIPE_TEST_STACK_READY"):
        return
    state_dir = Path(tempfile.mkdtemp(prefix="marketpipe-test-", dir="/tmp"))
    state_dir.chmod(0o755)  # the cluster's OS user must traverse it
    used: set[int] = set()
    env = {
        "MARKETPIPE_STATE_DIR": str(state_dir),
        "MARKETPIPE_DATABASE__PORT": str(_free_port(used)),
        "MARKETPIPE_DATABASE__PASSWORD": secrets.token_hex(16),
        "MARKETPIPE_LAKE__PORT": str(_free_port(used)),
        "MARKETPIPE_LAKE__INTERNAL_PORT_BASE": str(_free_block(used)),
        "MARKETPIPE_LAKE__SECRET_KEY": secrets.token_hex(20),
        "MARKETPIPE_LAKE__BUCKET": "marketpipe-test-lake",
        "MARKETPIPE_PREFECT__PORT": str(_free_port(used)),
        "MARKETPIPE_SANDBOX__PORT": str(_free_port(used)),
        "MARKETPIPE_ENV_FILE": str(state_dir / "no.env"),
        "MARKETPIPE_CONFIG": str(REPO / "config" / "data_pipeline_config.yaml"),
        "MARKETPIPE_TEST_STACK_READY": "1",
        # Developers run several sessions side by side on small machines; Prefect's first start
        # (its own migrations) can then take longer than the 60 s default.
        "MARKETPIPE_STARTUP_TIMEOUT_SECONDS": "240",
        "PREFECT_HOME": str(state_dir / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{env['MARKETPIPE_PREFECT__PORT']}/api"
    os.environ.update(env)
    config.stash[_STATE_DIR] = state_dir


_STATE_DIR = pytest.StashKey[Path]()


def pytest_unconfigure(config: pytest.Config) -> None:
    state_dir = config.stash.get(_STATE_DIR, None)
    if state_dir is None:
        return
    from loguru import logger

    from stack.supervisor import Stack
    from core.settings import load_settings

    logger.remove()  # sinks set up during the session point at pytest's closed capture streams
    logger.add(sys.__stderr__, level="WARNING")
    Stack(load_settings()).down()
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack():
    """The running embedded stack; yields its Settings."""
    from stack.supervisor import Stack
    from core.settings import load_settings

    settings = load_settings()
    Stack(settings).up()
    return settings


@pytest.fixture
def marketpipe_cli() -> Iterator:
    """Run the real console script in a subprocess; returns CompletedProcess."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(sys.executable).parent / "marketpipe"), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            cwd=REPO,
        )

    yield run
