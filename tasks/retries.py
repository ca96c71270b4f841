"""Retry policies shared by the flows' tasks.

Only a lost database connection is retried here: a restarted or failed-over PostgreSQL comes back
within seconds, and every task that writes does so in one transaction per symbol (rolled back when
the connection drops; news stores its story vectors in the next one, and what that one leaves owed
is queued for the flows' story-vectors step), so running the task again on a new connection is safe. Vendor errors have
their own retries inside the sources; data errors are not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from db.connect import connection_lost

T = TypeVar("T")
logger = logging.getLogger(__name__)

DATABASE_RETRIES = 5
DATABASE_RETRY_DELAYS_SECONDS = [1, 2, 4, 8, 16]  # about 30 s: a restart or a fast failover


def retry_on_lost_database(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is a lost database connection."""
    data = getattr(state, "data", None)
    return isinstance(data, BaseException) and connection_lost(data)


DATABASE_RETRY_OPTIONS: dict[str, Any] = {
    "retries": DATABASE_RETRIES,
    "retry_delay_seconds": DATABASE_RETRY_DELAYS_SECONDS,
    "retry_condition_fn": retry_on_lost_database,
}


async def retrying_on_lost_database(
    work: Callable[[], Awaitable[T]], what: str, delays: list[int] = DATABASE_RETRY_DELAYS_SECONDS
) -> T:
    """``work()``, run again after each delay while it fails on a lost database connection: the
    same policy as :data:`DATABASE_RETRY_OPTIONS`, for one item of a task that handles several
    (one symbol of a wave), so a lost connection repeats that item's work, not the whole task's."""
    for attempt, delay in enumerate([*delays, None], start=1):
        try:
            return await work()
        except Exception as exc:
            if delay is None or not connection_lost(exc):
                raise
            cause = " ".join(str(exc).split())
            _run_logger().warning(
                "%s lost its database connection (%s: %s); retrying in %d s (attempt %d of %d)",
                what,
                type(exc).__name__,
                cause,
                delay,
                attempt,
                len(delays) + 1,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _run_logger() -> Any:
    """The Prefect run's logger inside a run (the message reaches the UI and the CLI), else this module's."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logger
