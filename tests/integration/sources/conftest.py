"""The market sandbox under real uvicorn on a free loopback port, shared by the source tests
(the clients built against it: tests/support/vendors.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.sandbox import running_sandbox
from tests.support.vendors import AS_OF


@pytest.fixture(scope="session")
def sandbox() -> Iterator[str]:
    with running_sandbox(seed=7, as_of=AS_OF) as url:
        yield url


@pytest.fixture
def sandbox_url(sandbox: str) -> Iterator[str]:
    """The sandbox with no faults and fresh statistics, restored afterwards."""
    httpx.delete(f"{sandbox}/_sandbox/faults")
    httpx.delete(f"{sandbox}/_sandbox/stats")
    yield sandbox
    httpx.delete(f"{sandbox}/_sandbox/faults")
