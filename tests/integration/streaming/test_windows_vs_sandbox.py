"""streaming.windows against the sandbox market (in-process, the oracle): the 1-minute bars built
from a session's trades are the REST minute bars; the 1-second bars are the stream's ``A``
aggregates, VWAP included; with late trades, corrections, cancels and replays they still are.

The sandbox draws a REST minute bar's VWAP independently of its trades (sandbox/streams says so),
so a minute's VWAP is checked against its trades, not against REST.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.model import TRADES, frame
from sandbox.market import Market
from sandbox.prices import Bars
from sandbox.streams.timeline import TickFaults, second_bars, symbol_day
from sandbox.ticks import ALPACA_EXCHANGE_CODES, TAPE_LETTERS
from sandbox.wire import alpaca as alpaca_wire
from sandbox.wire import polygon as polygon_wire
from sources.alpaca.parsing import parse_trades as parse_alpaca_trades
from sources.polygon.parsing import parse_trades as parse_polygon_trades
from streaming.windows import BarWindows, WindowOutput

AS_OF = date(2024, 6, 28)
SYMBOLS = ("AAPL", "TSLA", "XYZ")
KEY = ["symbol", "timeframe", "ts"]


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


@pytest.fixture(scope="module")
def session(market: Market) -> int:
    index = market.calendar.index_on_or_before(date(2024, 6, 3))
    assert str(market.calendar.days[index]) == "2024-06-03"
    return index


def session_trades(market: Market, session: int, vendor: str) -> pd.DataFrame:
    """The session's trades of SYMBOLS as the vendor's REST parser reads them, in time order."""
    parts = []
    for symbol in SYMBOLS:
        ticks, tape = market.trades(symbol, session), market.profile(symbol).tape
        if vendor == "polygon":
            payload = {"status": "OK", "results": polygon_wire.trade_results(ticks, tape, session)}
            parts.append(parse_polygon_trades(payload, symbol=symbol))
        else:
            parts.append(parse_alpaca_trades({"trades": {symbol: alpaca_wire.trade_records(ticks, tape)}}))
    return pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable", ignore_index=True)


class Stored:
    """What a writer holds after storing each output: the latest final version of each bar."""

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []

    def take(self, out: WindowOutput) -> None:
        assert out.removed.empty
        if not out.final.empty:
            self.parts.append(out.final)

    def bars(self, timeframe: str) -> pd.DataFrame:
        bars = pd.concat(self.parts, ignore_index=True).drop_duplicates(KEY, keep="last")
        return bars[bars["timeframe"] == timeframe].sort_values(["symbol", "ts"], ignore_index=True)


def as_frame(bars: Bars, symbol: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": pd.to_datetime(bars.t_ns, unit="ns", utc=True),
            "open": bars.open,
            "high": bars.high,
            "low": bars.low,
            "close": bars.close,
            "volume": bars.volume,
            "trade_count": bars.trades,
            "vwap": bars.vwap,
        }
    )


def expected(market: Market, session: int, kind: str) -> pd.DataFrame:
    parts = []
    for symbol in SYMBOLS:
        bars = (
            market.minute_bars(symbol, session)
            if kind == "1min"
            else second_bars(market.trades(symbol, session), session)
        )
        parts.append(as_frame(bars, symbol))
    return pd.concat(parts, ignore_index=True).sort_values(["symbol", "ts"], ignore_index=True)


OHLCVN = ["symbol", "ts", "open", "high", "low", "close", "volume", "trade_count"]


def assert_same_bars(got: pd.DataFrame, want: pd.DataFrame) -> None:
    left = got[OHLCVN].astype({"symbol": str, "trade_count": "int64"}).reset_index(drop=True)
    right = want[OHLCVN].astype({"symbol": str}).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False, check_exact=True)


@pytest.mark.parametrize("vendor", ["polygon", "alpaca"])
def test_a_sessions_trades_in_random_micro_batches_give_the_rest_minute_bars(
    market: Market, session: int, vendor: str
) -> None:
    stream = session_trades(market, session, vendor)
    rng = np.random.default_rng(7)
    windows = BarWindows(1, 2, source=vendor)
    stored = Stored()
    at, batches = 0, 0
    while at < len(stream) and batches < len(stream):
        size = int(rng.integers(1, 3000))
        batch = stream.iloc[at : at + size]
        replay = stream.iloc[max(0, at - 20) : at].sample(n=min(at, 10), random_state=batches)  # a reconnect's replay
        windows.add_trades(pd.concat([batch, replay]).sample(frac=1.0, random_state=batches))
        out = windows.advance()
        stored.take(out)
        assert out.provisional.empty or out.provisional["ts"].min() >= out.closed_until - pd.Timedelta(minutes=1)
        at += size
        batches += 1
    out = windows.flush()
    stored.take(out)
    assert out.duplicates > 0 and out.late_trades == 0 and windows.retained_trades == 0

    minutes = stored.bars("1min")
    assert_same_bars(minutes, expected(market, session, "1min"))
    seconds = stored.bars("1s")
    want_seconds = expected(market, session, "1s")
    assert_same_bars(seconds, want_seconds)
    np.testing.assert_allclose(
        seconds["vwap"], want_seconds["vwap"], rtol=0, atol=5e-5 + 1e-9
    )  # the sandbox rounds to 4
    pv = stream["price"] * stream["size"]
    by_minute = pv.groupby([stream["symbol"].astype(str), stream["ts"].dt.floor("min")]).sum()
    np.testing.assert_allclose(minutes["vwap"], by_minute.to_numpy() / minutes["volume"], rtol=1e-12)
    assert ((minutes["vwap"] >= minutes["low"] - 1e-9) & (minutes["vwap"] <= minutes["high"] + 1e-9)).all()
    assert set(minutes["source"]) == {vendor}


class AlpacaEvents:
    """Every trade, correction and cancel the Alpaca stream sends for SYMBOLS, each kind one frame
    as the parser hands it over (sources.stream's CORRECTIONS and CANCELS columns), by due time."""

    def __init__(self, market: Market, session: int, faults: TickFaults) -> None:
        parts: dict[str, list[pd.DataFrame]] = {"trades": [], "corrections": [], "cancels": []}
        for symbol in SYMBOLS:
            day = symbol_day(market, symbol, session, faults)
            for channel in parts:
                due, rows = day.window(channel, np.iinfo(np.int64).min, np.iinfo(np.int64).max)
                table = getattr(day, channel).take(rows)
                ids = table.alpaca_id if channel == "trades" else table.old_id
                part = {
                    "due": due,
                    "symbol": symbol,
                    "ts": pd.to_datetime(table.t_ns, unit="ns", utc=True),
                    "exchange": ALPACA_EXCHANGE_CODES[table.exchange],
                    "tape": TAPE_LETTERS[day.tape],
                    "source": "alpaca",
                }
                if channel == "trades":
                    part |= {"trade_id": ids, "price": table.price, "size": table.size, "conditions": "@"}
                elif channel == "corrections":
                    part |= {
                        "original_trade_id": ids,
                        "corrected_trade_id": table.new_id,
                        "corrected_price": table.new_price,
                        "corrected_size": table.size,
                        "corrected_conditions": "@",
                    }
                else:
                    part |= {"trade_id": ids, "action": "C"}
                parts[channel].append(pd.DataFrame(part))
        strings = ["symbol", "exchange", "tape", "source", "trade_id", "original_trade_id", "corrected_trade_id"]
        self.frames: dict[str, pd.DataFrame] = {}
        for channel, frames in parts.items():
            both = pd.concat(frames, ignore_index=True).sort_values("due", kind="stable", ignore_index=True)
            self.frames[channel] = both.astype({c: "string[pyarrow]" for c in strings if c in both})
        trades = self.frames["trades"]
        self.frames["trades"] = frame(TRADES, dict(trades.items()), what="sandbox trades").assign(due=trades["due"])

    def between(self, channel: str, lo: float, hi: float) -> pd.DataFrame:
        table = self.frames[channel]
        a, b = np.searchsorted(table["due"].to_numpy(), [lo, hi], side="left")
        return table.iloc[a:b]


def test_late_trades_corrections_cancels_and_replays_still_give_the_rest_minute_bars(
    market: Market, session: int
) -> None:
    faults = TickFaults(seed=3, late=0.03, late_s=5.0, corrections=0.02, cancels=0.02)
    events = AlpacaEvents(market, session, faults)
    due = events.frames["trades"]["due"]
    rng = np.random.default_rng(11)
    windows = BarWindows(15, 2, source="alpaca")
    stored = Stored()
    # Micro-batches of 0.5 to 10 market seconds of messages (so a trade 5 s late finds its window
    # closed); each hands over its trades (shuffled, with a replay of some of the previous batch's),
    # then its cancels, then its corrections, as the stream service does.
    lo, previous, batches = float(due.iloc[0]), events.between("trades", 0, 0), 0
    while lo <= due.iloc[-1] and batches < 100_000:
        hi = lo + rng.uniform(0.5, 10.0) * 1e9
        trades = events.between("trades", lo, hi)
        replay = previous.sample(frac=0.2, random_state=batches)
        windows.add_trades(pd.concat([trades, replay]).sample(frac=1.0, random_state=batches))
        windows.apply_cancels(events.between("cancels", lo, hi))
        windows.apply_corrections(events.between("corrections", lo, hi))
        stored.take(windows.advance())
        lo, previous, batches = hi, trades, batches + 1
    out = windows.flush()
    stored.take(out)
    assert out.late_trades > 0 and out.corrected_bars > 0 and out.dropped_late == 0
    assert out.duplicates > 0 and out.unmatched_amends == 0
    assert_same_bars(stored.bars("1min"), expected(market, session, "1min"))
