"""streaming.service: what a micro-batch does to the hot store, through the service's one database
seam (``StreamService._db``) answered in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import psycopg
import pytest

from core.errors import RetryableSourceError, SourceError, StorageError
from core.model import TRADES, frame
from core.settings import Settings
from sources.polygon.stream import PROTOCOL
from storage.stream_gaps import record_gap_retry
from storage.streams import StreamCommit, commit_stream_batch, record_stream_status
from streaming.gaps import trades_catch_up_start
from streaming.service import (
    REFUSED_IN_A_ROW_LIMIT,
    StreamPlan,
    StreamService,
    overlaps_gaps,
)
from streaming.windows import BarWindows

T0_MS = 1_717_421_400_000  # 2024-06-03 13:30:00 UTC


class InMemoryStore(StreamService):
    """A stream service whose database is a list: commits are kept, or refused with ``refusals``
    (one error per commit, in order; None commits), and dead letters are kept."""

    def __init__(self, plan: StreamPlan, refusals: list[BaseException | None]) -> None:
        super().__init__(Settings(), plan)
        self.refusals = refusals
        self.committed: list[dict[str, Any]] = []
        self.letters: list[Any] = []
        self.statuses: list[str] = []
        self.status_error: BaseException | None = None
        self.gap_states: list[str] = []  # ops.stream_gaps: a span's state after each failed retry

    async def _db(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        if action is commit_stream_batch:
            refusal = self.refusals.pop(0) if self.refusals else None
            if refusal is not None:
                raise refusal
            self.committed.append(kwargs)
            return StreamCommit()
        if action == self._dead_letters:
            self.letters += list(args[0])
            return None
        if action is record_gap_retry:
            self.gap_states.append(kwargs["state"])
            return None
        assert action is record_stream_status
        if self.status_error is not None:
            raise self.status_error
        self.statuses.append(args[0].state)
        return None


class Stream:
    """The connection's side the service reads: its counters."""

    def stats(self) -> dict[str, Any]:
        return {}


def batch(*trade_ids: str, received_ns: int):
    messages = [{"ev": "T", "sym": "AAPL", "i": i, "x": 4, "p": 1.5, "s": 10, "t": T0_MS} for i in trade_ids]
    frames = [orjson.dumps([m]) for m in messages]
    received = [received_ns + n for n in range(len(frames))]
    parsed = PROTOCOL.parse_frames(frames, received)
    return replace(parsed, frames=tuple(frames), frames_received_ns=tuple(received))


def handle(service: StreamService, *batches: Any) -> None:
    async def scenario() -> None:
        windows = BarWindows(5, 2, source="polygon")
        for b in batches:
            await service._handle(b, windows, Stream())  # type: ignore[arg-type]

    asyncio.run(scenario())


def refused(text: str) -> StorageError:
    try:
        raise psycopg.DataError(text)
    except psycopg.DataError as exc:
        try:
            raise StorageError(f"cannot write to market.trades: {text}") from exc
        except StorageError as error:
            return error


def lost() -> StorageError:
    try:
        raise psycopg.OperationalError("server closed the connection unexpectedly")
    except psycopg.OperationalError as exc:
        try:
            raise StorageError("cannot write to market.trades") from exc
        except StorageError as error:
            return error


PLAN = StreamPlan("polygon", ("AAPL",), ("trades",))


def test_a_micro_batch_the_store_refuses_is_dead_lettered_as_its_frames_and_the_stream_goes_on(isolated):
    service = InMemoryStore(PLAN, [refused("invalid byte sequence for encoding UTF8: 0x00")])
    bad, good = batch("1\x00", "2", received_ns=100), batch("3", received_ns=200)

    handle(service, bad, good)

    assert [(letter.raw, letter.received_ns) for letter in service.letters] == list(
        zip(bad.frames, bad.frames_received_ns, strict=True)
    )
    assert all("refused the micro-batch" in letter.reason and "0x00" in letter.reason for letter in service.letters)
    assert [c["trades"]["trade_id"].tolist() for c in service.committed] == [["3"]]
    assert (service.report.refused_batches, service.report.dead, service.report.batches) == (1, 2, 2)


def test_a_lost_database_is_not_taken_for_bad_data(isolated):
    service = InMemoryStore(PLAN, [lost()])

    with pytest.raises(StorageError):
        handle(service, batch("1", received_ns=100))
    assert service.letters == []


def test_a_store_that_refuses_every_micro_batch_stops_the_stream(isolated):
    service = InMemoryStore(PLAN, [refused("permission denied")] * REFUSED_IN_A_ROW_LIMIT)
    batches = [batch(str(n), received_ns=n) for n in range(REFUSED_IN_A_ROW_LIMIT)]

    with pytest.raises(StorageError, match="permission denied"):
        handle(service, *batches)
    assert service.report.refused_batches == REFUSED_IN_A_ROW_LIMIT - 1


def test_the_vendors_error_events_are_counted_and_kept_not_dropped(isolated):
    from sources.alpaca.stream import PROTOCOL as ALPACA

    service = InMemoryStore(StreamPlan("alpaca", ("AAPL",), ("trades",)), [])
    frames = [orjson.dumps([{"T": "error", "code": 410, "msg": "invalid subscribe action for this feed"}])]

    handle(service, ALPACA.parse_frames(frames, [1]))

    assert service.report.vendor_errors == 1
    assert service.report.last_vendor_error == "invalid subscribe action for this feed (code 410)"
    assert service.report.as_dict()["last_vendor_error"] == service.report.last_vendor_error


def test_after_a_lost_database_the_stopped_status_is_not_waited_for(isolated):
    service = InMemoryStore(PLAN, [])

    asyncio.run(service._record_stopped(Stream(), lost()))

    assert service.statuses == []


def test_a_failing_stopped_status_does_not_replace_the_failure_that_stopped_the_stream(isolated):
    service = InMemoryStore(PLAN, [])
    service.status_error = refused("permission denied for table stream_status")

    asyncio.run(service._record_stopped(Stream(), RuntimeError("the stream's own failure")))

    with pytest.raises(StorageError, match="permission denied"):  # with nothing else failing, it is raised
        asyncio.run(service._record_stopped(Stream(), None))


def test_a_stream_that_ends_well_records_its_stopped_status(isolated):
    service = InMemoryStore(PLAN, [])

    asyncio.run(service._record_stopped(Stream(), None))

    assert service.statuses == ["stopped"]


# -- hybrid: where the REST catch-up starts ------------------------------------------------------

NY_OPEN = pd.Timestamp("2024-06-20 08:00", tz="UTC")  # 04:00 New York, the session's start
LATENESS = pd.Timedelta(seconds=2)


@pytest.mark.parametrize(
    ("mark", "widths", "start"),
    [
        ("14:05:30", (60.0,), "14:05:00"),  # the minute of the mark is the oldest still open
        ("14:05:01", (60.0,), "14:04:00"),  # within the lateness: the minute before is still open
        ("14:04:22", (45.0, 60.0), "14:03:45"),  # the epoch-aligned 45 s window of 14:04:20
        ("08:00:01", (60.0,), "08:00:00"),  # never before the session's start
    ],
)
def test_the_catch_up_starts_at_the_start_of_the_oldest_window_still_open(mark, widths, start):
    at = pd.Timestamp(f"2024-06-20 {mark}", tz="UTC")
    got = trades_catch_up_start(at, NY_OPEN, LATENESS, widths)
    assert got == pd.Timestamp(f"2024-06-20 {start}", tz="UTC")


def test_without_a_watermark_the_catch_up_starts_at_the_sessions_start():
    assert trades_catch_up_start(None, NY_OPEN, LATENESS) == NY_OPEN


def test_fresh_windows_fed_from_the_catch_up_start_finalize_only_complete_minutes():
    """A restart: the previous run stored trades up to 14:05:30 (and the 14:04 bar, final); a fresh
    BarWindows is fed the trades fetched from the catch-up start. No bar it finalizes may be a
    minute seen in part (it would overwrite the complete stored bar)."""
    ts = pd.date_range("2024-06-20 14:04:00", "2024-06-20 14:06:10", freq="500ms", tz="UTC")
    trades = frame(
        TRADES,
        {"symbol": "AAPL", "ts": ts, "price": 100.0, "size": 10, "exchange": "4",
         "trade_id": [str(i) for i in range(len(ts))], "conditions": None, "tape": "3", "source": "polygon"},
        what="test trades",
    )  # fmt: skip
    start = trades_catch_up_start(pd.Timestamp("2024-06-20 14:05:30", tz="UTC"), NY_OPEN, LATENESS)
    windows = BarWindows(60, LATENESS.total_seconds(), source="polygon")

    windows.add_trades(trades[trades["ts"] >= start])
    final = windows.advance(ts.max()).final

    complete = trades.groupby(trades["ts"].dt.floor("min"))["size"].sum()
    assert not final.empty
    assert [(bar.ts, bar.volume) for bar in final.itertuples()] == [(t, complete[t]) for t in final["ts"]]


@pytest.mark.parametrize(("feed", "rest_feed"), [(None, "iex"), ("iex", "iex"), ("sip", "sip"), ("test", None)])
def test_the_alpaca_catch_up_reads_the_feed_the_stream_reads(isolated, feed, rest_feed):
    from sources.factory import build_source

    plan = StreamPlan("alpaca", ("AAPL",), ("trades",), hybrid=True, feed=feed)

    source: Any = build_source("alpaca", Settings(), options=plan.rest_options())

    assert source.client.feed == rest_feed


def test_a_polygon_catch_up_has_no_feed_to_choose():
    assert StreamPlan("polygon", ("AAPL",), ("trades",), hybrid=True).rest_options() == {}


# -- without a catch-up: windows the stream saw in part -----------------------------------------


def test_bars_overlapping_a_gap_are_the_ones_whose_window_holds_part_of_it():
    bars = pd.DataFrame(
        {
            "ts": pd.to_datetime(["14:04:00", "14:05:00", "14:06:00", "14:06:05", "14:06:10"], format="%H:%M:%S"),
            "timeframe": ["1min", "1min", "1min", "5s", "5s"],
        }
    )
    gap = (pd.Timestamp("1900-01-01 14:05:59"), pd.Timestamp("1900-01-01 14:06:07"))

    assert overlaps_gaps(bars, [gap]).tolist() == [False, True, True, True, False]


def trade_batch(seconds: Sequence[float], received_ns: int, first_id: int = 0):
    """One frame per trade at T0 + ``seconds``, all received at ``received_ns``."""
    frames = [
        orjson.dumps([{"ev": "T", "sym": "AAPL", "i": str(first_id + n), "x": 4, "p": 1.5, "s": 10,
                       "t": T0_MS + round(s * 1000)}])
        for n, s in enumerate(seconds)
    ]  # fmt: skip
    return PROTOCOL.parse_frames(frames, [received_ns] * len(frames))


def minutes(frames: list[pd.DataFrame | None]) -> list[str]:
    parts = [f for f in frames if f is not None and not f.empty]
    bars = pd.concat(parts) if parts else pd.DataFrame({"ts": [], "timeframe": []})
    return sorted(f"{ts:%H:%M}" for ts in bars[bars["timeframe"] == "1min"]["ts"])


def test_without_a_catch_up_the_minutes_around_a_start_or_a_reconnect_are_never_final(isolated):
    service = InMemoryStore(StreamPlan("polygon", ("AAPL",), ("trades",)), [])
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))  # the start: 13:30:58 is the first trade seen
        await service._handle(trade_batch(np.arange(58, 130, 0.5), 150), windows, Stream())
        service._connected(SimpleNamespace(at_ns=300))  # a drop: nothing from 13:32:09.5 to 13:34:30
        await service._handle(trade_batch(np.arange(270, 370, 0.5), 350, 1000), windows, Stream())

    asyncio.run(scenario())

    final = minutes([c.get("final_bars") for c in service.committed])
    provisional = minutes([c.get("provisional_bars") for c in service.committed])
    assert final == ["13:31", "13:35"]  # 13:30, 13:32 and 13:34 were seen in part
    assert {"13:30", "13:32", "13:34"} <= set(provisional)


# -- hybrid: gaps recorded when they happen, caught up in the background ------------------------


class RestTape:
    """The vendor's REST API a catch-up reads (the service's ``_rest_source`` seam): the trades of
    ``tape``; past the first ``free`` requests, while ``gate`` is not set, a request waits for it
    (a catch-up in flight)."""

    def __init__(self, tape: pd.DataFrame, gate: asyncio.Event | None = None, free: int = 0) -> None:
        self.client = self
        self.tape = tape
        self.gate = gate
        self.free = free
        self.asked: list[tuple[str, pd.Timestamp, pd.Timestamp]] = []

    async def trades(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        self.asked.append((symbol, start, end))
        if self.gate is not None and len(self.asked) > self.free:
            await self.gate.wait()
        t = self.tape
        return t[(t["symbol"] == symbol) & (t["ts"] >= start) & (t["ts"] < end)].reset_index(drop=True)

    async def aclose(self) -> None:
        return None


# Hybrid tests read receive times as an order (0, 100, 2000 ns), not as the wall clock: the bound on
# how far past its receipt an event may be stamped (tested on its own) is lifted to ~160 years.
ORDER_ONLY_SKEW_S = 5e9


class HybridStore(InMemoryStore):
    """A hybrid stream service: the hot store in memory (no watermark stored yet), REST from a tape,
    spilled frames kept."""

    def __init__(self, plan: StreamPlan, rest: RestTape) -> None:
        super().__init__(plan, [])
        # these tests read receive times as an order (0, 100, 2000 ns), not as the wall clock: the
        # bound on how far an event may be stamped past its receipt (tested on its own) is lifted
        streaming = self.settings.streaming.model_copy(update={"max_event_skew_seconds": ORDER_ONLY_SKEW_S})
        self.settings = self.settings.model_copy(update={"streaming": streaming})
        self.rest = rest
        self.spilled: list[bytes] = []

    async def _db(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        from storage.watermarks import read_watermarks

        if action is read_watermarks:
            return {}
        return await super()._db(action, *args, **kwargs)

    def _rest_source(self) -> Any:
        return self.rest

    def spill_frames(self, frames: Sequence[bytes]) -> None:
        self.spilled += frames


HYBRID = StreamPlan("polygon", ("AAPL",), ("trades",), hybrid=True)


def frames_at(seconds: Sequence[float], received_ns: int) -> tuple[list[bytes], list[int]]:
    """One trade frame per second of ``seconds`` after T0 (its id: the half-second count)."""
    frames = [
        orjson.dumps([{"ev": "T", "sym": "AAPL", "i": str(round(s * 2)), "x": 4, "p": 1.5, "s": 10,
                       "t": T0_MS + round(s * 1000)}])
        for s in seconds
    ]  # fmt: skip
    return frames, [received_ns + n for n in range(len(frames))]


def read(seconds: Sequence[float], received_ns: int):
    """A micro-batch of trades at ``seconds`` read from ``received_ns`` on, with its frames."""
    frames, received = frames_at(seconds, received_ns)
    return replace(PROTOCOL.parse_frames(frames, received), frames=tuple(frames), frames_received_ns=tuple(received))


SESSION = np.arange(0, 300, 0.5)  # the vendor's tape: a trade every half second, 13:30:00-13:34:59.5
TAPE = read(SESSION, 0).trades


def committed_ids(service: InMemoryStore) -> list[int]:
    ids = [int(i) for c in service.committed if c.get("trades") is not None for i in c["trades"]["trade_id"]]
    return sorted(set(ids))


def final_minutes(service: InMemoryStore) -> dict[str, tuple[int, int]]:
    """Each final 1-minute bar's (volume, trade count), the last one stored."""
    out = {}
    for c in service.committed:
        bars = c.get("final_bars")
        if bars is not None and not bars.empty:
            for bar in bars[bars["timeframe"] == "1min"].itertuples():
                out[f"{bar.ts:%H:%M}"] = (int(bar.volume), int(bar.trade_count))
    return out


def test_two_quick_reconnects_leave_both_gaps_caught_up(isolated):
    """The review's double reconnect: both connects come before the parser reaches the first new
    connection's frames. Each gap is bounded by the frames read around its connect, so the first
    connection's frames, stored first, no longer hide gap 1 from the catch-up."""
    service = HybridStore(HYBRID, RestTape(TAPE))
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))
        await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
        # gap 1: 13:31:00-13:32:00; gap 2: 13:32:30-13:33:30; both connects before the parser reads on
        service._connected(SimpleNamespace(at_ns=1_000))
        service._connected(SimpleNamespace(at_ns=2_000))
        await service._handle(read(np.arange(120, 150, 0.5), 1_500), windows, Stream())
        await service._handle(read(np.arange(210, 300, 0.5), 2_500), windows, Stream())
        await service._settle()

    asyncio.run(asyncio.wait_for(scenario(), 30))

    assert committed_ids(service) == sorted(int(i) for i in TAPE["trade_id"])  # every trade of both gaps
    assert {m: final_minutes(service)[m] for m in ("13:30", "13:31", "13:32", "13:33")} == dict.fromkeys(
        ("13:30", "13:31", "13:32", "13:33"), (1200, 120)
    )  # complete minutes, gaps included
    assert service.report.catchups == 3  # at the start and after each reconnect
    assert service.report.late_trades == 0  # each gap's trades reached the windows before later ones


async def until(condition: Any, turns: int = 1000) -> None:
    """Let the event loop run (background fetches and what follows them) until ``condition`` holds:
    at most ``turns`` turns of the loop, no wall-clock wait."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not reached in {turns} turns of the event loop")


def test_a_catch_up_in_flight_does_not_stop_the_consumer(isolated):
    """While a catch-up's REST requests wait, the consumer goes on taking micro-batches (it does
    not block, so the reader's buffer does not fill and spill); they are stored after the
    catch-up, in the order read (the backlog in one transaction), and its trades reach the windows
    first."""
    gate = asyncio.Event()
    service = HybridStore(HYBRID, RestTape(TAPE, gate, free=1))  # the start's catch-up is served
    windows = BarWindows(60, 2, source="polygon")
    live = [read(np.arange(start, start + 30, 0.5), 1_000 + start) for start in (120, 150, 180)]

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))
        await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
        await until(lambda: len(service.committed) == 2)  # the start's catch-up, then the first read
        service._connected(SimpleNamespace(at_ns=1_000))  # 13:31:00-13:32:00 missed
        for b in live:
            await service._handle(b, windows, Stream())  # returns while the catch-up waits
        await until(lambda: len(service.rest.asked) == 2)  # the gap's request is in flight
        in_flight = (len(service.rest.asked), len(service.committed), service.report.held_rows)
        gate.set()
        await service._settle()
        return in_flight

    asked, committed_meanwhile, held = asyncio.run(asyncio.wait_for(scenario(), 30))

    # in flight: the start's catch-up and the first read stored, the three live batches held in order
    assert (asked, committed_meanwhile, held) == (2, 2, sum(b.rows for b in live))
    trades = [c["trades"] for c in service.committed if c.get("trades") is not None]
    order = [sorted({int(i) // 120 for i in t["trade_id"]}) for t in trades]  # the minute of each trade
    # the start, the first read, the catch-up, then the live ones (held, stored together)
    assert order == [[], [0], [0, 1], [2, 3]]
    assert committed_ids(service) == list(range(0, 420))
    assert final_minutes(service)["13:31"] == (1200, 120)


def test_past_the_hold_limit_the_consumer_waits_for_the_catch_up(isolated):
    """Rows held behind a catch-up are bounded (``streaming.catch_up_hold_rows``): past it the
    consumer waits for the catch-up (the reader's buffer and its spill take over), then goes on."""
    gate = asyncio.Event()
    service = HybridStore(HYBRID, RestTape(TAPE, gate, free=1))
    service.settings = Settings(streaming={"catch_up_hold_rows": 100, "max_event_skew_seconds": ORDER_ONLY_SKEW_S})
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))
        await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
        await until(lambda: len(service.committed) == 2)
        service._connected(SimpleNamespace(at_ns=1_000))
        await service._handle(read(np.arange(120, 150, 0.5), 1_100), windows, Stream())  # 60 rows held
        over = asyncio.ensure_future(service._handle(read(np.arange(150, 180, 0.5), 1_200), windows, Stream()))
        await until(lambda: len(service.rest.asked) == 2)
        waiting = (over.done(), service.report.held_rows)
        gate.set()
        await asyncio.wait_for(over, 10)
        return waiting, service.report.held_rows

    (done_while_in_flight, held), held_after = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert (done_while_in_flight, held) == (False, 120)  # the consumer waited past 100 rows held
    assert held_after == 0 and committed_ids(service) == list(range(0, 360))


def test_spilled_frames_are_caught_up_over_rest(isolated):
    """Frames spilled past the lag limit are a gap like a reconnect's: the span of each symbol's
    trades in them is fetched over REST and stored, in its place before the frames read after."""
    service = HybridStore(HYBRID, RestTape(TAPE))
    windows = BarWindows(60, 2, source="polygon")
    spilled, received = frames_at(np.arange(60, 90, 0.5), 1_000)

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))
        await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
        await service._spill(spilled, received)
        await service._handle(read(np.arange(90, 180, 0.5), 2_000), windows, Stream())
        await service._settle()

    asyncio.run(asyncio.wait_for(scenario(), 30))

    assert service.spilled == spilled  # still in the lake's raw zone
    span = (pd.Timestamp(T0_MS + 60_000, unit="ms", tz="UTC"), pd.Timestamp(T0_MS + 89_501, unit="ms", tz="UTC"))
    assert service.rest.asked[-1] == ("AAPL", *span)
    assert committed_ids(service) == list(range(0, 360))
    assert final_minutes(service)["13:31"] == (1200, 120)


def test_a_bars_only_catch_up_resumes_at_the_new_connections_first_bar():
    """A pre-drop bar still buffered must not name the resumption point (it did: any bar did)."""
    from streaming.gaps import connect_gaps, resume_point, split_at

    frames = [
        orjson.dumps([{"ev": "AM", "sym": "AAPL", "v": 10, "vw": 1.5, "o": 1.5, "c": 1.5, "h": 1.5, "l": 1.5,
                       "s": T0_MS + m * 60_000, "e": T0_MS + (m + 1) * 60_000, "z": 10}])
        for m in (0, 5)
    ]  # fmt: skip
    received = [150, 250]  # 13:30 read before the reconnect at 200, 13:35 after
    both = replace(PROTOCOL.parse_frames(frames, received), frames=tuple(frames), frames_received_ns=tuple(received))

    before, after = split_at(both, 200, PROTOCOL.parse_frames)
    resume = resume_point(after, ("bars",))
    gaps = connect_gaps(("AAPL",), ("bars",), {}, {"AAPL": before.bars["ts"].max()}, resume,
                        lateness=LATENESS, widths=(60.0,))  # fmt: skip

    assert before is not None and len(before.bars) == 1 and len(after.bars) == 1
    assert [(g.start, g.end) for g in gaps] == [(pd.Timestamp("2024-06-03 13:31", tz="UTC"), resume)]
    assert resume == pd.Timestamp("2024-06-03 13:35", tz="UTC")


def test_a_trade_stamped_an_hour_ahead_closes_no_window_and_makes_no_later_trade_late(isolated):
    """The event clock that closes the windows is the newest trade: a bad print an hour ahead is
    refused as the frames are parsed (the connection's protocol is bounded by
    streaming.max_event_skew_seconds), so the minute under way stays open and its later trades count."""
    service = InMemoryStore(StreamPlan("polygon", ("AAPL",), ("trades",)), [])
    windows = BarWindows(60, 2, source="polygon")
    protocol = PROTOCOL.bounded(service.settings.streaming.max_event_skew_seconds)
    t0_ns = T0_MS * 1_000_000

    def received(seconds: Sequence[float], ns: int, first_id: int) -> Any:
        frames = [
            orjson.dumps([{"ev": "T", "sym": "AAPL", "i": str(first_id + n), "x": 4, "p": 1.5, "s": 10,
                           "t": T0_MS + round(s * 1000)}])
            for n, s in enumerate(seconds)
        ]  # fmt: skip
        return protocol.parse_frames(frames, [ns] * len(frames))

    async def scenario():
        await service._handle(received([1, 2, 3600], t0_ns + 3_100_000_000, 0), windows, Stream())
        await service._handle(received([30, 59], t0_ns + 59_500_000_000, 10), windows, Stream())
        await service._handle(received([65], t0_ns + 65_100_000_000, 20), windows, Stream())  # 13:30 closes

    asyncio.run(scenario())

    final = pd.concat([c["final_bars"] for c in service.committed if c.get("final_bars") is not None])
    minute = final[final["timeframe"] == "1min"]
    assert minute["ts"].tolist() == [pd.Timestamp(t0_ns, tz="UTC")]
    assert minute["volume"].tolist() == [40]  # 13:30:01, :02, :30, :59; not the print stamped 14:30
    assert service.report.late_trades == 0 and service.report.dead == 1
    assert "bad timestamp" in service.letters[0].reason


# -- hybrid: the queue in receive order, and what a catch-up that does not end leaves ------------


class GatedStore(HybridStore):
    """A hybrid service whose commits wait while ``db_open`` is clear (a slow database)."""

    def __init__(self, plan: StreamPlan, rest: RestTape) -> None:
        super().__init__(plan, rest)
        self.db_open = asyncio.Event()
        self.db_open.set()

    async def _db(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        if action is commit_stream_batch:
            await self.db_open.wait()
        return await super()._db(action, *args, **kwargs)


class FailingRest(RestTape):
    """REST that refuses every request for trades from ``refused_from`` on (after the resilience
    retries, as the source client raises it)."""

    def __init__(self, tape: pd.DataFrame, refused_from: pd.Timestamp, gate: asyncio.Event, free: int) -> None:
        super().__init__(tape, gate, free)
        self.refused_from = refused_from

    async def trades(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        if start >= self.refused_from:
            raise RetryableSourceError(f"polygon answered 503 for {symbol} trades from {start}")
        return await super().trades(symbol, start, end)


OPEN = pd.Timestamp("2024-06-03 13:30", tz="UTC")


def trades_committed(service: InMemoryStore) -> list[dict[str, Any]]:
    return [c for c in service.committed if c.get("trades") is not None and not c["trades"].empty]


def trades_mark(commit: dict[str, Any]) -> pd.Timestamp:
    """The trades watermark a commit moves: its newest trade, at most its ``marks_until`` (an open span)."""
    cap = (commit.get("marks_until") or {}).get(("trades", "AAPL"))
    newest = commit["trades"]["ts"].max()
    return newest if cap is None else min(newest, cap)


def restart_point(service: InMemoryStore, commits: int | None = None) -> pd.Timestamp:
    """Where the next hybrid run's trades catch-up starts after the first ``commits`` commits (all):
    from the trades watermark they moved (commits behind an open span move it up to its start)."""
    moved = [trades_mark(c) for c in trades_committed(service)[:commits]]
    return trades_catch_up_start(max(moved) if moved else None, OPEN, LATENESS, (60.0,))


def lost_on_a_crash(service: InMemoryStore) -> list[int]:
    """Trades a crash after some commit would lose for good: committed only later, but older than
    where the next run's catch-up would start from the watermark that commit left."""
    commits = trades_committed(service)
    lost: set[int] = set()
    for k in range(1, len(commits)):
        restart = restart_point(service, k)
        before = {int(i) for c in commits[:k] for i in c["trades"]["trade_id"]}
        for c in commits[k:]:
            t = c["trades"]
            lost |= {int(i) for i in t.loc[t["ts"] < restart, "trade_id"] if int(i) not in before}
    return sorted(lost)


def spans(service: InMemoryStore) -> list[tuple[float, float]]:
    """Each trades commit's (first, last) trade, in seconds after 13:30."""
    return [
        ((c["trades"]["ts"].min() - OPEN).total_seconds(), (c["trades"]["ts"].max() - OPEN).total_seconds())
        for c in trades_committed(service)
    ]


async def while_a_follower_stores(service: GatedStore, gate: asyncio.Event, windows: BarWindows) -> None:
    """The start (13:30), a reconnect (13:31 missed), 13:32:00-13:32:30 held behind its catch-up;
    the catch-up's REST answer arrives and its follower stores the backlog on a slow database."""
    service._connected(SimpleNamespace(at_ns=100))
    await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
    service._connected(SimpleNamespace(at_ns=1_000))
    await service._handle(read(np.arange(120, 150, 0.5), 1_500), windows, Stream())
    service.db_open.clear()
    gate.set()
    await until(service._order.locked)  # the follower holds the order while it commits


def test_a_spill_while_the_consumer_waits_is_queued_behind_the_batch_it_read_before(isolated):
    """The review's finding 1: the consumer holds micro-batch B (13:32:30-13:33:00) and waits for
    the order while a follower stores; the reader spills newer frames (13:33:00-13:33:30). The
    spill's catch-up is queued behind B (by receive time), so its REST rows never move the
    watermark past B before B is committed (a crash then lost B: the next run started at 13:33)."""
    gate = asyncio.Event()
    service = GatedStore(HYBRID, RestTape(TAPE, gate, free=1))
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        await while_a_follower_stores(service, gate, windows)
        consumer = asyncio.ensure_future(service._handle(read(np.arange(150, 180, 0.5), 3_000), windows, Stream()))
        await asyncio.sleep(0)  # B waits for the order
        await service._spill(*frames_at(np.arange(180, 210, 0.5), 4_000))
        service.db_open.set()
        await consumer
        await service._handle(read(np.arange(210, 240, 0.5), 5_000), windows, Stream())
        await service._settle()

    asyncio.run(asyncio.wait_for(scenario(), 30))

    assert lost_on_a_crash(service) == []
    # the start, the reconnect's catch-up, the backlog with B, the spill, then 13:33:30
    assert spans(service) == [(0, 59.5), (0, 119.5), (120, 179.5), (180, 209.5), (210, 239.5)]
    assert committed_ids(service) == list(range(0, 480))
    assert service.report.late_trades == 0


def test_a_spill_cuts_the_micro_batch_the_parser_built_across_it(isolated):
    """The parser took frames before the spill and after it into one micro-batch: the frames read
    before the spilled ones go ahead of its catch-up, those read after behind it."""
    service = HybridStore(HYBRID, RestTape(TAPE))
    windows = BarWindows(60, 2, source="polygon")
    early, early_ns = frames_at(np.arange(60, 75, 0.5), 2_000)
    spilled, spilled_ns = frames_at(np.arange(75, 90, 0.5), 3_000)
    late, late_ns = frames_at(np.arange(90, 120, 0.5), 4_000)
    across = replace(
        PROTOCOL.parse_frames(early + late, early_ns + late_ns),
        frames=tuple(early + late),
        frames_received_ns=tuple(early_ns + late_ns),
    )

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))
        await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
        await service._spill(spilled, spilled_ns)
        await service._handle(across, windows, Stream())
        await service._settle()

    asyncio.run(asyncio.wait_for(scenario(), 30))

    assert lost_on_a_crash(service) == []
    # read before the spill (with the start's, held behind its catch-up), the spill, read after
    assert spans(service) == [(0, 74.5), (75, 89.5), (90, 119.5)]
    assert committed_ids(service) == list(range(0, 240))
    assert service.report.late_trades == 0


def test_a_failed_catch_up_leaves_its_span_open_and_stores_what_was_read_around_it(isolated):
    """The review's two spills while the consumer waits: B is stored before them, the first
    spill's REST rows after it; the second spill's REST request fails. What was read after it is
    stored, without moving the trades watermark past the failed span (the next run fetches it),
    and the stream ends with the vendor's error, not an ExceptionGroup."""
    gate = asyncio.Event()
    refused_from = OPEN + pd.Timedelta(seconds=210)
    service = GatedStore(HYBRID, FailingRest(TAPE, refused_from, gate, free=1))
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        await while_a_follower_stores(service, gate, windows)
        consumer = asyncio.ensure_future(service._handle(read(np.arange(150, 180, 0.5), 3_000), windows, Stream()))
        await asyncio.sleep(0)
        await service._spill(*frames_at(np.arange(180, 210, 0.5), 4_000))  # S1
        await service._spill(*frames_at(np.arange(210, 240, 0.5), 5_000))  # S2: its REST request fails
        service.db_open.set()
        await consumer
        await service._handle(read(np.arange(240, 270, 0.5), 6_000), windows, Stream())
        await service._settle()

    with pytest.raises(RetryableSourceError, match="503"):
        asyncio.run(asyncio.wait_for(scenario(), 30))

    assert lost_on_a_crash(service) == []
    assert committed_ids(service) == [*range(0, 420), *range(480, 540)]  # all but S2's span
    # read after S2: the watermarks stop at its start (bars: the minute before)
    assert trades_committed(service)[-1]["marks_until"] == {
        ("trades", "AAPL"): refused_from,
        ("bars", "AAPL"): OPEN + pd.Timedelta(minutes=2),
    }
    assert restart_point(service) <= refused_from  # the next hybrid run fetches S2's span


def test_a_catch_up_not_ended_at_stop_is_cancelled_and_what_it_held_is_stored(isolated, monkeypatch):
    """The review's finding 3: after the stop's wait for a catch-up, its fetch no longer stores
    concurrently with the stream's last writes (its follower wrote on the stream's connection
    after _settle returned): it is cancelled and what waited behind it, quotes included (no
    REST catch-up fetches them again), is stored then, without moving the trades watermark."""
    monkeypatch.setattr("streaming.service.CATCH_UP_WAIT_S", 0.05)
    gate = asyncio.Event()
    plan = StreamPlan("polygon", ("AAPL",), ("trades", "quotes"), hybrid=True)
    service = HybridStore(plan, RestTape(TAPE, gate, free=1))
    windows = BarWindows(60, 2, source="polygon")
    quote = {"ev": "Q", "sym": "AAPL", "bx": 4, "bp": 1.4, "bs": 2, "ax": 7, "ap": 1.6, "as": 3, "t": T0_MS + 125_000}
    trades, trades_ns = frames_at(np.arange(120, 150, 0.5), 1_500)
    frames = [*trades, orjson.dumps([quote])]
    received = [*trades_ns, 1_600]
    held = replace(PROTOCOL.parse_frames(frames, received), frames=tuple(frames), frames_received_ns=tuple(received))

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))
        await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
        service._connected(SimpleNamespace(at_ns=1_000))
        await service._handle(held, windows, Stream())  # behind the reconnect's catch-up, which waits
        await service._settle()
        at_stop = len(service.committed)
        gate.set()  # the REST answer comes late
        for _ in range(200):
            await asyncio.sleep(0)
        return at_stop

    at_stop = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert len(service.committed) == at_stop  # nothing stored after the stop's last store
    last = service.committed[-1]
    assert sorted(int(i) for i in last["trades"]["trade_id"]) == list(range(240, 300))
    assert len(last["quotes"]) == 1 and last["marks_until"][("trades", "AAPL")] == OPEN  # the reconnect's span
    assert service.report.held_rows == 0
    assert restart_point(service) <= OPEN + pd.Timedelta(seconds=60)  # the next run fetches 13:31


class GatedSpanRest(RestTape):
    """REST whose trades requests starting before ``slow_before`` wait for ``gate`` (past the first
    ``free`` requests); the others are answered at once."""

    def __init__(self, tape: pd.DataFrame, gate: asyncio.Event, free: int, slow_before: pd.Timestamp) -> None:
        super().__init__(tape)
        self.release, self.free_left, self.slow_before = gate, free, slow_before

    async def trades(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        self.free_left -= 1
        if self.free_left < 0 and start < self.slow_before:
            await self.release.wait()
        return await super().trades(symbol, start, end)


def test_rows_fetched_behind_a_catch_up_in_flight_count_in_the_hold_limit(isolated):
    """The review's finding 4: a spill's REST rows, fetched while an earlier catch-up waits, are
    held in memory too: with them the hold limit is passed and the consumer waits (it did not:
    only micro-batches were counted)."""
    gate = asyncio.Event()
    service = HybridStore(HYBRID, GatedSpanRest(TAPE, gate, free=1, slow_before=OPEN + pd.Timedelta(minutes=1)))
    service.settings = Settings(streaming={"catch_up_hold_rows": 100, "max_event_skew_seconds": ORDER_ONLY_SKEW_S})
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))
        await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
        await until(lambda: len(service.committed) == 2)
        service._connected(SimpleNamespace(at_ns=1_000))  # 13:31 missed: its request waits
        await service._handle(read(np.arange(120, 150, 0.5), 1_500), windows, Stream())  # 60 rows held
        await service._spill(*frames_at(np.arange(150, 180, 0.5), 2_000))  # its 60 REST rows come at once
        spill = service._spills[0].catch_up
        await until(lambda: spill.fetch is not None and spill.fetch.done())
        over = asyncio.ensure_future(service._handle(read(np.arange(180, 190, 0.5), 3_000), windows, Stream()))
        for _ in range(50):
            await asyncio.sleep(0)
        waiting = over.done()
        gate.set()
        await asyncio.wait_for(over, 10)
        await service._settle()
        return waiting

    waited = not asyncio.run(asyncio.wait_for(scenario(), 30))

    assert waited  # 60 + 20 rows held and 60 fetched: past 100
    assert committed_ids(service) == list(range(0, 380))


async def _hold_past_the_limit(service: HybridStore, windows: BarWindows) -> None:
    """The first minute stored, a reconnect that misses the next one (its catch-up's REST answer
    waits on the test's gate), then two live micro-batches: 120 rows held behind the catch-up."""
    service._connected(SimpleNamespace(at_ns=100))
    await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
    await until(lambda: len(service.committed) == 2)
    service._connected(SimpleNamespace(at_ns=1_000))
    await service._handle(read(np.arange(120, 150, 0.5), 1_100), windows, Stream())
    await service._handle(read(np.arange(150, 180, 0.5), 1_200), windows, Stream())


def test_a_catch_up_that_outlasts_the_consumers_waits_is_left_open(isolated, monkeypatch):
    """Past the hold limit the consumer waits for the oldest catch-up at most HOLD_WAITS times;
    then it is left open and what it held is stored (without moving the trades watermark): memory
    no longer grows, nor does the consumer stall a micro-batch at a time."""
    monkeypatch.setattr("streaming.service.CATCH_UP_WAIT_S", 0.01)
    monkeypatch.setattr("streaming.service.HOLD_WAITS", 2)
    gate = asyncio.Event()  # never set: the reconnect's REST request does not answer
    service = HybridStore(HYBRID, RestTape(TAPE, gate, free=1))
    service.settings = Settings(streaming={"catch_up_hold_rows": 100, "max_event_skew_seconds": ORDER_ONLY_SKEW_S})
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        await _hold_past_the_limit(service, windows)  # 120 held: past 100
        return service.report.held_rows

    held_after = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert held_after == 0
    assert committed_ids(service) == [*range(0, 120), *range(240, 360)]  # 13:31 left to the next run
    assert trades_committed(service)[-1]["marks_until"][("trades", "AAPL")] == OPEN  # the reconnect's span
    assert restart_point(service) <= OPEN + pd.Timedelta(minutes=1)


@pytest.mark.parametrize("failure", ["the reader", "the database"])
def test_when_the_stream_fails_what_waits_behind_a_catch_up_is_stored_unless_the_database_failed(isolated, failure):
    """The stream ends on an error (a rejected key, a REST failure) while rows wait behind a catch-up
    in flight: they are stored on the way out, without moving the trades watermark; after a lost
    database nothing is tried (it would wait out another DATABASE_RETRY_S)."""
    gate = asyncio.Event()  # never set
    service = HybridStore(HYBRID, RestTape(TAPE, gate, free=1))
    windows = BarWindows(60, 2, source="polygon")
    error = lost() if failure == "the database" else SourceError("polygon refused the key")

    async def scenario():
        service._connected(SimpleNamespace(at_ns=100))
        await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
        await until(lambda: len(service.committed) == 2)
        service._connected(SimpleNamespace(at_ns=1_000))
        await service._handle(read(np.arange(120, 150, 0.5), 1_500), windows, Stream())
        await service._release_on_failure(error)

    asyncio.run(asyncio.wait_for(scenario(), 30))

    if failure == "the database":
        assert committed_ids(service) == list(range(0, 120)) and service.report.held_rows == 60
    else:
        assert committed_ids(service) == [*range(0, 120), *range(240, 300)] and service.report.held_rows == 0
        assert trades_committed(service)[-1]["marks_until"][("trades", "AAPL")] == OPEN  # the reconnect's span


class Connection:
    """The connection's counters, connected or not."""

    def __init__(self, connected: bool) -> None:
        self.connected = connected

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected}


def test_a_connected_stream_that_reads_nothing_keeps_sending_heartbeats(isolated):
    """The start's heartbeat arms the "stream stalled" automation; a stream connected after hours
    (or on illiquid symbols) reads no micro-batch, so the status ticker's turn beats for it."""
    service = InMemoryStore(PLAN, [])
    beats: list[Any] = []
    service.heartbeat = beats.append

    async def scenario() -> None:
        for _ in range(3):
            await service._tick(Connection(connected=True))

    asyncio.run(scenario())
    assert len(beats) == 3 and beats[-1].connection == {"connected": True}
    assert service.report.unconnected_since is None and service.statuses == []


def test_a_stream_that_never_connects_sends_no_heartbeat_after_the_start_and_records_its_status(isolated):
    """Its silence after the start's heartbeat is what fires "stream stalled"."""
    service = InMemoryStore(PLAN, [])
    beats: list[Any] = []
    service.heartbeat = beats.append

    async def scenario() -> None:
        for _ in range(3):
            await service._tick(Connection(connected=False))

    asyncio.run(scenario())
    assert beats == []
    assert service.report.unconnected_since is not None and service.statuses[:1] == ["running"]


# -- hybrid: a catch-up left open is fetched again ---------------------------------------------


class FlakyRest(RestTape):
    """REST that refuses the first ``failures`` requests for trades from ``refused_from`` on (all of
    them when None), as the source client raises it after its own retries."""

    def __init__(self, tape: pd.DataFrame, refused_from: pd.Timestamp, failures: int | None) -> None:
        super().__init__(tape)
        self.refused_from, self.failures, self.refused = refused_from, failures, 0

    async def trades(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        if start >= self.refused_from and (self.failures is None or self.refused < self.failures):
            self.refused += 1
            self.asked.append((symbol, start, end))
            raise RetryableSourceError(f"polygon answered 503 for {symbol} trades from {start}")
        return await super().trades(symbol, start, end)


class StatusStore(HybridStore):
    """A hybrid service that keeps the status rows it records (ops.stream_status)."""

    def __init__(self, plan: StreamPlan, rest: RestTape) -> None:
        super().__init__(plan, rest)
        self.rows: list[Any] = []

    async def _db(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        if action is record_stream_status:
            self.rows.append(args[0])
        return await super()._db(action, *args, **kwargs)


SPILLED_FROM = OPEN + pd.Timedelta(seconds=60)  # the spill of 13:31 in the scenario below


async def a_spill_whose_catch_up_fails(service: HybridStore, windows: BarWindows) -> None:
    """The start (13:30), then 13:31 spilled (its REST request refused), then 13:32 read: the spill
    is left open and 13:32 stored behind it."""
    service._connected(SimpleNamespace(at_ns=100))
    await service._handle(read(np.arange(0, 60, 0.5), 150), windows, Stream())
    await until(lambda: len(service.committed) == 2)  # the start's catch-up, then 13:30
    await service._spill(*frames_at(np.arange(60, 120, 0.5), 1_000))
    await service._handle(read(np.arange(120, 180, 0.5), 2_000), windows, Stream())
    await until(lambda: len(trades_committed(service)) == 2)  # 13:32, behind the span left open


def test_a_catch_up_that_failed_once_is_fetched_again_and_the_watermarks_move_past_its_span(isolated, monkeypatch):
    """F4: a span left open held the trades and bars watermarks for good (until a restart, which
    then refetched everything since). Now it is fetched again in the background: its trades are
    stored, its minute built afresh from them (final, complete: the live windows never saw it),
    the hold clears and the next micro-batch moves the watermark past the span."""
    monkeypatch.setattr("streaming.service.CATCH_UP_RETRY_S", 0.0)
    service = HybridStore(HYBRID, FlakyRest(TAPE, SPILLED_FROM, failures=1))
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        await a_spill_whose_catch_up_fails(service, windows)
        held = trades_committed(service)[-1]["marks_until"]  # 13:32, stored while 13:31 is open
        await until(lambda: service.report.reopened_spans == 1)
        await service._handle(read(np.arange(180, 240, 0.5), 3_000), windows, Stream())
        await service._settle()
        return held

    held = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert held[("trades", "AAPL")] == SPILLED_FROM
    assert service.rest.asked[-1] == ("AAPL", SPILLED_FROM, OPEN + pd.Timedelta(minutes=2))  # its whole minute
    assert committed_ids(service) == list(range(0, 480))
    assert final_minutes(service)["13:31"] == (1200, 120)
    last = trades_committed(service)[-1]
    assert last["marks_until"] == {} and trades_mark(last) == OPEN + pd.Timedelta(seconds=239.5)
    assert lost_on_a_crash(service) == []
    counters = service.report.as_dict()
    assert (counters["open_spans"], counters["open_span"], counters["reopened_spans"]) == (0, None, 1)
    # ops.stream_gaps: the spill's row is written with the first commit after it (13:32's, the span
    # open), before any data after it; set applied by the commit of its data, the retry's
    opened = [(n, g) for n, c in enumerate(service.committed) for g in c["gaps"].opened if g.cause == "spill"]
    ((at, row),) = opened
    assert (row.symbol, row.dataset, row.span_start, row.state) == ("AAPL", "trades", SPILLED_FROM, "open")
    assert service.committed[at] is trades_committed(service)[1]  # 13:32, stored behind the open span
    applied = [n for n, c in enumerate(service.committed) if (row.span_id, "AAPL", "trades") in c["gaps"].applied]
    assert len(applied) == 1 and applied[0] > at and not service.committed[applied[0]]["trades"].empty


def test_a_catch_up_that_keeps_failing_holds_the_watermarks_at_its_start_and_is_a_health_issue(isolated, monkeypatch):
    """Every retry refused: what is read after the span moves the trades watermark up to the
    span's start (not past it: the next hybrid run fetches it; not short of it either), the status
    counters name the span and its retries, and pipeline.health names the stream and the span."""
    from pipeline.health import stream_issues

    monkeypatch.setattr("streaming.service.CATCH_UP_RETRY_S", 0.0)
    monkeypatch.setattr("streaming.service.CATCH_UP_RETRIES", 2)
    service = StatusStore(HYBRID, FlakyRest(TAPE, SPILLED_FROM, failures=None))
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        await a_spill_whose_catch_up_fails(service, windows)
        await until(lambda: service.report.open_span_retries == 2)
        await service._handle(read(np.arange(180, 240, 0.5), 3_000), windows, Stream())
        await service._record_status("running", Stream())

    asyncio.run(asyncio.wait_for(scenario(), 30))

    assert service.rest.refused == 3  # the catch-up and its two retries
    assert committed_ids(service) == [*range(0, 120), *range(240, 480)]  # 13:31 is the next run's
    assert [trades_mark(c) for c in trades_committed(service)[-2:]] == [SPILLED_FROM, SPILLED_FROM]
    assert restart_point(service) == trades_catch_up_start(SPILLED_FROM, OPEN, LATENESS, (60.0,))
    assert lost_on_a_crash(service) == []
    counters = service.rows[-1].counters
    assert (counters["open_spans"], counters["open_span_retries"]) == (1, 2)
    assert counters["open_span"].startswith("AAPL from 2024-06-03T13:31:00+00:00 to ")
    (issue,) = stream_issues(service.rows[-1:], service.rows[-1].updated_at)
    assert issue.startswith("stream polygon (running) has 1 span(s) its REST catch-up could not fill since ")
    assert "AAPL from 2024-06-03T13:31:00+00:00" in issue and "503" in issue
    assert service.gap_states == ["open", "open", "given_up"]  # ops.stream_gaps: each refused retry, then given up


def test_an_open_span_limits_the_watermarks_of_its_symbols_only():
    from streaming.gaps import Gap, marks_until

    at = pd.Timestamp("2024-06-03 13:31:20", tz="UTC")
    gaps = [Gap("AAPL", "trades", at, at + pd.Timedelta(minutes=1), "spill"),
            Gap("AAPL", "bars", at + pd.Timedelta(seconds=40), at + pd.Timedelta(minutes=2), "spill")]  # fmt: skip

    assert marks_until(gaps) == {("trades", "AAPL"): at, ("bars", "AAPL"): pd.Timestamp("2024-06-03 13:30", tz="UTC")}


def test_a_catch_up_that_outlasted_the_consumers_waits_is_fetched_again_once_rest_answers(isolated, monkeypatch):
    """The other way a span is left open: its REST request did not answer through the consumer's
    waits. Its retry, answered, stores 13:31 and the next micro-batch moves the watermark past it."""
    monkeypatch.setattr("streaming.service.CATCH_UP_WAIT_S", 0.01)
    monkeypatch.setattr("streaming.service.HOLD_WAITS", 2)
    monkeypatch.setattr("streaming.service.CATCH_UP_RETRY_S", 0.0)
    gate = asyncio.Event()  # the REST answers wait for it: the reconnect's, then its retry's
    service = HybridStore(HYBRID, RestTape(TAPE, gate, free=1))
    service.settings = Settings(streaming={"catch_up_hold_rows": 100, "max_event_skew_seconds": ORDER_ONLY_SKEW_S})
    windows = BarWindows(60, 2, source="polygon")

    async def scenario():
        await _hold_past_the_limit(service, windows)  # past 100: left open
        held = service.report.open_spans
        await until(lambda: len(service.rest.asked) == 3)  # the retry's request waits
        gate.set()
        await until(lambda: service.report.reopened_spans == 1)
        await service._handle(read(np.arange(180, 240, 0.5), 2_000), windows, Stream())
        await service._settle()
        return held

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 1
    assert committed_ids(service) == list(range(0, 480))
    assert final_minutes(service)["13:31"] == (1200, 120)
    last = trades_committed(service)[-1]
    assert last["marks_until"] == {} and trades_mark(last) == OPEN + pd.Timedelta(seconds=239.5)
    assert lost_on_a_crash(service) == []
