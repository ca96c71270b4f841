"""The streams' pure core: settings, the replay clock, the event timeline, wire rendering, delivery faults."""

from __future__ import annotations

from datetime import date, time

import msgpack
import numpy as np
import orjson
import pytest

from sandbox.market import Market
from sandbox.streams import alpaca, polygon
from sandbox.streams.clock import NS, ReplayClock, TokenBucket, plan_segments
from sandbox.streams.faults import DeliveryFaults
from sandbox.streams.protocol import Subscriptions
from sandbox.streams.settings import StreamSettings, parse_overrides, universe_symbols
from sandbox.streams.timeline import (
    CANCELLED_ID_BASE,
    MINUTE_NS,
    TickFaults,
    symbol_day,
)
from sandbox.wire import alpaca as alpaca_wire
from sandbox.wire import polygon as polygon_wire

AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


def session_of(market: Market, day: str) -> int:
    return market.calendar.index_on_or_before(date.fromisoformat(day))


# ---- settings ---------------------------------------------------------------------------------


def test_overrides_are_typed_and_later_layers_win() -> None:
    defaults = parse_overrides({"speed": 60, "batch": 10})
    key = parse_overrides({"speed": "600", "from": "10:15"})
    url = parse_overrides({"session": "2024-06-03", "universe": "3", "disconnect_code": "1011"})
    s = StreamSettings.build(defaults, key, url)
    assert (s.speed, s.batch, s.from_time, s.session) == (600.0, 10, time(10, 15), date(2024, 6, 3))
    assert s.universe == ("AAPL", "MSFT", "AMZN") and s.disconnect_code == 1011
    assert s.to_json()["from"] == "10:15:00" and s.to_json()["disconnect_code"] == 1011


@pytest.mark.parametrize(
    "bad",
    [{"sped": 1}, {"from_time": "10:00"}, {"late": 1.5}, {"from": "25"}, {"batch": 0}, {"at_end": "wait"}],
)
def test_bad_overrides_are_refused_with_the_setting_named(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        parse_overrides(bad)


def test_universe_counts_extend_the_news_universe_with_synthetic_symbols() -> None:
    symbols = universe_symbols(22)
    assert symbols[0] == "AAPL" and symbols[-2:] == ("S0001", "S0002") and len(set(symbols)) == 22


# ---- clock ------------------------------------------------------------------------------------


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


# ---- timeline: the same market as REST --------------------------------------------------------


def test_trades_quotes_and_minute_bars_are_the_rest_market(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    day = symbol_day(market, "AAPL", s, TickFaults())
    trades, bars = market.trades("AAPL", s), market.minute_bars("AAPL", s)
    np.testing.assert_array_equal(day.trades.t_ns[day.row_order("trades")], trades.t_ns)
    np.testing.assert_array_equal(day.trades.price, trades.price)
    np.testing.assert_array_equal(day.trades.alpaca_id, trades.sequence)
    np.testing.assert_array_equal(day.due["trades"], trades.t_ns)
    np.testing.assert_array_equal(day.quotes.t_ns, market.quotes("AAPL", s).t_ns)
    np.testing.assert_array_equal(day.minutes.bars.close, bars.close)
    np.testing.assert_array_equal(day.due["bars"], bars.t_ns + MINUTE_NS)  # sent when the minute ends
    assert len(day.due["corrections"]) == len(day.due["cancels"]) == len(day.due["updatedBars"]) == 0


def test_bars_built_from_the_trades_equal_the_minute_bars_except_vwap(market: Market) -> None:
    s = session_of(market, "2024-06-04")
    day = symbol_day(market, "MSFT", s, TickFaults())
    t, b = day.trades, day.minutes.bars
    minute = (t.t_ns - b.t_ns[0]) // MINUTE_NS
    starts = np.flatnonzero(np.concatenate([[True], minute[1:] != minute[:-1]]))
    np.testing.assert_array_equal(t.price[starts], b.open)
    np.testing.assert_array_equal(np.maximum.reduceat(t.price, starts), b.high)
    np.testing.assert_array_equal(np.minimum.reduceat(t.price, starts), b.low)
    np.testing.assert_array_equal(np.add.reduceat(t.size, starts), b.volume)
    np.testing.assert_array_equal(np.diff(np.concatenate([starts, [len(t.t_ns)]])), b.trades)


def test_second_aggregates_add_up_to_the_minute(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    day = symbol_day(market, "AAPL", s, TickFaults())
    sec, minute = day.seconds.bars, day.minutes.bars
    in_first = sec.t_ns < minute.t_ns[0] + MINUTE_NS
    assert sec.volume[in_first].sum() == minute.volume[0] and sec.trades[in_first].sum() == minute.trades[0]
    assert day.seconds.accumulated_volume[-1] == minute.volume.sum() == day.minutes.accumulated_volume[-1]


def test_corrections_and_cancels_restore_the_rest_trades_when_applied(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    day = symbol_day(market, "NVDA", s, TickFaults(seed=3, corrections=0.05, cancels=0.05))
    rest = market.trades("NVDA", s)
    streamed = {int(i): float(p) for i, p in zip(day.trades.alpaca_id, day.trades.price, strict=True)}
    fixes = day.corrections
    assert len(fixes.old_id) > 0 and len(day.cancels.old_id) > 0
    assert all(streamed[int(o)] != float(n) for o, n in zip(fixes.old_id, fixes.new_price, strict=True))
    for old, new, price in zip(fixes.old_id, fixes.new_id, fixes.new_price, strict=True):
        del streamed[int(old)]
        streamed[int(new)] = float(price)
    for cancelled in day.cancels.old_id:
        assert cancelled >= CANCELLED_ID_BASE
        del streamed[int(cancelled)]
    assert streamed == dict(zip(rest.sequence.tolist(), rest.price.tolist(), strict=True))
    assert (day.due["corrections"] > fixes.t_ns.min()).all()


def test_late_trades_keep_their_time_arrive_later_and_update_their_bar(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    day = symbol_day(market, "AAPL", s, TickFaults(seed=1, late=0.1, late_s=30.0))
    order = day.row_order("trades")
    arrival_t = day.trades.t_ns[order]
    assert (np.diff(arrival_t) < 0).any()  # some trades arrive after younger ones
    np.testing.assert_array_equal(np.sort(day.trades.t_ns), market.trades("AAPL", s).t_ns)
    updated = day.row_order("updatedBars")
    assert len(updated) > 0 and (day.due["updatedBars"] > day.due["bars"][0]).all()


def test_same_seed_same_faults_and_another_seed_differs(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    a = symbol_day(market, "AAPL", s, TickFaults(seed=1, late=0.1))
    b = symbol_day(market, "AAPL", s, TickFaults(seed=1, late=0.1))
    c = symbol_day(market, "AAPL", s, TickFaults(seed=2, late=0.1))
    np.testing.assert_array_equal(a.due["trades"], b.due["trades"])
    assert not np.array_equal(a.row_order("trades"), c.row_order("trades"))


def test_an_unknown_symbol_streams_nothing(market: Market) -> None:
    day = symbol_day(market, "ZZZQ", session_of(market, "2024-06-03"), TickFaults())
    assert all(len(d) == 0 for d in day.due.values())


# ---- wire rendering -----------------------------------------------------------------------------


def test_polygon_events_carry_the_rest_values(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    day = symbol_day(market, "AAPL", s, TickFaults())
    rows = np.arange(5)
    events = polygon.render(day, "trades", rows)
    rest = polygon_wire.trade_results(market.trades("AAPL", s).take(rows), day.tape, s)
    for event, record in zip(events, rest, strict=True):
        assert (event["i"], event["p"], event["s"], event["x"], event["q"]) == (
            record["id"],
            record["price"],
            record["size"],
            record["exchange"],
            record["sequence_number"],
        )
        assert event["t"] == record["sip_timestamp"] // 1_000_000 and event["z"] == record["tape"]
    bar = polygon.render(day, "bars", np.array([0]))[0]
    rest_bar = polygon_wire.agg_results(market.minute_bars("AAPL", s).take(slice(0, 1)))[0]
    assert {k: bar[k] for k in ("o", "h", "l", "c", "v", "vw", "n")} == {
        k: rest_bar[k] for k in ("o", "h", "l", "c", "v", "vw", "n")
    }
    assert (bar["s"], bar["e"]) == (rest_bar["t"], rest_bar["t"] + 60_000)


def test_alpaca_json_and_msgpack_carry_the_rest_values_and_times(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    day = symbol_day(market, "AAPL", s, TickFaults())
    rows = np.arange(3)
    rest = alpaca_wire.trade_records(market.trades("AAPL", s).take(rows), day.tape)
    as_json = orjson.loads(alpaca.encode_json(alpaca.render(day, "trades", rows)))
    assert [{k: m[k] for k in rest[0]} for m in as_json] == rest
    assert as_json[0]["t"].endswith("Z") and len(as_json[0]["t"].split(".")[1]) == 10  # 9 digits + Z
    as_msgpack = msgpack.unpackb(alpaca.encode_msgpack(alpaca.render(day, "trades", rows, "msgpack")))
    assert as_msgpack[0]["t"].to_unix_nano() == int(market.trades("AAPL", s).t_ns[0])
    bar = orjson.loads(alpaca.encode_json(alpaca.render(day, "bars", np.array([0]))))[0]
    assert bar == {"T": "b", "S": "AAPL", **alpaca_wire.bar_records(market.minute_bars("AAPL", s).take(slice(0, 1)))[0]}


def test_client_actions_are_parsed_per_vendor() -> None:
    sub = polygon.parse_client(b'{"action":"subscribe","params":"T.AAPL,AM.*"}')
    assert sub.kind == "subscribe" and sub.topics == {"trades": ["AAPL"], "bars": ["*"]}
    assert polygon.parse_client('{"action":"subscribe","params":"X.AAPL"}').kind == "error"
    assert polygon.parse_client("not json").kind == "error"
    auth = alpaca.parse_client(msgpack.packb({"action": "auth", "key": "k", "secret": "s"}))
    assert (auth.kind, auth.key, auth.secret) == ("auth", "k", "s")
    assert alpaca.parse_client('{"action":"subscribe","trades":"AAPL"}').kind == "error"


def test_subscriptions_expand_wildcards_over_the_universe() -> None:
    subs = Subscriptions()
    subs.add({"trades": ["*", "ZZZA"], "quotes": ["MSFT"]})
    assert subs.pairs(["AAPL", "MSFT"]) == [
        ("MSFT", "quotes"),
        ("AAPL", "trades"),
        ("MSFT", "trades"),
        ("ZZZA", "trades"),
    ]
    subs.remove({"trades": ["*"]})
    assert subs.pairs(["AAPL"]) == [("MSFT", "quotes")]


# ---- delivery faults ----------------------------------------------------------------------------


def test_delivery_faults_are_seeded_and_keep_every_message() -> None:
    frame = [{"n": i} for i in range(200)]
    faults = DeliveryFaults(seed=5, duplicate=0.1, reorder=0.1)
    sent, again = faults.disturb(7, frame)
    assert sorted(m["n"] for m in sent) == list(range(200)) and sent != frame
    assert 0 < len(again) < 60 and faults.disturb(7, frame) == (sent, again)
    assert DeliveryFaults(malformed=1.0).corrupt(0, '[{"a":1}]') == '[{"a'
    assert DeliveryFaults(malformed=0.0).corrupt(0, "[]") is None
