"""One sandbox under real uvicorn on a free loopback port for the whole session.

It needs nothing else from the embedded stack, so it does not use the `stack` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import httpx
import pytest

from tests.support.sandbox import running_sandbox

AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with running_sandbox(seed=42, as_of=AS_OF) as url:
        yield url


@pytest.fixture
def no_faults(sandbox_url: str) -> Iterator[str]:
    httpx.delete(f"{sandbox_url}/_sandbox/faults")
    yield sandbox_url
    httpx.delete(f"{sandbox_url}/_sandbox/faults")
