"""Running the sandbox as a process: `serve()` blocks under uvicorn until interrupted."""

from __future__ import annotations

from datetime import date, datetime

import uvicorn

from sandbox.app import create_app
from sandbox.config import SandboxConfig


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 42,
    as_of: date | None = None,
    log_level: str = "warning",
    now: datetime | None = None,
) -> None:
    """Serve one market on host:port; health-check it at GET /_sandbox/health.

    uvicorn's Date header is off: the app sends its market clock's instant as the Date.
    """
    app = create_app(SandboxConfig(seed=seed, as_of=as_of, now=now))
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, date_header=False)
