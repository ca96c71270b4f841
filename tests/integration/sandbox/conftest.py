"""One sandbox under real uvicorn on a free loopback port for the whole session.

It needs nothing else from the embedded stack, so it does not use the `stack` fixture.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import date

import httpx
import pytest
import uvicorn

from marketpipe.sandbox import SandboxConfig, create_app

AS_OF = date(2024, 6, 28)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    port = _free_port()
    app = create_app(SandboxConfig(seed=42, as_of=AS_OF))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise RuntimeError("sandbox did not become healthy")
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def no_faults(sandbox_url: str) -> Iterator[str]:
    httpx.delete(f"{sandbox_url}/_sandbox/faults")
    yield sandbox_url
    httpx.delete(f"{sandbox_url}/_sandbox/faults")
