"""Trades and NBBO quotes inside each minute bar, so tick data and bars tell the same story.

Every minute bar gets exactly `trades` trades whose sizes add up to its volume, whose first and
last prices are its open and close and whose extremes are its high and low. Quotes bracket the
trades. Exchanges carry both the Polygon numeric id and the Alpaca letter of the same venue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sandbox.prices import Bars, round_price, symbol_hash

# (Polygon exchange id, Alpaca/SIP letter), with a rough share of volume.
EXCHANGES = np.array(
    [(12, "Q"), (10, "N"), (11, "P"), (4, "D"), (19, "Z"), (9, "K"), (15, "V"), (21, "U")], dtype=object
)
EXCHANGE_WEIGHTS = np.array([0.2, 0.12, 0.1, 0.3, 0.08, 0.08, 0.05, 0.07])
POLYGON_EXCHANGE_IDS = np.array([e[0] for e in EXCHANGES], dtype=np.int64)
ALPACA_EXCHANGE_CODES = np.array([e[1] for e in EXCHANGES], dtype=object)
TAPE_LETTERS = {1: "A", 2: "B", 3: "C"}


@dataclass(frozen=True)
class Trades:
    t_ns: np.ndarray  # strictly increasing within a session
    price: np.ndarray
    size: np.ndarray  # int64
    exchange: np.ndarray  # index into EXCHANGES
    sequence: np.ndarray  # int64, per session, from 1

    def __len__(self) -> int:
        return len(self.t_ns)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.t_ns, self.price, self.size, self.exchange, self.sequence))

    def take(self, index: np.ndarray | slice) -> Trades:
        return Trades(self.t_ns[index], self.price[index], self.size[index], self.exchange[index], self.sequence[index])


@dataclass(frozen=True)
class Quotes:
    t_ns: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    bid_exchange: np.ndarray
    ask_exchange: np.ndarray
    sequence: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ns)

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (
                self.t_ns,
                self.bid,
                self.ask,
                self.bid_size,
                self.ask_size,
                self.bid_exchange,
                self.ask_exchange,
                self.sequence,
            )
        )

    def take(self, index: np.ndarray | slice) -> Quotes:
        return Quotes(
            self.t_ns[index],
            self.bid[index],
            self.ask[index],
            self.bid_size[index],
            self.ask_size[index],
            self.bid_exchange[index],
            self.ask_exchange[index],
            self.sequence[index],
        )


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segment id per row, position within segment, segment starts) for consecutive segments."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    seg = np.repeat(np.arange(len(counts)), counts)
    pos = np.arange(int(counts.sum())) - starts[seg]
    return seg, pos, starts


def _strictly_increasing(t: np.ndarray) -> np.ndarray:
    i = np.arange(len(t), dtype=np.int64)
    return np.maximum.accumulate(t - i) + i


def session_trades(seed: int, symbol: str, session: int, minutes: Bars) -> Trades:
    """The trades of one session, consistent with its minute bars (OHLC, volume, count)."""
    rng = np.random.default_rng([seed, symbol_hash(symbol), 4, session])
    counts = minutes.trades
    seg, pos, starts = _segments(counts)
    total = len(seg)
    last = pos == counts[seg] - 1
    u = rng.random(total)
    t = minutes.t_ns[seg] + np.floor(np.sort(seg + u) % 1.0 * 59_999_999_999).astype(np.int64)
    t = _strictly_increasing(t)
    lo, hi = minutes.low[seg], minutes.high[seg]
    price = round_price(lo + rng.random(total) * (hi - lo))
    high_first = rng.random(len(counts)) < 0.5
    price = np.where(pos == 1, np.where(high_first[seg], hi, lo), price)
    price = np.where(pos == 2, np.where(high_first[seg], lo, hi), price)
    price = np.where(pos == 0, minutes.open[seg], price)
    price = np.where(last, minutes.close[seg], price)
    w = rng.exponential(size=total)
    share = w / np.add.reduceat(w, starts)[seg]
    size = 1 + np.floor(share * (minutes.volume - counts)[seg]).astype(np.int64)
    size[last] += minutes.volume - np.add.reduceat(size, starts)
    exchange = rng.choice(len(EXCHANGES), size=total, p=EXCHANGE_WEIGHTS)
    return Trades(t, price, size, exchange, np.arange(1, total + 1, dtype=np.int64))


def session_quotes(seed: int, symbol: str, session: int, trades: Trades) -> Quotes:
    """One NBBO update shortly before each trade, bracketing the trade price."""
    rng = np.random.default_rng([seed, symbol_hash(symbol), 5, session])
    n = len(trades)
    half = np.maximum(0.01, np.round(trades.price * 0.0002, 2))
    t = _strictly_increasing(trades.t_ns - rng.integers(1_000, 1_000_000, size=n))
    lots = rng.integers(1, 20, size=(2, n)) * 100
    exch = rng.choice(len(EXCHANGES), size=(2, n), p=EXCHANGE_WEIGHTS)
    return Quotes(
        t,
        round_price(trades.price - half),
        round_price(trades.price + half),
        lots[0],
        lots[1],
        exch[0],
        exch[1],
        np.arange(1, n + 1, dtype=np.int64),
    )
