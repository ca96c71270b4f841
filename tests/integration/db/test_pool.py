"""The run's connection pool (db.pool) against the session's database: a connection is reused,
handed out as a new one would be, never reused after a failure, and a lost server drops the idle
ones so a retry gets a working connection."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import psycopg
import pytest

from db.pool import AsyncConnectionPool, ConnectionPool
from tasks.resources import RunResources


def backend_pid(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def alive(conn: psycopg.Connection, pid: int) -> bool:
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 1


def gone(conn: psycopg.Connection, pid: int) -> bool:
    """The backend has exited (a closed client's backend leaves pg_stat_activity a moment later:
    waited for, at most 5 s)."""
    for _ in range(100):
        if not alive(conn, pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def scratch_table(conn):
    name = f"pool_test_{secrets.token_hex(4)}"
    conn.execute(f"CREATE TABLE public.{name} (x int)")
    yield f"public.{name}"
    conn.execute(f"DROP TABLE public.{name}")


def test_a_connection_is_reused_and_handed_out_fresh(stack, conn, scratch_table):
    pool = ConnectionPool(stack, keep=2)
    try:
        with pool.connection(autocommit=True) as first:
            pid = backend_pid(first)
        with pool.connection() as second:
            assert backend_pid(second) == pid  # the same backend: no new connection
            assert second.autocommit is False  # as asked, not as the last user left it
            second.execute(f"INSERT INTO {scratch_table} VALUES (1)")
            assert second.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        # Leaving the block committed: another session sees the row.
        assert conn.execute(f"SELECT count(*) FROM {scratch_table}").fetchone()[0] == 1
        assert pool.opened == 1
    finally:
        pool.close()
    assert gone(conn, pid)  # closing the pool closed its idle connection


def test_a_failed_block_rolls_back_and_its_connection_is_not_reused(stack, conn, scratch_table):
    pool = ConnectionPool(stack, keep=2)
    try:
        with pytest.raises(ValueError, match="bad row"), pool.connection() as failing:
            pid = backend_pid(failing)
            failing.execute(f"INSERT INTO {scratch_table} VALUES (1)")
            raise ValueError("bad row")
        assert failing.closed
        assert conn.execute(f"SELECT count(*) FROM {scratch_table}").fetchone()[0] == 0
        with pool.connection() as next_one:
            assert backend_pid(next_one) != pid
        assert pool.opened == 2
    finally:
        pool.close()


def test_at_most_keep_idle_connections_are_kept(stack, conn):
    pool = ConnectionPool(stack, keep=2)
    try:
        with pool.connection() as a, pool.connection() as b, pool.connection() as c:
            pids = {backend_pid(x) for x in (a, b, c)}
        assert len(pids) == 3 and pool.opened == 3
        with pool.connection() as a, pool.connection() as b, pool.connection() as c:
            assert len({backend_pid(x) for x in (a, b, c)} & pids) == 2  # two kept, the third closed
        assert pool.opened == 4
    finally:
        pool.close()


def test_a_lost_server_connection_drops_the_idle_ones(stack, conn):
    """After a restart every idle connection is dead: the first failure empties the pool, so the
    retry (tasks.retries) works on a new connection instead of failing on the next dead one."""
    pool = ConnectionPool(stack, keep=3)
    try:
        with pool.connection() as a, pool.connection() as b, pool.connection() as c:
            pids = [backend_pid(x) for x in (a, b, c)]
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        with pytest.raises(psycopg.OperationalError), pool.connection() as dead:
            dead.execute("SELECT 1")
        with pool.connection() as retry:
            assert retry.execute("SELECT 1").fetchone() == (1,)
            assert backend_pid(retry) not in pids
        assert pool.opened == 4
    finally:
        pool.close()


def test_threads_share_the_pool_without_sharing_a_connection(stack):
    pool = ConnectionPool(stack, keep=4)
    in_use: set[int] = set()
    clashes: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            with pool.connection() as c:
                pid = backend_pid(c)
                with lock:
                    if pid in in_use:
                        clashes.append(pid)
                    in_use.add(pid)
                c.execute("SELECT pg_sleep(0.001)")
                with lock:
                    in_use.discard(pid)

    threads = [threading.Thread(target=work) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert clashes == []
        assert pool.opened <= 4  # 80 units of work on at most one connection per thread
    finally:
        pool.close()


def test_a_closed_pool_refuses_and_closes_what_comes_back(stack):
    pool = ConnectionPool(stack, keep=2)
    with pool.connection() as held:
        pool.close()
        held.execute("SELECT 1")
    assert held.closed
    with pytest.raises(RuntimeError, match="closed"), pool.connection():
        pass


def test_the_async_pool_reuses_within_its_loop(stack, conn):
    async def scenario() -> tuple[int, int, int, int]:
        pool = AsyncConnectionPool(stack, keep=2)
        try:
            async with pool.connection(autocommit=True) as first:
                pid = (await (await first.execute("SELECT pg_backend_pid()")).fetchone())[0]
            async with pool.connection() as second:
                again = (await (await second.execute("SELECT pg_backend_pid()")).fetchone())[0]
                assert second.autocommit is False
            with pytest.raises(ValueError):
                async with pool.connection() as failing:
                    raise ValueError("boom")
            assert failing.closed
            async with pool.connection() as third:
                other = (await (await third.execute("SELECT pg_backend_pid()")).fetchone())[0]
            return pid, again, other, pool.opened
        finally:
            await pool.close()

    pid, again, other, opened = asyncio.run(scenario())
    assert again == pid and other != pid and opened == 2
    assert gone(conn, other)


def test_run_resources_reuse_one_connection_and_close_it(stack, conn):
    with RunResources.from_settings(stack) as resources:
        with resources.connect() as first:
            pid = backend_pid(first)
        with resources.connect(autocommit=True) as second:
            assert backend_pid(second) == pid and second.autocommit
        with resources.router() as router:
            assert router is not None
    assert gone(conn, pid)
