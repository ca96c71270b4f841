"""Circuit breakers shared across real OS processes through ops.circuit_breakers: a worker that
finds the vendor down (the sandbox's fault injection) opens the breaker for a worker already
running, which then sends the vendor nothing; ``marketpipe health`` (a third process) names the
open breaker and exits 1; the health flow raises the breaker-open alert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from core.settings import Settings
from tests.support.stack import REPO
from tests.support.vendors import set_faults

SOURCE = "polygon"
REAL_LOOKING_KEY = "pk_live_7Hq2mX9vR4tL8wZ3"
WORKER_ENV = {
    # A real-looking key (the sandbox takes any): it must appear in no breaker record nor report.
    f"MARKETPIPE_VENDORS__{SOURCE.upper()}__API_KEY": REAL_LOOKING_KEY,
    "MARKETPIPE_COLLECTION__CIRCUIT_FAILURE_THRESHOLD": "2",
    "MARKETPIPE_COLLECTION__CIRCUIT_COOLDOWN_SECONDS": "600",  # open for the whole test
    "MARKETPIPE_COLLECTION__RETRY_ATTEMPTS": "0",  # an open breaker fails at once, no back-off
}


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.support.breaker_worker", SOURCE, "AAPL", *args]


def worker_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **WORKER_ENV, **extra}


def vendor_requests(url: str) -> int:
    return int(httpx.get(f"{url}/_sandbox/stats").json()["vendors"].get(SOURCE, {}).get("total", 0))


@pytest.fixture
def vendor_down_later(stack: Settings, conn: psycopg.Connection) -> Iterator[str]:
    """The stack's sandbox without faults and no published breaker of the source, both restored after."""
    url = stack.sandbox.base_url
    httpx.delete(f"{url}/_sandbox/faults").raise_for_status()
    conn.execute("DELETE FROM ops.circuit_breakers WHERE source = %s", (SOURCE,))
    try:
        yield url
    finally:
        httpx.delete(f"{url}/_sandbox/faults")
        conn.execute("DELETE FROM ops.circuit_breakers WHERE source = %s", (SOURCE,))


def test_a_breaker_one_worker_opens_stops_another_and_health_names_it(
    stack: Settings, conn: psycopg.Connection, vendor_down_later: str, marketpipe_cli
) -> None:
    url = vendor_down_later
    # A long-lived worker: its first fetch succeeds, with its breaker closed. Its view of the
    # shared breakers is refreshed before every request (no waiting on a cache in the test).
    waiting = subprocess.Popen(
        worker_command("--wait"),
        env=worker_env(MARKETPIPE_COLLECTION__CIRCUIT_SHARE_REFRESH_SECONDS="0.001"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert waiting.stdout is not None and waiting.stdin is not None
        first = json.loads(waiting.stdout.readline())
        assert first["rows"] == 5 and first["breaker"]["state"] == "closed", first

        # The vendor goes down; another worker (process) finds out and opens the breaker.
        set_faults(url, rates={"server_error": 1.0}, vendors=[SOURCE])
        before = vendor_requests(url)
        finder = subprocess.run(  # one retry: two failures, the breaker's threshold
            worker_command(),
            env=worker_env(MARKETPIPE_COLLECTION__RETRY_ATTEMPTS="1"),
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert finder.returncode == 0, finder.stderr[-3000:]
        found = json.loads(finder.stdout)
        assert found["breaker"]["state"] == "open" and "circuit breaker" not in found["error"], found
        assert vendor_requests(url) == before + 2  # the two failures of its threshold

        record = conn.execute(
            "SELECT state, consecutive_failures, opened_at IS NOT NULL, last_error, written_by "
            "FROM ops.circuit_breakers WHERE source = %s",
            (SOURCE,),
        ).fetchone()
        assert record is not None
        state, failures, opened, last_error, written_by = record
        assert (state, failures, opened) == ("open", 2, True)
        assert "HTTP 5" in last_error and REAL_LOOKING_KEY not in last_error, last_error
        assert written_by.endswith(f":{found['pid']}")

        # The running worker now holds off without sending the vendor anything.
        waiting.stdin.write("again\n")
        waiting.stdin.flush()
        second = json.loads(waiting.stdout.readline())
        assert f"circuit breaker for {SOURCE} is open" in second["error"], second
        assert second["breaker"]["state"] == "open"
        assert vendor_requests(url) == before + 2
    finally:
        if waiting.stdin:
            waiting.stdin.close()
        waiting.wait(timeout=60)

    # `marketpipe health`, a third process, names the open breaker and why, and exits 1.
    health = marketpipe_cli("health", env=WORKER_ENV)
    assert health.returncode == 1, health.stdout + health.stderr
    assert health.stdout.startswith("UNHEALTHY")
    assert f"\n  {SOURCE:<10} OPEN " in health.stdout
    assert f"- the circuit breaker of {SOURCE} is open since " in health.stdout
    assert "after 2 consecutive failures" in health.stdout and "seen by " in health.stdout
    assert REAL_LOOKING_KEY not in health.stdout + health.stderr
    report = json.loads(marketpipe_cli("health", "--json").stdout)
    assert report["healthy"] is False and report["sources"][SOURCE]["state"] == "open"

    # The health flow raises the alert its automation reacts to.
    from flows.health import health_flow
    from pipeline.alerts import BREAKER_OPEN

    result = health_flow()
    alerts = [a for a in result["alerts"] if a["event"] == BREAKER_OPEN]
    assert [a["resource_id"] for a in alerts] == [f"marketpipe.source.{SOURCE}"]
    assert alerts[0]["message"].startswith(f"the circuit breaker of {SOURCE} is open since ")
    assert result["healthy"] is False
