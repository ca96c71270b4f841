"""The stream timeline is the REST market: trades, quotes, bars, and the tick faults that amend them."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from sandbox.market import Market
from sandbox.streams.timeline import CANCELLED_ID_BASE, MINUTE_NS, TickFaults, symbol_day

AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


def session_of(market: Market, day: str) -> int:
    return market.calendar.index_on_or_before(date.fromisoformat(day))


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
