"""The stream's writer on the real database: one transaction per micro-batch, idempotent on replay,
provisional bars flagged and never watermarked, closed bars announced to `subscribe_bars`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import RequestError
from core.model import BARS, QUOTES, TRADES, frame
from storage.hot import read_bars, upsert_bars
from storage.quotes import read_quotes
from storage.streams import (
    PROVISIONAL,
    Announcement,
    RemovedBar,
    bars_channel,
    commit_stream_batch,
    subscribe_bars,
)
from storage.trades import read_trades
from storage.watermarks import read_watermarks
from tests.support.stack import REPO

T0 = pd.Timestamp("2026-11-30 14:31", tz="UTC")
BIN = Path(sys.executable).parent


def trades_of(symbol: str, n: int = 4) -> pd.DataFrame:
    ts = [T0 + pd.Timedelta(seconds=10 * i) for i in range(n)]
    return frame(
        TRADES,
        {
            "symbol": [symbol] * n,
            "ts": ts,
            "price": [100.0 + i / 100 for i in range(n)],
            "size": [100 * (i + 1) for i in range(n)],
            "exchange": ["4"] * n,
            "trade_id": [f"t{i}" for i in range(n)],
            "conditions": ["12,37"] * n,
            "tape": ["C"] * n,
            "source": ["polygon"] * n,
        },
        what="test trades",
    )


def quotes_of(symbol: str) -> pd.DataFrame:
    return frame(
        QUOTES,
        {
            "symbol": [symbol, symbol],
            "ts": [T0, T0 + pd.Timedelta(seconds=1)],
            "bid_price": [99.99, 100.0],
            "bid_size": [2, 3],
            "bid_exchange": ["11", "11"],
            "ask_price": [100.01, 100.02],
            "ask_size": [1, 5],
            "ask_exchange": ["12", "12"],
            "conditions": ["1", "1"],
            "tape": ["C", "C"],
            "source": ["polygon", "polygon"],
        },
        what="test quotes",
    )


def bar_of(symbol: str, close: float, volume: int = 1000) -> pd.DataFrame:
    return frame(
        BARS,
        {
            "symbol": [symbol],
            "ts": [T0],
            "timeframe": ["1min"],
            "open": [100.0],
            "high": [max(100.5, close)],
            "low": [99.5],
            "close": [close],
            "volume": [volume],
            "vwap": [100.1],
            "trade_count": [4],
            "source": ["polygon"],
        },
        what="test bar",
    )


def flags(conn, symbol: str) -> list[int]:
    rows = conn.execute(
        "SELECT quality_flags FROM market.bars_intraday WHERE symbol = %s AND timeframe = '1min' ORDER BY ts", (symbol,)
    ).fetchall()
    return [r[0] for r in rows]


def test_replayed_batch_changes_nothing_and_provisional_bars_never_advance_a_watermark(conn, symbols):
    sym = symbols()
    first = commit_stream_batch(
        conn, trades=trades_of(sym), quotes=quotes_of(sym), provisional_bars=bar_of(sym, close=100.2)
    )
    assert (first.trades.inserted, first.quotes.inserted, first.provisional_bars.inserted) == (4, 2, 1)
    assert flags(conn, sym) == [PROVISIONAL]
    marks = read_watermarks(conn, symbols=[sym])
    assert {k[1] for k in marks} == {"trades", "quotes"}  # no bars watermark for a forming bar
    assert first.announcements == ()

    again = commit_stream_batch(conn, trades=trades_of(sym), quotes=quotes_of(sym))
    assert (again.trades.changed, again.quotes.changed) == (0, 0)
    assert (again.trades.unchanged, again.quotes.unchanged) == (4, 2)
    assert len(read_trades(conn, [sym], T0, T0 + pd.Timedelta(minutes=1))) == 4
    assert len(read_quotes(conn, [sym], T0, T0 + pd.Timedelta(minutes=1))) == 2

    final = commit_stream_batch(conn, final_bars=bar_of(sym, close=100.3, volume=1000))
    assert final.final_bars.updated == 1  # the forming bar became the final one, in place
    assert flags(conn, sym) == [0]
    stored = read_bars(conn, [sym], T0, T0 + pd.Timedelta(minutes=1), "1min")
    assert stored["close"].tolist() == [100.3]
    marks = read_watermarks(conn, symbols=[sym], dataset="bars")
    assert [m.high_water_ts for m in marks.values()] == [T0.to_pydatetime()]
    assert [(a.timeframe, a.symbols) for a in final.announcements] == [("1min", (sym,))]
    # the scanners' latest bar follows the committed stream bar in the same transaction
    latest = conn.execute(
        "SELECT ts, close FROM market.latest_bars WHERE symbol = %s AND timeframe = '1min'", (sym,)
    ).fetchone()
    assert latest is not None and (pd.Timestamp(latest[0]), latest[1]) == (T0, 100.3)


def test_rows_stored_behind_an_open_gap_move_the_trades_and_bars_watermarks_up_to_it_only(conn, symbols):
    """A hybrid stream stores what it read after a catch-up that failed (marks_until: the open
    span's start): the rows are stored, the trades and bars watermarks move up to the limit and no
    further (the next run's catch-up starts there), the quotes watermark moves (quotes have no
    catch-up)."""
    sym = symbols()
    commit_stream_batch(conn, trades=trades_of(sym, 1), final_bars=bar_of(sym, close=100.2))
    before = read_watermarks(conn, symbols=[sym])

    later = trades_of(sym, 4)
    later_bar = bar_of(sym, close=100.3).assign(ts=T0 + pd.Timedelta(minutes=1))
    held = {k: m.high_water_ts for k, m in before.items()}
    until = {(k[1], k[2]): pd.Timestamp(ts) for k, ts in held.items()}
    commit_stream_batch(conn, trades=later, quotes=quotes_of(sym), final_bars=later_bar, marks_until=until)

    after = read_watermarks(conn, symbols=[sym])
    assert {k: m for k, m in after.items() if k[1] in ("trades", "bars")} == before
    assert {k[1] for k in after} == {"trades", "bars", "quotes"}
    assert len(read_trades(conn, [sym], T0, T0 + pd.Timedelta(minutes=1))) == 4
    assert read_bars(conn, [sym], T0, T0 + pd.Timedelta(minutes=2), "1min")["close"].tolist() == [100.2, 100.3]

    limit = max(later["ts"]) - pd.Timedelta(milliseconds=1)  # an open span starting before the newest trade
    commit_stream_batch(conn, trades=later, marks_until={("trades", sym): limit})
    moved = read_watermarks(conn, symbols=[sym], dataset="trades")
    assert [pd.Timestamp(m.high_water_ts) for m in moved.values()] == [limit]


def test_a_failing_batch_writes_nothing(conn, symbols):
    sym = symbols()
    bad = bar_of(sym, close=100.0)
    bad["timeframe"] = "7min"  # refused by the table's timeframe check
    with pytest.raises(Exception, match="timeframe"):
        commit_stream_batch(conn, trades=trades_of(sym), final_bars=bad)
    assert read_trades(conn, [sym], T0, T0 + pd.Timedelta(minutes=1)).empty
    assert read_watermarks(conn, symbols=[sym]) == {}


def test_subscribers_get_the_closed_bars_of_their_symbols_as_they_commit(stack, conn, symbols):
    mine, other = symbols(), symbols()

    async def scenario() -> list[pd.DataFrame]:
        ready = asyncio.Event()
        got: list[pd.DataFrame] = []

        async def listen() -> None:
            async for bars in subscribe_bars(stack, [mine], "1min", ready=ready):
                got.append(bars)
                if len(got) == 2:
                    return

        task = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.to_thread(commit_stream_batch, conn, provisional_bars=bar_of(mine, close=1.0))
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(other, close=2.0))
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=100.3))
        late = bar_of(mine, close=100.4, volume=1100)  # a late trade corrects the closed bar
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=late)
        await asyncio.wait_for(task, 20)
        return got

    got = asyncio.run(scenario())
    assert [b["symbol"].tolist() for b in got] == [[mine], [mine]]
    assert [b["close"].tolist() for b in got] == [[100.3], [100.4]]
    assert got[1]["volume"].tolist() == [1100]


def test_announcement_payload_stays_under_the_notify_limit():
    many = tuple(f"S{i:05d}" for i in range(5000))
    note = Announcement("polygon", "1min", T0, T0, many)
    parsed = Announcement.parse(note.payload())
    assert parsed.symbols is None and parsed.start == T0
    few = Announcement.parse(Announcement("polygon", "5s", T0, T0, ("AAPL",)).payload())
    assert few.symbols == ("AAPL",)
    assert bars_channel("5s") == "marketpipe_bars_5s" and bars_channel("60s") == "marketpipe_bars_1min"
    assert np.int64(PROVISIONAL) == 256


def test_a_bar_whose_trades_were_all_cancelled_is_deleted_with_its_source_only(conn, symbols):
    sym = symbols()
    commit_stream_batch(conn, final_bars=bar_of(sym, close=100.3))
    other = bar_of(sym, close=100.3)
    other["source"] = "alpaca"
    other["ts"] = T0 + pd.Timedelta(minutes=1)
    commit_stream_batch(conn, final_bars=other)
    commit_stream_batch(conn, removed_bars=pd.concat([bar_of(sym, close=0.0), other.assign(source="polygon")]))
    rows = conn.execute("SELECT ts, source FROM market.bars_intraday WHERE symbol = %s ORDER BY ts", (sym,)).fetchall()
    assert [(pd.Timestamp(ts), src) for ts, src in rows] == [(T0 + pd.Timedelta(minutes=1), "alpaca")]


def test_a_subscriber_gets_each_changed_bar_once_not_the_announced_ranges_other_bars(stack, conn, symbols):
    mine, other = symbols(), symbols()
    t1 = T0 + pd.Timedelta(minutes=1)

    async def scenario() -> list[pd.DataFrame]:
        ready, first = asyncio.Event(), asyncio.Event()
        got: list[pd.DataFrame] = []

        async def listen() -> None:
            async for bars in subscribe_bars(stack, [mine, other], "1min", ready=ready):
                got.append(bars)
                first.set()
                if len(got) == 2:
                    return

        task = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 10)
        both = pd.concat([bar_of(mine, close=100.3), bar_of(mine, close=100.5).assign(ts=t1)], ignore_index=True)
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=both)
        # the first frame read before the correction commits (a frame holds each bar's values when
        # it is read: read after the correction, it showed 100.4 already, and the test failed on a
        # loaded machine)
        await asyncio.wait_for(first.wait(), 20)
        # a correction of mine's first minute and a new minute of other's: the announced range is
        # T0..t1 for both symbols, but only these two bars changed
        changed = pd.concat([bar_of(mine, close=100.4), bar_of(other, close=7.0).assign(ts=t1)], ignore_index=True)
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=changed)
        await asyncio.wait_for(task, 20)
        return got

    got = asyncio.run(scenario())
    assert [list(zip(b["symbol"], b["ts"], b["close"], strict=True)) for b in got] == [
        [(mine, T0, 100.3), (mine, t1, 100.5)],
        [(mine, T0, 100.4), (other, t1, 7.0)],
    ]
    assert got[0].attrs["seq"] < got[1].attrs["seq"]


def test_a_subscriber_resumes_from_its_change_number_without_loss_or_duplicates(stack, conn, symbols):
    mine = symbols()
    minute = [T0 + pd.Timedelta(minutes=i) for i in range(4)]

    async def first(count: int, since: int | None, commits: list[pd.DataFrame]) -> list[pd.DataFrame]:
        """Subscribe (from ``since``), commit ``commits`` once listening, take ``count`` frames."""
        ready = asyncio.Event()
        got: list[pd.DataFrame] = []

        async def listen() -> None:
            async for bars in subscribe_bars(stack, [mine], "1min", since=since, ready=ready):
                got.append(bars)
                if len(got) == count:
                    return

        task = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 10)
        for bars in commits:
            await asyncio.to_thread(commit_stream_batch, conn, final_bars=bars)
        await asyncio.wait_for(task, 20)
        return got

    seen = asyncio.run(first(1, None, [bar_of(mine, close=1.0)]))  # then its connection is lost
    cursor = seen[-1].attrs["seq"]
    for i, close in ((1, 2.0), (2, 3.0)):  # committed while no one listens
        commit_stream_batch(conn, final_bars=bar_of(mine, close=close).assign(ts=minute[i]))
    resumed = asyncio.run(first(2, cursor, [bar_of(mine, close=4.0).assign(ts=minute[3])]))

    delivered = [(ts, close) for b in seen + resumed for ts, close in zip(b["ts"], b["close"], strict=True)]
    assert delivered == [(minute[0], 1.0), (minute[1], 2.0), (minute[2], 3.0), (minute[3], 4.0)]


def resume(stack, symbol: str, since: int) -> list[pd.DataFrame]:
    """Subscribe from ``since`` and take what it yields before the first announcement."""

    async def scenario() -> list[pd.DataFrame]:
        got: list[pd.DataFrame] = []
        ready = asyncio.Event()

        async def listen() -> None:
            async for bars in subscribe_bars(stack, [symbol], "1min", since=since, ready=ready):
                got.append(bars)
                return

        await asyncio.wait_for(listen(), 20)
        return got

    return asyncio.run(scenario())


def last_change(conn) -> int:
    return conn.execute("SELECT max(seq) FROM ops.bar_changes").fetchone()[0]


def test_a_subscriber_resuming_from_changes_past_the_retention_is_told_not_left_with_a_hole(stack, conn, symbols):
    mine = symbols()
    minute = [T0 + pd.Timedelta(minutes=i) for i in range(3)]
    commit_stream_batch(conn, final_bars=bar_of(mine, close=1.0))
    cursor = last_change(conn)  # the subscriber's last frame; then it is away for more than a day
    commit_stream_batch(conn, final_bars=bar_of(mine, close=2.0).assign(ts=minute[1]))
    # older than the retention: the next commit deletes them, the change after the cursor with them
    conn.execute(
        "UPDATE ops.bar_changes SET committed_at = now() - interval '2 days' WHERE seq <= %s", (last_change(conn),)
    )
    commit_stream_batch(conn, final_bars=bar_of(mine, close=3.0).assign(ts=minute[2]))
    newest = last_change(conn)

    with pytest.raises(RequestError) as refused:
        resume(stack, mine, cursor)
    text = str(refused.value)
    assert f"since={cursor}: the changes after it are no longer kept" in text
    assert f"to {newest}" in text and "subscribe again without since" in text


def test_a_subscriber_resuming_above_the_last_change_number_is_told_the_database_went_back(stack, conn, symbols):
    mine = symbols()
    commit_stream_batch(conn, final_bars=bar_of(mine, close=1.0))
    newest = last_change(conn)
    ahead = newest + 1000  # a number read before a restore or a failover to a standby behind

    with pytest.raises(RequestError) as refused:
        resume(stack, mine, ahead)
    text = str(refused.value)
    assert f"since={ahead}: above the last change number of ops.bar_changes ({newest})" in text
    assert "subscribe again without since" in text
    # a number still kept resumes as before
    assert [list(b["close"]) for b in resume(stack, mine, newest - 1)] == [[1.0]]


def test_a_subscriber_whose_symbols_did_not_change_still_has_a_number_to_resume_from(stack, conn, symbols):
    """Only another symbol's bars were announced: no frame carried a number, yet the subscription's
    ``seq`` moved past them, so a bar committed after its connection was lost is not missed."""
    mine, other = symbols(), symbols()

    async def scenario() -> int | None:
        ready = asyncio.Event()
        subscription = subscribe_bars(stack, [mine], "1min", ready=ready)
        waiting = asyncio.create_task(anext(subscription))  # never answered: mine does not change
        await asyncio.wait_for(ready.wait(), 10)
        note = (await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(other, close=2.0))).announcements
        for _ in range(2000):  # bounded: until the subscriber has read the announcement
            if subscription.seq == note[0].seq:
                break
            await asyncio.sleep(0.01)
        waiting.cancel()  # then its connection is lost
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return subscription.seq

    cursor = asyncio.run(scenario())
    assert cursor is not None and cursor == last_change(conn)
    commit_stream_batch(conn, final_bars=bar_of(mine, close=1.0))  # while no one listens
    resumed = resume(stack, mine, cursor)
    assert [list(zip(b["symbol"], b["close"], strict=True)) for b in resumed] == [[(mine, 1.0)]]


def test_a_replayed_batch_is_not_announced_again(stack, conn, symbols):
    mine = symbols()
    t1 = T0 + pd.Timedelta(minutes=1)

    async def scenario() -> tuple[list[pd.DataFrame], tuple[Announcement, ...]]:
        ready = asyncio.Event()
        got: list[pd.DataFrame] = []

        async def listen() -> None:
            async for bars in subscribe_bars(stack, [mine], "1min", ready=ready):
                got.append(bars)
                if t1 in set(bars["ts"]):
                    return

        task = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=100.3))
        # the same batch again (a reconnect replays it): the stored bar does not change
        replay = await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=100.3))
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=100.5).assign(ts=t1))
        await asyncio.wait_for(task, 20)
        return got, replay.announcements

    got, replayed = asyncio.run(scenario())
    assert replayed == ()
    assert [list(zip(b["ts"], b["close"], strict=True)) for b in got] == [[(T0, 100.3)], [(t1, 100.5)]]


def test_a_removed_bar_is_announced_as_removed(stack, conn, symbols):
    """Every counted trade of a closed bar's window was cancelled: the stream deletes the bar, and a
    listener holding it is told (``attrs["removed"]``) instead of keeping a bar the store lost."""
    mine = symbols()
    t1 = T0 + pd.Timedelta(minutes=1)

    async def scenario() -> list[pd.DataFrame]:
        ready, first = asyncio.Event(), asyncio.Event()
        got: list[pd.DataFrame] = []

        async def listen() -> None:
            async for bars in subscribe_bars(stack, [mine], "1min", ready=ready):
                got.append(bars)
                first.set()
                if t1 in set(bars["ts"]):
                    return

        task = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=100.3))
        await asyncio.wait_for(first.wait(), 20)  # read before it is removed
        await asyncio.to_thread(commit_stream_batch, conn, removed_bars=bar_of(mine, close=100.3))
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=100.5).assign(ts=t1))
        await asyncio.wait_for(task, 20)
        return got

    got = asyncio.run(scenario())
    assert [(list(zip(b["ts"], b["close"], strict=True)), b.attrs.get("removed")) for b in got] == [
        ([(T0, 100.3)], ()),
        ([], (RemovedBar(mine, "1min", T0, "polygon"),)),
        ([(t1, 100.5)], ()),
    ]


def test_a_removed_bar_another_vendor_still_has_is_announced_as_that_vendors_bar(stack, conn, symbols):
    """The stream's bar is removed while another vendor's bar of its key is kept apart (it ranked
    after the stream's): that bar is served in its place, and a listener holding the stream's bar
    gets it as the bar's new values, not a removal that would leave it without the bar."""
    mine = symbols()
    batch = bar_of(mine, close=99.0).assign(source="alpaca")
    upsert_bars(conn, batch)  # the batch path: kept apart once the stream's (polygon) bar comes

    async def scenario() -> list[pd.DataFrame]:
        ready, first = asyncio.Event(), asyncio.Event()
        got: list[pd.DataFrame] = []

        async def listen() -> None:
            async for bars in subscribe_bars(stack, [mine], "1min", ready=ready):
                got.append(bars)
                first.set()
                if len(got) == 2:
                    return

        task = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=100.3))
        await asyncio.wait_for(first.wait(), 20)
        await asyncio.to_thread(commit_stream_batch, conn, removed_bars=bar_of(mine, close=100.3))
        await asyncio.wait_for(task, 20)
        return got

    got = asyncio.run(scenario())
    assert [(list(zip(b["ts"], b["close"], b["source"], strict=True)), b.attrs.get("removed")) for b in got] == [
        ([(T0, 100.3, "polygon")], ()),
        ([(T0, 99.0, "alpaca")], ()),
    ]


def tail_connections(conn, name: str, listening: bool = False) -> list[int]:
    """The backends of a `marketpipe stream tail` started with PGAPPNAME=``name`` (its listener only)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND (NOT %s OR query LIKE 'LISTEN%%')",
        (name, listening),
    ).fetchall()
    return [r[0] for r in rows]


def test_stream_tail_reconnects_after_losing_its_database_connection_and_misses_nothing(stack, conn, symbols):
    """Both of the tail's connections are terminated (as a PostgreSQL restart ends them) and a bar is
    committed before it is back: it reconnects from the change it reached and prints both bars."""
    mine = symbols()
    t1 = T0 + pd.Timedelta(minutes=1)
    name = f"tail-{mine}"
    tail = subprocess.Popen(
        [str(BIN / "marketpipe"), "stream", "tail", "--symbols", mine, "--count", "2", "--reconnect-for", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PGAPPNAME": name},
        cwd=REPO,
    )
    try:
        for _ in range(600):  # bounded: until the tail listens
            if tail_connections(conn, name, listening=True) or tail.poll() is not None:
                break
            time.sleep(0.05)
        commit_stream_batch(conn, final_bars=bar_of(mine, close=100.3))
        dropped = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest(%s::int[]) AS pid",
            (tail_connections(conn, name),),
        ).fetchone()[0]
        commit_stream_batch(conn, final_bars=bar_of(mine, close=100.5).assign(ts=t1))
        out, err = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert dropped == 2
    assert tail.returncode == 0, err[-3000:]
    printed = [line.split() for line in out.strip().splitlines()]
    assert [(p[1], p[2], p[10], p[11]) for p in printed] == [
        ("14:31:00", mine, "c", "100.3000"),
        ("14:32:00", mine, "c", "100.5000"),
    ]
    assert "reconnecting in" in err and "tail stopped at change" in err


def age_changes(conn, upto: int) -> None:
    """Make the changes up to ``upto`` older than the retention: the next commit deletes them."""
    conn.execute("UPDATE ops.bar_changes SET committed_at = now() - interval '2 days' WHERE seq <= %s", (upto,))


def test_a_subscriber_resumes_across_a_gap_in_the_numbers_when_only_changes_before_it_were_deleted(
    stack, conn, symbols
):
    """A number drawn by a commit that rolled back is never logged: after ``since`` comes a gap,
    and the retention deleted ``since`` and what preceded it, nothing after it. Nothing is missing."""
    mine = symbols()
    commit_stream_batch(conn, final_bars=bar_of(mine, close=1.0))
    cursor = last_change(conn)
    conn.execute("SELECT nextval('ops.bar_change_seq')")  # as a rolled-back commit draws one
    age_changes(conn, cursor)
    commit_stream_batch(conn, final_bars=bar_of(mine, close=2.0).assign(ts=T0 + pd.Timedelta(minutes=1)))
    assert conn.execute("SELECT min(seq) FROM ops.bar_changes").fetchone()[0] == cursor + 2

    assert [list(b["close"]) for b in resume(stack, mine, cursor)] == [[2.0]]


def test_a_subscriber_whose_frames_were_not_taken_past_the_retention_is_told_not_left_with_a_hole(stack, conn, symbols):
    """The subscriber stops taking frames; a change of its symbol is deleted by the retention before
    it reads on: it is told, not handed the next bars as if nothing were missing."""
    mine = symbols()
    minute = [T0 + pd.Timedelta(minutes=i) for i in range(3)]

    async def scenario() -> tuple[list[pd.DataFrame], BaseException | None]:
        ready = asyncio.Event()
        subscription = subscribe_bars(stack, [mine], "1min", ready=ready)
        taking = asyncio.create_task(anext(subscription))
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=1.0))
        got = [await asyncio.wait_for(taking, 20)]  # then no frame is asked for a while
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=2.0).assign(ts=minute[1]))
        await asyncio.to_thread(age_changes, conn, last_change(conn))
        await asyncio.to_thread(commit_stream_batch, conn, final_bars=bar_of(mine, close=3.0).assign(ts=minute[2]))
        try:
            got.append(await asyncio.wait_for(anext(subscription), 20))
        except RequestError as exc:
            return got, exc
        finally:
            await subscription.aclose()
        return got, None

    got, refused = asyncio.run(scenario())
    assert [list(b["close"]) for b in got] == [[1.0]]
    assert refused is not None, "the frame after the deleted change was yielded as if nothing were missing"
    reached = got[0].attrs["seq"]
    assert f"the subscription reached change {reached} and its frames were not taken for 1 day" in str(refused)
    assert f"changes up to {reached + 1} are deleted" in str(refused)
