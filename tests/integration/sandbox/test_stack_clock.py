"""The stack starts its sandbox with ``sandbox.now`` (``--now``): the test stack pins it at the end
of the last closed session (tests/support/stack.py), so every test sees finished sessions whatever
the wall clock says when CI runs, and no session closes between that instant and the wall clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import httpx

from core.calendar import nyse_sessions
from core.settings import Settings


def test_the_stacks_sandbox_runs_on_the_configured_pinned_clock(stack: Settings) -> None:
    assert stack.sandbox.now == os.environ["MARKETPIPE_SANDBOX__NOW"]
    clock = httpx.get(f"{stack.sandbox.base_url}/_sandbox/clock", timeout=10).json()

    pinned = datetime.fromisoformat(clock["now"])
    assert clock["pinned"] is True
    assert pinned == datetime.fromisoformat(stack.sandbox.now)
    wall = datetime.now(UTC)
    assert pinned <= wall
    between = nyse_sessions(pinned.date(), wall.date())
    closes_between = [c for c in between.close_ns if pinned.timestamp() * 1e9 < c <= wall.timestamp() * 1e9]
    assert closes_between == []
