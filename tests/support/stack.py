"""Coordinates for an embedded stack of the tests: free loopback ports and the MARKETPIPE_*
environment that points a stack (and the ``marketpipe`` console script) at a private state dir."""

from __future__ import annotations

import random
import secrets
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from core.calendar import nyse_sessions

REPO = Path(__file__).resolve().parents[2]
GRPC_OFFSET = 10000


def free_port(avoid: set[int]) -> int:
    """A free loopback port whose gRPC twin (port + GRPC_OFFSET, used by the lake) is free too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid and port + GRPC_OFFSET <= 65535 and bindable(port + GRPC_OFFSET):
            avoid.add(port)
            return port


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block(avoid: set[int], size: int = 4) -> int:
    """A base port with size consecutive free ports (and their gRPC twins).

    The search starts at a random place so that test sessions running side by side (developers'
    machines) do not all reach for the same block before either has started its stack.
    """
    first = random.randrange(20000, 30000)
    for base in [*range(first, 40000 - size, 7), *range(20000, first, 7)]:
        ports = range(base, base + size)
        if any(p in avoid for p in ports):
            continue
        if all(bindable(p) and bindable(p + GRPC_OFFSET) for p in ports):
            avoid.update(ports)
            return base
    raise RuntimeError("no free block of ports for the test lake")


def settled_market_instant(now: datetime) -> datetime:
    """The instant the test stack's sandbox is pinned at: ``now`` when no session is under way,
    else the end (New York) of the last day whose session has closed. Tests then see every
    session complete and none forming, whatever the wall clock says when CI runs (a run at 11:00
    New York would otherwise see today's session half served, and a later fetch in the same test
    see more of it); no session closes between the pin and ``now``, so wall-clock counts of
    closed sessions agree with what the sandbox serves."""
    new_york = ZoneInfo("America/New_York")
    today = now.astimezone(new_york).date()
    schedule = nyse_sessions(today - timedelta(days=14), today)
    now_ns = int(now.timestamp() * 1e9)
    closed = [(d, c) for d, c in zip(schedule.dates, schedule.close_ns, strict=True) if c <= now_ns]
    last_day = closed[-1][0].astype(object)
    end_of_last_day = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), new_york) - timedelta(
        microseconds=1
    )
    return min(now, end_of_last_day.astimezone(UTC))


def stack_environment(state_dir: Path, bucket: str = "marketpipe-test-lake") -> dict[str, str]:
    """The environment of a stack in ``state_dir`` on free, non-default ports with fresh secrets."""
    used: set[int] = set()
    env = {
        "MARKETPIPE_STATE_DIR": str(state_dir),
        "MARKETPIPE_DATABASE__PORT": str(free_port(used)),
        "MARKETPIPE_DATABASE__PASSWORD": secrets.token_hex(16),
        "MARKETPIPE_LAKE__PORT": str(free_port(used)),
        "MARKETPIPE_LAKE__INTERNAL_PORT_BASE": str(free_block(used)),
        "MARKETPIPE_LAKE__SECRET_KEY": secrets.token_hex(20),
        "MARKETPIPE_LAKE__BUCKET": bucket,
        "MARKETPIPE_PREFECT__PORT": str(free_port(used)),
        "MARKETPIPE_SANDBOX__PORT": str(free_port(used)),
        "MARKETPIPE_SANDBOX__NOW": settled_market_instant(datetime.now(UTC)).isoformat(),
        "MARKETPIPE_ENV_FILE": str(state_dir / "no.env"),
        "MARKETPIPE_CONFIG": str(REPO / "config" / "data_pipeline_config.yaml"),
        # Developers run several sessions side by side on small machines; Prefect's first start
        # (its own migrations) can then take longer than the 60 s default.
        "MARKETPIPE_STARTUP_TIMEOUT_SECONDS": "240",
        "PREFECT_HOME": str(state_dir / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{env['MARKETPIPE_PREFECT__PORT']}/api"
    # The server requires it; in-process Prefect clients of the tests read Prefect's own variable.
    env["MARKETPIPE_PREFECT__AUTH_STRING"] = env["PREFECT_API_AUTH_STRING"] = f"marketpipe:{secrets.token_hex(16)}"
    return env
