"""The pure synthetic market: determinism, calendar, bar consistency, adjustments, ticks, news, options."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from sandbox.market import Market, canonical_symbol
from sandbox.prices import adjustment_factors, minute_bars

AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


def session_of(market: Market, day: str) -> int:
    index = market.calendar.index_on_or_before(date.fromisoformat(day))
    assert str(market.calendar.days[index]) == day, f"{day} is not a session"
    return index


def test_same_seed_same_minutes_and_other_seed_differs(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    again = Market(42, as_of=AS_OF).minute_bars("AAPL", s)
    other = Market(7, as_of=AS_OF).minute_bars("AAPL", s)
    np.testing.assert_array_equal(market.minute_bars("AAPL", s).close, again.close)
    assert not np.array_equal(market.minute_bars("AAPL", s).close, other.close)


def test_calendar_has_holidays_and_half_days(market: Market) -> None:
    days = set(map(str, market.calendar.days))
    assert "2024-07-04" not in days and "2023-12-25" not in days and "2024-06-03" in days
    assert len(market.minute_bars("MSFT", session_of(market, "2023-11-24"))) == 210  # day after Thanksgiving
    assert len(market.minute_bars("MSFT", session_of(market, "2024-06-03"))) == 390
    assert str(market.calendar.days[0]) == "2000-01-03"


@pytest.mark.parametrize("symbol", ["AAPL", "TSLA", "XYZ"])
def test_minutes_aggregate_exactly_to_the_daily_bar(market: Market, symbol: str) -> None:
    history = market.history(symbol)
    for s in range(market.last_session - 5, market.last_session + 1):
        m = market.minute_bars(symbol, s)
        assert m.open[0] == history.open[s] and m.close[-1] == history.close[s]
        assert m.high.max() == history.high[s] and m.low.min() == history.low[s]
        assert m.volume.sum() == history.volume[s] and m.trades.sum() == history.trades[s]


def test_bars_are_internally_consistent(market: Market) -> None:
    start = int(market.calendar.open_ns[market.last_session - 20])
    bars = market.bars("NVDA", start, int(market.calendar.close_ns[market.last_session]))
    assert len(bars) == market.calendar.minutes[market.last_session - 20 : market.last_session + 1].sum()
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all((bars.vwap >= bars.low) & (bars.vwap <= bars.high))
    assert np.all(bars.volume >= bars.trades) and np.all(bars.trades >= 1)
    assert np.all(np.diff(bars.t_ns) > 0)


def test_intraday_volume_is_u_shaped(market: Market) -> None:
    volumes = np.array(
        [market.minute_bars("KO", s).volume for s in range(market.last_session - 30, market.last_session)]
    )
    mean = volumes.mean(axis=0)
    assert mean[:30].mean() > 1.5 * mean[150:240].mean()
    assert mean[-30:].mean() > 1.5 * mean[150:240].mean()


def test_hour_bars_aggregate_the_minutes(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    lo, hi = int(market.calendar.midnight_ns[s]), int(market.calendar.midnight_ns[s]) + 86_400 * 10**9 - 1
    minutes = market.bars("AMD", lo, hi, "minute")
    hours = market.bars("AMD", lo, hi, "hour")
    assert len(hours) == 7  # 9:30-10:00 partial, then 10..15
    assert hours.volume.sum() == minutes.volume.sum()
    assert hours.open[0] == minutes.open[0] and hours.close[-1] == minutes.close[-1]
    assert hours.high.max() == minutes.high.max()
    daily = market.bars("AMD", lo, hi, "day")
    assert daily.volume[0] == minutes.volume.sum() and daily.high[0] == minutes.high.max()


def split_symbol(market: Market) -> tuple[str, int, float]:
    for i in range(400):
        sym = f"S{i}"
        ratio = market.history(sym).split_ratio[: market.last_session + 1]
        events = np.flatnonzero(ratio != 1.0)
        if events.size and 10 < events[-1] < market.last_session - 10:
            return sym, int(events[-1]), float(ratio[events[-1]])
    raise AssertionError("no symbol with a split found")


def test_split_adjustment_math(market: Market) -> None:
    sym, s, ratio = split_symbol(market)
    raw_before = market.minute_bars(sym, s - 1)
    lo = int(market.calendar.midnight_ns[s - 1])
    adjusted = market.bars(sym, lo, lo + 86_400 * 10**9 - 1, "minute", adjustment="split")
    later = np.prod(market.history(sym).split_ratio[s : market.last_session + 1])
    np.testing.assert_allclose(adjusted.close, np.round(raw_before.close / later, 4))
    np.testing.assert_array_equal(adjusted.volume, np.round(raw_before.volume * later).astype(np.int64))
    # Across the split the raw price jumps by the ratio while the adjusted series is continuous.
    h = market.history(sym)
    raw_jump = h.open[s] / h.close[s - 1]
    assert abs(np.log(raw_jump * ratio)) < 0.25
    pf, _ = adjustment_factors(h, market.last_session, "split")
    assert abs(np.log(h.open[s] * pf[s] / (h.close[s - 1] * pf[s - 1]))) < 0.25


def test_events_after_as_of_do_not_adjust(market: Market) -> None:
    sym, s, _ = split_symbol(market)
    early = Market(42, as_of=date.fromisoformat(str(market.calendar.days[s - 1])))
    pf, _ = adjustment_factors(early.history(sym), early.last_session, "split")
    assert pf[s - 1] == pytest.approx(np.prod(1 / early.history(sym).split_ratio[s - 1 : s]))
    assert all(e.ex_date <= early.as_of for e in early.splits(sym))


def test_dividend_factor_follows_the_crsp_convention(market: Market) -> None:
    divs = market.dividends("JNJ") or market.dividends("PG") or market.dividends("KO")
    assert divs, "expected a dividend payer among JNJ/PG/KO"
    event = divs[-1]
    h = market.history(event.symbol)
    pf, _ = adjustment_factors(h, event.session, "dividend")
    assert pf[event.session - 1] == pytest.approx(1 - event.cash_amount / h.close[event.session - 1])
    assert pf[event.session] == 1.0


def test_trades_tell_the_same_story_as_the_minute_bars(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    minutes = market.minute_bars("AAPL", s)
    trades = market.trades("AAPL", s)
    minute_of = (trades.t_ns - minutes.t_ns[0]) // (60 * 10**9)
    assert len(trades) == minutes.trades.sum()
    np.testing.assert_array_equal(np.bincount(minute_of, weights=trades.size).astype(np.int64), minutes.volume)
    starts = np.flatnonzero(np.r_[True, minute_of[1:] != minute_of[:-1]])
    np.testing.assert_array_equal(trades.price[starts], minutes.open)
    np.testing.assert_array_equal(np.maximum.reduceat(trades.price, starts), minutes.high)
    np.testing.assert_array_equal(np.minimum.reduceat(trades.price, starts), minutes.low)
    assert np.all(np.diff(trades.t_ns) > 0)
    quotes = market.quotes("AAPL", s)
    assert np.all(quotes.bid < quotes.ask)


def test_unknown_and_invalid_symbols_have_no_data(market: Market) -> None:
    assert not market.exists("ZZZQ") and not market.exists("not a symbol!")
    assert len(market.bars("ZZZQ", 0, int(market.calendar.close_ns[market.last_session]), "day")) == 0
    assert canonical_symbol("brk-b") == canonical_symbol("BRK.B") == "BRK.B"
    assert market.exists("BRK-B")


def test_news_wording_follows_the_day_move(market: Market) -> None:
    table = market.news("TSLA")
    h = market.history("TSLA")
    move = h.ret[table.session] / h.sigma[table.session]
    assert len(table) > 100
    assert np.all(move[table.sentiment == 1] > 0) and np.all(move[table.sentiment == -1] < 0)
    assert np.all(np.diff(table.t_ns) >= 0) and table.t_ns[-1] < int(market.calendar.close_ns[-1]) + 10**14


def test_option_chain_is_arbitrage_free_and_skewed(market: Market) -> None:
    chain = market.option_chain("AAPL")
    first = chain.expiration == chain.expiration.min()
    calls = first & chain.is_call
    puts = first & ~chain.is_call
    assert np.all(np.diff(chain.price[calls]) <= 1e-9)  # calls cheaper as strikes rise
    assert np.all(np.diff(chain.price[puts]) >= -1e-9)
    assert chain.iv[puts][0] > chain.iv[puts][-1]  # downside skew
    assert np.all((chain.delta[calls] >= 0) & (chain.delta[calls] <= 1))


def test_filings_are_visible_only_after_their_filing_date(market: Market) -> None:
    filings = market.filings("MSFT")
    assert filings and all(f.filing_date <= AS_OF for f in filings)
    assert all(f.filing_date > f.end_date for f in filings)
    assert {f.fiscal_period for f in filings} >= {"Q1", "Q2", "Q3", "Q4", "FY"}


def test_minute_generation_is_a_pure_function() -> None:
    m = Market(3, as_of=AS_OF)
    profile, history = m.profile("IBM"), m.history("IBM")
    a = minute_bars(3, profile, history, m.calendar, 100)
    b = minute_bars(3, profile, history, m.calendar, 100)
    np.testing.assert_array_equal(a.volume, b.volume)
