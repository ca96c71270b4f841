"""The replay clock: sessions as segments, wall time through speed, the rate token bucket."""

from __future__ import annotations

from datetime import date, time

import pytest

from sandbox.market import Market
from sandbox.streams.clock import NS, ReplayClock, TokenBucket, plan_segments
from sandbox.streams.connection import Chunk, MarketPacer, RatePacer
from sandbox.streams.settings import StreamSettings
from sandbox.streams.timeline import MINUTE_NS

AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


def test_segments_start_at_from_and_span_consecutive_sessions(market: Market) -> None:
    segments = plan_segments(market.calendar, market.last_session, date(2024, 6, 1), 2, time(10, 0), 5.0)
    first, second = segments
    assert str(market.calendar.days[first.session]) == "2024-06-03"  # the first session on or after a Saturday
    assert first.start_ns == int(market.calendar.open_ns[first.session]) + 30 * MINUTE_NS
    assert second.session == first.session + 1 and second.start_ns == int(market.calendar.open_ns[second.session])
    assert first.end_ns > int(market.calendar.close_ns[first.session]) + MINUTE_NS


def test_a_session_after_the_last_one_is_refused(market: Market) -> None:
    with pytest.raises(ValueError, match="after the market's last session"):
        plan_segments(market.calendar, market.last_session, date(2024, 7, 1), 1, time(9, 30), 5.0)


def test_clock_maps_wall_time_through_speed_and_across_segments(market: Market) -> None:
    segments = plan_segments(market.calendar, market.last_session, date(2024, 6, 3), 2, time(9, 30), 0.0)
    clock = ReplayClock(segments, speed=60.0, started_at=100.0)
    assert clock.now(100.0) == (0, segments[0].start_ns)
    assert clock.now(101.0) == (0, segments[0].start_ns + 60 * NS)  # a session minute per second
    first_len = segments[0].end_ns - segments[0].start_ns
    assert clock.locate(first_len) == (1, segments[1].start_ns)
    assert clock.wall_at(0, segments[0].start_ns + 120 * NS) == pytest.approx(102.0)
    assert clock.now(100.0 + clock.length_ns / 60 / NS + 1) is None and clock.done(1e12)


def test_speed_zero_means_everything_is_due_at_once(market: Market) -> None:
    segments = plan_segments(market.calendar, market.last_session, None, 1, time(9, 30), 0.0)
    clock = ReplayClock(segments, speed=0.0, started_at=5.0)
    assert clock.now(5.0) is None and clock.wall_at(0, segments[0].end_ns - 1) == 5.0


def test_token_bucket_paces_by_count() -> None:
    bucket = TokenBucket(rate=1000.0, burst=500.0, now=0.0)
    assert bucket.take(0.0, 100) == 0
    assert bucket.take(0.1, 1000) == 100  # 0.1 s at 1000/s
    assert bucket.take(10.0, 1000) == 500  # never more than the burst
    assert bucket.wait_s(10.0, 100) == pytest.approx(0.1)


def test_market_pacer_sends_what_the_clock_made_due_and_naps_until_the_next(market: Market) -> None:
    segments = plan_segments(market.calendar, market.last_session, date(2024, 6, 3), 1, time(9, 30), 0.0)
    clock = ReplayClock(segments, speed=60.0, started_at=0.0)
    start = segments[0].start_ns
    dues = [start, start + 30 * NS, start + 60 * NS]  # due at wall 0 s, 0.5 s, 1 s
    chunk = Chunk(start, start + 90 * NS, dues, [("AAPL", "trades")] * 3, [{"n": 0}, {"n": 1}, {"n": 2}])
    pacer = MarketPacer(clock, StreamSettings(batch=10, tick_ms=10))
    assert pacer.ready(chunk, 0, 0, wall=0.1) == (1, 0.0)
    k, nap = pacer.ready(chunk, 1, 0, wall=0.1)
    assert k == 0 and nap == pytest.approx(0.2)  # never longer than MAX_NAP_S, to notice changes
    assert pacer.ready(chunk, 1, 0, wall=1.2)[0] == 2
    assert pacer.ready(chunk, 3, 0, wall=1.2)[1] is not None  # all sent, but the chunk runs to 1.5 s
    assert pacer.ready(chunk, 3, 0, wall=1.6) == (0, None)


def test_rate_pacer_ignores_due_instants_and_paces_by_count() -> None:
    chunk = Chunk(0, 10**12, list(range(100)), [("AAPL", "trades")] * 100, [{}] * 100)
    pacer = RatePacer(StreamSettings(rate=1000.0, batch=30), now=0.0)
    assert pacer.ready(chunk, 0, 0, wall=0.0)[0] == 0
    assert pacer.ready(chunk, 0, 0, wall=0.05)[0] == 30  # 50 tokens banked, a frame holds 30
    assert pacer.ready(chunk, 100, 0, wall=1.0) == (0, None)


def test_market_pacer_never_sends_past_the_markets_own_clock(market: Market) -> None:
    """A replay faster than real time waits at the market's now: REST and the stream agree on what
    has happened."""
    segments = plan_segments(market.calendar, market.last_session, AS_OF, 1, time(10, 0), 5.0)
    clock = ReplayClock(segments, 60.0, started_at=0.0)
    start = segments[0].start_ns
    dues = [start, start + 30 * NS, start + 60 * NS]
    chunk = Chunk(start, start + 90 * NS, dues, [("AAPL", "trades")] * 3, [{"n": 0}, {"n": 1}, {"n": 2}])
    market_now = start + 40 * NS
    pacer = MarketPacer(clock, StreamSettings(batch=10, tick_ms=10), lambda: market_now)
    assert pacer.ready(chunk, 0, 0, wall=5.0)[0] == 2  # the replay is past all three; the market only two
    k, nap = pacer.ready(chunk, 2, 0, wall=5.0)
    assert k == 0 and nap is not None
    market_now = start + 60 * NS
    assert pacer.ready(chunk, 2, 0, wall=5.0)[0] == 1
