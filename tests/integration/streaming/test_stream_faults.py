"""Bad input on a live stream: a tenth of the frames malformed. Each is dead-lettered with its raw
text (visible in `marketpipe dlq list`), and the stream goes on storing the good ones."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from urllib.parse import urlencode

import pytest

from core.settings import Settings
from db.connect import database_connection
from streaming.service import StreamPlan, StreamService
from tests.support.streaming import SESSION, delete_symbols, new_symbols


@pytest.fixture
def fault_symbols(stack: Settings):
    names = new_symbols("MF")
    yield names
    delete_symbols(stack, names)
    with database_connection(stack, autocommit=True) as conn:
        conn.execute("DELETE FROM ops.dead_letters WHERE dataset = 'stream' AND request->>'feed' = %s", (names[0],))


def test_malformed_frames_are_dead_lettered_and_the_stream_goes_on(stack: Settings, fault_symbols) -> None:
    query = {"session": SESSION, "from": "10:00", "speed": 600, "malformed": 0.1, "clock": uuid.uuid4().hex}
    url = stack.sandbox.base_url.replace("http://", "ws://") + "/stocks?" + urlencode(query)
    # the feed names the test's dead letters (Polygon has no feeds: it only labels the request)
    plan = StreamPlan.of("polygon", fault_symbols, ("trades",), url=url, feed=fault_symbols[0])

    async def scenario():
        service = StreamService(stack, plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        for _ in range(300):  # bounded: until enough frames were dead-lettered and trades kept coming
            if service.report.dead >= 5 and service.report.trades > 100:
                break
            await asyncio.sleep(0.2)
        stop.set()
        return await asyncio.wait_for(runner, 60)

    report = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert report.dead >= 5 and report.trades > 100 and report.connects == 1  # never reconnected for it
    with database_connection(stack) as conn:
        letters = conn.execute(
            "SELECT error, payload #>> '{}' FROM ops.dead_letters WHERE source = 'polygon' AND dataset = 'stream'"
            " AND request->>'feed' = %s",
            (fault_symbols[0],),
        ).fetchall()
    assert len(letters) >= 5
    assert all(payload and '"ev"' in payload for _, payload in letters)  # the raw frame, cut short


def test_a_trade_stamped_an_hour_ahead_is_dead_lettered_and_the_windows_go_on(stack: Settings, fault_symbols) -> None:
    """The sandbox stamps one trade an hour after the wall clock (its ``future_after`` fault). Let
    through, it would be the windows' event clock: every open minute final at once, every later trade
    too late. It is dead-lettered with the reason, and minutes keep closing with every trade counted."""
    query = {"session": SESSION, "from": "10:00", "speed": 600, "future_after": 300, "clock": uuid.uuid4().hex}
    url = stack.sandbox.base_url.replace("http://", "ws://") + "/stocks?" + urlencode(query)
    plan = StreamPlan.of("polygon", fault_symbols, ("trades",), url=url, feed=fault_symbols[0])

    async def scenario():
        service = StreamService(stack, plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        for _ in range(300):  # bounded: until the bad print came and minutes closed well after it
            if service.report.dead >= 1 and service.report.final_bars > 40:
                break
            await asyncio.sleep(0.2)
        stop.set()
        return await asyncio.wait_for(runner, 60)

    report = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert (report.dead, report.connection["future_events"], report.late_trades) == (1, 1, 0)
    assert report.final_bars > 40
    with database_connection(stack) as conn:
        letters = conn.execute(
            "SELECT error, payload #>> '{}' FROM ops.dead_letters WHERE source = 'polygon' AND dataset = 'stream'"
            " AND request->>'feed' = %s",
            (fault_symbols[0],),
        ).fetchall()
        newest = conn.execute("SELECT max(ts) FROM market.trades WHERE symbol = ANY(%s)", (fault_symbols,)).fetchone()
    assert len(letters) == 1 and letters[0][0].startswith("bad timestamp: trade of ")
    assert '"kind":"trade"' in letters[0][1]
    assert newest is not None and newest[0].year == 2024  # the bad print was not stored


def test_a_trades_only_stream_builds_its_own_window_and_minute_bars(stack: Settings, fault_symbols) -> None:
    """Without the vendor's bars the windows build them: 5 s bars beside 1-minute bars whose open,
    high, low, close, volume and count are the REST minute bars' (the sandbox draws its REST VWAP
    independently of the trades, so VWAP is not compared)."""
    import pandas as pd

    from sources.factory import build_source

    query = {"session": SESSION, "from": "10:00", "speed": 600, "clock": uuid.uuid4().hex}
    url = stack.sandbox.base_url.replace("http://", "ws://") + "/stocks?" + urlencode(query)
    settings = stack.model_copy(update={"streaming": stack.streaming.model_copy(update={"window_seconds": 5.0})})
    plan = StreamPlan.of("polygon", fault_symbols, ("trades",), url=url)

    async def scenario():
        service = StreamService(settings, plan)
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        for _ in range(300):  # bounded: a few market minutes of final bars
            if service.report.final_bars > 200:  # 5 s and 1 min bars: about 9 market minutes
                break
            await asyncio.sleep(0.2)
        stop.set()
        return await asyncio.wait_for(runner, 60)

    asyncio.run(asyncio.wait_for(scenario(), 120))
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT symbol, timeframe, ts, open, high, low, close, volume, trade_count FROM market.bars_intraday"
            " WHERE symbol = ANY(%s) AND quality_flags = 0 ORDER BY symbol, timeframe, ts",
            (fault_symbols,),
        ).fetchall()
    stored = pd.DataFrame(rows, columns=["symbol", "timeframe", "ts", "open", "high", "low", "close", "volume", "n"])
    assert set(stored["timeframe"]) == {"5s", "1min"}
    minutes = stored[stored["timeframe"] == "1min"].drop(columns="timeframe").reset_index(drop=True)
    # the stream started and stopped mid-minute: its first and last minutes are partial
    by_symbol = minutes.groupby("symbol")["ts"]
    inner = (minutes["ts"] > by_symbol.transform("min")) & (minutes["ts"] < by_symbol.transform("max"))
    minutes = minutes[inner].reset_index(drop=True)
    assert len(minutes) >= 4

    async def rest():
        async with build_source("polygon", stack) as source:
            parts = [
                await source.client.aggregates(
                    s,
                    minutes["ts"].min(),
                    minutes["ts"].max() + pd.Timedelta(minutes=1),
                    timeframe="1min",
                    adjusted=False,
                )
                for s in fault_symbols
            ]
        return pd.concat(parts, ignore_index=True)

    served = asyncio.run(rest()).rename(columns={"trade_count": "n"})
    served["ts"] = served["ts"].astype("datetime64[us, UTC]")
    minutes["ts"] = pd.to_datetime(minutes["ts"], utc=True).astype("datetime64[us, UTC]")
    merged = minutes.merge(served, on=["symbol", "ts"], suffixes=("", "_rest"))
    assert len(merged) == len(minutes)
    for column in ("open", "high", "low", "close", "volume", "n"):
        assert (merged[column] == merged[f"{column}_rest"]).all(), column


def test_spilled_frames_land_in_the_lakes_raw_zone_replayable(stack: Settings, lake) -> None:
    import gzip

    from sources.polygon.stream import parse_frames

    frames = [
        b'[{"ev":"T","sym":"SPLA","i":"1","x":4,"p":10.5,"s":100,"t":1717421400000,"q":1,"z":3}]',
        b'[{"ev":"T","sym":"SPLA","i":"2","x":4,"p":10.6,"s":200,"t":1717421400001,"q":2,"z":3}]',
    ]
    prefix = "raw/source=polygon/dataset=stream/"
    before = {o.key for o in lake.list(prefix)}
    StreamService(stack, StreamPlan.of("polygon", ["SPLA"], ("trades",))).spill_frames(frames)
    (key,) = {o.key for o in lake.list(prefix)} - before
    replayed = gzip.decompress(lake.get_bytes(key)).split(b"\n")
    assert replayed == frames
    trades = parse_frames(replayed, [0, 0]).trades  # the same parser reads them back
    assert trades["trade_id"].tolist() == ["1", "2"] and trades["size"].tolist() == [100, 200]


def test_a_stream_that_never_connects_keeps_its_status_row_and_is_a_health_issue(stack: Settings) -> None:
    """Every connect refused (a wrong URL, the vendor down): no micro-batch ever comes, yet the status
    row is rewritten with ``connected`` false, the one heartbeat at the start arms the "stream stalled"
    automation (no other follows), and the health check names the stream."""
    import socket
    from datetime import timedelta

    from pipeline.health import stream_issues
    from storage.streams import read_stream_status

    with socket.socket() as probe:  # a loopback port nobody listens on: every connect is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tag = uuid.uuid4().hex[:12]
    # breakers kept in this process: the refused connects must not open the shared polygon breaker
    settings = stack.model_copy(
        update={"collection": stack.collection.model_copy(update={"circuit_share_refresh_seconds": 0.0})}
    )
    plan = StreamPlan.of("polygon", ["NEVERC"], ("trades",), url=f"ws://127.0.0.1:{port}/stocks", feed=tag)
    beats: list[int] = []
    service = StreamService(settings, plan, heartbeat=lambda report: beats.append(report.connects))

    def row():
        with database_connection(stack) as conn:
            return next((s for s in read_stream_status(conn) if s.stream == service.name), None)

    async def scenario():
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        seen = None
        for _ in range(60):  # bounded: until the status row was rewritten after the start
            await asyncio.sleep(0.5)
            seen = await asyncio.to_thread(row)
            if seen is not None and seen.updated_at - seen.started_at >= timedelta(seconds=4):
                break
        stop.set()
        await asyncio.wait_for(runner, 60)
        return seen

    try:
        seen = asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        with database_connection(stack, autocommit=True) as conn:
            conn.execute("DELETE FROM ops.stream_status WHERE stream = %s", (service.name,))
    assert seen is not None and seen.state == "running"
    assert seen.updated_at - seen.started_at >= timedelta(seconds=4)  # rewritten while unconnected
    assert seen.counters["connected"] is False and seen.counters["connects"] == 0
    assert seen.counters["last_error"] and seen.counters["unconnected_since"]
    assert beats == [0]  # one heartbeat, at the start
    later = datetime.fromisoformat(seen.counters["unconnected_since"]) + timedelta(seconds=61)
    (issue,) = stream_issues([seen], later)
    assert f"stream {service.name} has not connected since it started" in issue
