"""The stream's database connection never blocks for ever: a statement stuck behind a lock is
cancelled at ``streaming.database_statement_timeout_seconds`` and the service reopens its connection
and retries, as after a lost one; TCP keepalives are on."""

from __future__ import annotations

import random
import time

import psycopg
import pytest

from core.settings import Settings
from db.connect import connection_lost, database_connection
from streaming.service import StreamPlan, StreamService, database_lost


def stream_service(stack: Settings, timeout_s: float) -> StreamService:
    streaming = stack.streaming.model_copy(update={"database_statement_timeout_seconds": timeout_s})
    return StreamService(stack.model_copy(update={"streaming": streaming}), StreamPlan("polygon", ("AAPL",)))


def test_a_statement_stuck_behind_a_lock_is_cancelled_and_taken_for_a_lost_connection(stack: Settings) -> None:
    service = stream_service(stack, 0.5)
    key = random.getrandbits(62)  # an advisory lock of this test's own
    with (
        database_connection(stack, autocommit=True) as holder,
        database_connection(stack, autocommit=True, **service._session) as stream,
    ):
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            started = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled) as raised:
                stream.execute("SELECT pg_advisory_lock(%s)", (key,))
            waited = time.monotonic() - started
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
        params = stream.info.get_parameters()
    assert 0.4 < waited < 5.0
    assert database_lost(raised.value)  # the stream reopens its connection and retries
    assert not connection_lost(raised.value)  # elsewhere a cancelled statement is the work's failure
    assert params.get("keepalives") == "1" and params.get("tcp_user_timeout") == "30000"
