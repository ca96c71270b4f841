"""Test-session wiring: the tiers, the session's embedded stack, and the fixtures every tier shares.

The directory says the tier: tests/unit (no services), tests/integration (the real embedded stack,
lake, Prefect server, sandbox), tests/ops (kill -9, restarts, two workers, a browser; the seed's
stress run in tests/performance counts as ops). The
``unit``/``integration``/``ops`` markers are added from the path below, so ``-m unit`` and
``-m 'not ops'`` select tiers; ``slow`` (full benchmarks) is marked by hand and excluded by default.

The session talks to one embedded stack started on free, non-default ports in a temporary state
directory. Its coordinates travel in MARKETPIPE_* environment variables set in ``pytest_configure``
(before any test module imports Prefect, whose settings are read at import), so in-process code and
``marketpipe`` subprocesses see the same stack. The ``stack`` fixture starts it on first use and
stops it at the end of the session; a unit-only session never starts it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.stack import REPO, stack_environment
from tests.support.stack_watch import StackWatch

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "ops")
# tests/performance holds the seed's stress run under the path its guide gives
# (`pytest tests/performance/test_integration_pipeline_stress.py`); it is an ops test.
TIER_OF_DIRECTORY = {**{tier: tier for tier in TIERS}, "performance": "ops"}

# Tables holding rows keyed by symbol that the tests write; the ``symbols`` fixture deletes its
# symbols' rows from each (bars first: latest_bars follows them by trigger).
SYMBOL_TABLES = (
    "market.bars_intraday",
    "market.bars_daily",
    "market.latest_bars",
    "market.vendor_bars_intraday",
    "market.vendor_bars_daily",
    "market.corporate_actions",
    "market.trades",
    "market.quotes",
    "features.bar_features",
    "features.bar_feature_values",
    "ops.watermarks",
)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("MARKETPIPE_TEST_STACK_READY"):
        return
    state_dir = Path(tempfile.mkdtemp(prefix="marketpipe-test-", dir="/tmp"))
    state_dir.chmod(0o755)  # the cluster's OS user must traverse it
    os.environ.update({**stack_environment(state_dir), "MARKETPIPE_TEST_STACK_READY": "1"})
    config.stash[_STATE_DIR] = state_dir
    config.stash[_WATCH] = StackWatch(state_dir)


_STATE_DIR = pytest.StashKey[Path]()
_WATCH = pytest.StashKey[StackWatch]()


@pytest.hookimpl(trylast=True)  # after the test's fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Note a process of the session's stack that stopped during this test (tests/support/stack_watch.py)."""
    watch = item.config.stash.get(_WATCH, None)
    if watch is not None:
        watch.check(item.nodeid)


@pytest.hookimpl(trylast=True)  # after the durations, right above the short summary: the tail CI shows
def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    watch = config.stash.get(_WATCH, None)
    if watch is not None and watch.stopped:
        terminalreporter.section("stack processes that stopped during the session")
        for line in watch.report():
            terminalreporter.write_line(line)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, taken from its directory (tests/<tier>/...)."""
    for item in items:
        parts = Path(item.path).resolve().relative_to(TESTS).parts
        tier = TIER_OF_DIRECTORY.get(parts[0]) if len(parts) > 1 else None
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test lives under tests/unit, tests/integration or tests/ops")
        item.add_marker(tier)


def pytest_unconfigure(config: pytest.Config) -> None:
    state_dir = config.stash.get(_STATE_DIR, None)
    if state_dir is None:
        return
    if any(state_dir.iterdir()):  # something of the stack was started
        from loguru import logger

        from core.settings import load_settings
        from stack.supervisor import Stack

        logger.remove()  # sinks set up during the session point at pytest's closed capture streams
        logger.add(sys.__stderr__, level="WARNING")
        Stack(load_settings()).down()
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack():
    """The running embedded stack; yields its Settings."""
    from core.settings import load_settings
    from stack.supervisor import Stack

    settings = load_settings()
    Stack(settings).up()
    return settings


@pytest.fixture
def conn(stack) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the session's database."""
    from db.connect import database_connection

    with database_connection(stack, autocommit=True) as connection:
        yield connection


@pytest.fixture
def lake(stack):
    """The session's lake (each tiering test writes its bars in a year of its own: tests/support/tiering.py)."""
    from storage.lake import Lake

    return Lake.from_settings(stack.lake)


@pytest.fixture
def symbols(stack) -> Iterator[Callable[[], str]]:
    """A factory of symbols no other test uses; their rows are deleted at teardown (cold rows
    written to the session's lake stay there)."""
    from db.connect import database_connection

    made: list[str] = []

    def make() -> str:
        made.append(f"T{uuid.uuid4().hex[:8].upper()}")
        return made[-1]

    yield make
    if made:
        with database_connection(stack, autocommit=True) as cleanup:
            for table in SYMBOL_TABLES:
                cleanup.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (made,))  # type: ignore[arg-type]


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


@pytest.fixture
def private_cluster(stack) -> Iterator[tuple]:
    """A second embedded cluster with the project's schema, for tests that restart PostgreSQL (the
    session's cluster also serves the Prefect server's database); yields (settings pointing at it,
    its EmbeddedPostgres)."""
    import socket

    from db.connect import database_connection
    from db.migrate import migrate
    from stack.postgres import EmbeddedPostgres

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state_dir = Path(tempfile.mkdtemp(prefix="marketpipe-restart-", dir="/tmp"))
    state_dir.chmod(0o755)  # the cluster's OS user must traverse it
    database = stack.database.model_copy(update={"port": port})
    settings = stack.model_copy(update={"database": database})
    server = EmbeddedPostgres(database, state_dir)
    try:
        server.init()
        server.start()
        server.bootstrap()
        with database_connection(settings) as conn:
            migrate(conn)
        yield settings, server
    finally:
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
