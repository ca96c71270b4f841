"""Reads go to the read replica, writes stay on the primary, and a read that needs fresher data
than the replica has (the caller's bound) goes to the primary. Lag is made deterministic by pausing
the standby's replay (pg_wal_replay_pause) after it received a write it then does not apply."""

from __future__ import annotations

import asyncio
import json
import uuid

import pandas as pd
import pytest

from core.settings import Settings
from db.connect import database_connection
from db.replica import primary_lsn, read_connection, replica_connection, replica_state
from storage.hot import upsert_bars
from storage.router import StorageRouter
from storage.streams import commit_stream_batch, subscribe_bars
from tests.support.replica import ReplicaStack, cli, received, replay_paused, replayed, wait_for
from tests.support.storage import bars

LAG_SECONDS = 0.05  # the paused replica is made to lag at least this much; bounds below it refuse it


def recent_minute() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").floor("min") - pd.Timedelta(hours=1)


def new_symbol() -> str:
    return f"R{uuid.uuid4().hex[:8].upper()}"


def write_bar(settings: Settings, symbol: str, ts: pd.Timestamp) -> str:
    """One 1-minute bar of ``symbol`` on the primary; the primary's LSN after its commit."""
    with database_connection(settings, autocommit=True) as conn:
        upsert_bars(conn, bars(symbol, 1, start=str(ts.tz_convert(None))))
        return primary_lsn(conn)


def lagging(settings: Settings, lsn: str) -> None:
    """Wait until the paused replica received ``lsn`` and lags more than LAG_SECONDS."""
    wait_for(f"the replica receiving {lsn}", lambda: received(settings, lsn))

    def lag() -> bool:
        with replica_connection(settings, autocommit=True) as conn:
            state = replica_state(conn, lsn)
        assert state.min_lsn_replayed is False  # paused: received, not applied
        return state.lag_seconds is not None and state.lag_seconds > LAG_SECONDS

    wait_for("the replica lagging", lag)


def port_of(router: StorageRouter) -> int:
    return int(router.conn.info.port)


def test_reads_go_to_the_replica_and_a_fresher_bound_goes_to_the_primary(replica_stack: ReplicaStack) -> None:
    settings = replica_stack.settings
    replica_port, primary_port = settings.database.read_replica.port, settings.database.port
    symbol, ts = new_symbol(), recent_minute()
    end = ts + pd.Timedelta(minutes=1)
    first = write_bar(settings, symbol, ts - pd.Timedelta(minutes=5))
    wait_for("the replica replaying the first bar", lambda: replayed(settings, first))
    with StorageRouter.connect(settings) as router:
        assert port_of(router) == replica_port
        assert len(router.read_bars([symbol], ts - pd.Timedelta(minutes=10), end, "1min")) == 1

    with replay_paused(settings):
        lsn = write_bar(settings, symbol, ts)
        lagging(settings, lsn)

        with StorageRouter.connect(settings, max_staleness_seconds=3600) as router:  # stale is fine
            assert port_of(router) == replica_port
            assert router.read_bars([symbol], ts, end, "1min").empty
        with StorageRouter.connect(settings, min_lsn=lsn) as router:  # read-your-writes
            assert port_of(router) == primary_port
            assert router.read_bars([symbol], ts, end, "1min")["ts"].tolist() == [ts]
        with StorageRouter.connect(settings, max_staleness_seconds=LAG_SECONDS / 5) as router:
            assert port_of(router) == primary_port
            assert len(router.read_bars([symbol], ts, end, "1min")) == 1
        with read_connection(settings, autocommit=True, max_staleness_seconds=3600) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)

    wait_for("the replica replaying the second bar", lambda: replayed(settings, lsn))
    with StorageRouter.connect(settings, min_lsn=lsn) as router:
        assert port_of(router) == replica_port
        assert router.read_bars([symbol], ts, end, "1min")["ts"].tolist() == [ts]


def scanned(stack: ReplicaStack, symbol: str, max_lag_seconds: float) -> bool:
    env = {**stack.env, "MARKETPIPE_DATABASE__READ_REPLICA__MAX_LAG_SECONDS": str(max_lag_seconds)}
    result = cli(env, "scan", "latest", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return symbol in {row["symbol"] for row in json.loads(result.stdout)}


def test_the_scanners_read_the_replica_within_their_lag_bound(replica_stack: ReplicaStack) -> None:
    settings = replica_stack.settings
    symbol = new_symbol()
    with replay_paused(settings):
        lagging(settings, write_bar(settings, symbol, recent_minute()))
        assert not scanned(replica_stack, symbol, max_lag_seconds=3600)  # the replica, behind
        assert scanned(replica_stack, symbol, max_lag_seconds=LAG_SECONDS / 5)  # too far behind: primary
    wait_for("the replica catching up", lambda: scanned(replica_stack, symbol, max_lag_seconds=3600))


@pytest.mark.parametrize("paused", [False, True])
def test_subscribers_read_announced_bars_from_the_replica_once_it_replayed_them(
    replica_stack: ReplicaStack, paused: bool
) -> None:
    settings = replica_stack.settings
    if paused:  # it cannot catch up: the announced bars come from the primary at once
        replica = settings.database.read_replica.model_copy(update={"catch_up_wait_seconds": 0.0})
        database = settings.database.model_copy(update={"read_replica": replica})
        settings = settings.model_copy(update={"database": database})
    symbol, ts = new_symbol(), recent_minute()
    bar = bars(symbol, 1, start=str(ts.tz_convert(None)), source="polygon", close=100.3)

    async def scenario() -> pd.DataFrame:
        ready = asyncio.Event()

        async def first() -> pd.DataFrame:
            async for frame in subscribe_bars(settings, [symbol], "1min", ready=ready):
                return frame
            raise AssertionError("the subscription ended")

        task = asyncio.create_task(first())
        await asyncio.wait_for(ready.wait(), 30)
        with database_connection(settings, autocommit=True) as conn:
            await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar)
        return await asyncio.wait_for(task, 60)

    if paused:
        with replay_paused(settings):
            got = asyncio.run(scenario())
    else:
        got = asyncio.run(scenario())
    assert got.attrs["read_from"] == ("primary" if paused else "replica")
    assert got["symbol"].tolist() == [symbol] and got["close"].tolist() == [100.3]
