"""Alpaca market-data wire format (v2 stocks, v1beta1 news, v1 corporate actions).

Times are RFC 3339 strings; error bodies are `{"code": <8 digits>, "message": ...}` as the API
returns them and alpaca-py's APIError parses them.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np

from sandbox.market import DividendEvent, SplitEvent
from sandbox.news import NewsItem
from sandbox.options import OptionChain
from sandbox.prices import Bars, symbol_hash
from sandbox.ticks import ALPACA_EXCHANGE_CODES, TAPE_LETTERS, Quotes, Trades
from sandbox.wire.common import rfc3339

CODES = {
    400: 40010001,
    401: 40110000,
    403: 40310000,
    404: 40410000,
    422: 42210000,
    429: 42910000,
    500: 50010000,
    502: 50010000,
    503: 50010000,
    504: 50010000,
}


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"code": CODES.get(status, status * 100_000), "message": message}


def bar_records(bars: Bars) -> list[dict[str, Any]]:
    cols = zip(
        rfc3339(bars.t_ns),
        bars.open.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        bars.close.tolist(),
        bars.volume.tolist(),
        bars.trades.tolist(),
        bars.vwap.tolist(),
        strict=True,
    )
    return [{"t": t, "o": o, "h": h, "l": lo, "c": c, "v": v, "n": n, "vw": vw} for t, o, h, lo, c, v, n, vw in cols]


def trade_records(trades: Trades, tape: int) -> list[dict[str, Any]]:
    z = TAPE_LETTERS[tape]
    cols = zip(
        rfc3339(trades.t_ns, "ns"),
        ALPACA_EXCHANGE_CODES[trades.exchange].tolist(),
        trades.price.tolist(),
        trades.size.tolist(),
        trades.sequence.tolist(),
        strict=True,
    )
    return [{"t": t, "x": x, "p": p, "s": s, "c": ["@"], "i": i, "z": z} for t, x, p, s, i in cols]


def quote_records(quotes: Quotes, tape: int) -> list[dict[str, Any]]:
    z = TAPE_LETTERS[tape]
    cols = zip(
        rfc3339(quotes.t_ns, "ns"),
        ALPACA_EXCHANGE_CODES[quotes.ask_exchange].tolist(),
        quotes.ask.tolist(),
        quotes.ask_size.tolist(),
        ALPACA_EXCHANGE_CODES[quotes.bid_exchange].tolist(),
        quotes.bid.tolist(),
        quotes.bid_size.tolist(),
        strict=True,
    )
    return [
        {"t": t, "ax": ax, "ap": ap, "as": az, "bx": bx, "bp": bp, "bs": bz, "c": ["R"], "z": z}
        for t, ax, ap, az, bx, bp, bz in cols
    ]


def news_record(item: NewsItem, created_at: str, updated_at: str | None = None) -> dict[str, Any]:
    body = item.body or item.summary
    return {
        "id": item.id,
        "headline": item.headline,
        "author": item.author,
        "created_at": created_at,
        "updated_at": updated_at or created_at,
        "summary": item.summary,
        "content": "".join(f"<p>{s}.</p>" for s in body.rstrip(".").split(". ")),
        "url": item.url,
        "images": [],
        "symbols": list(item.symbols),
        "source": "benzinga",
    }


def action_id(text: str) -> str:
    """Alpaca ids corporate actions with UUIDs (alpaca-py validates them); derive one stably."""
    return str(uuid.UUID(bytes=hashlib.blake2b(text.encode(), digest_size=16).digest()))


def cusip(symbol: str) -> str:
    return f"{symbol_hash(symbol) % 10**9:09d}"


def split_record(event: SplitEvent) -> tuple[str, dict[str, Any]]:
    ex = event.ex_date.isoformat()
    if event.split_to >= event.split_from:
        return "forward_splits", {
            "id": action_id(f"fs-{event.symbol}-{ex}"),
            "symbol": event.symbol,
            "cusip": cusip(event.symbol),
            "new_rate": event.split_to,
            "old_rate": event.split_from,
            "process_date": ex,
            "ex_date": ex,
            "record_date": ex,
            "payable_date": ex,
        }
    return "reverse_splits", {
        "id": action_id(f"rs-{event.symbol}-{ex}"),
        "symbol": event.symbol,
        "old_cusip": cusip(event.symbol),
        "new_cusip": cusip(event.symbol + "R"),
        "new_rate": event.split_to,
        "old_rate": event.split_from,
        "process_date": ex,
        "ex_date": ex,
        "record_date": ex,
        "payable_date": ex,
    }


def dividend_record(event: DividendEvent) -> tuple[str, dict[str, Any]]:
    return "cash_dividends", {
        "id": action_id(f"cd-{event.symbol}-{event.ex_date.isoformat()}"),
        "symbol": event.symbol,
        "cusip": cusip(event.symbol),
        "rate": event.cash_amount,
        "special": False,
        "foreign": False,
        "process_date": event.pay_date.isoformat(),
        "ex_date": event.ex_date.isoformat(),
        "record_date": event.record_date.isoformat(),
        "payable_date": event.pay_date.isoformat(),
    }


def option_snapshots(chain: OptionChain, index: np.ndarray) -> dict[str, dict[str, Any]]:
    """Alpaca's option snapshots keyed by contract symbol (OCC, no ``O:``): latest quote with its
    defects, latest trade at the model price, the model's IV and greeks (theta per day, vega and
    rho per point, as Alpaca sends them)."""
    out: dict[str, dict[str, Any]] = {}
    quote_times = rfc3339(chain.quote_ns[index]) if len(index) else []
    for i, quoted_at in zip(index.tolist(), quote_times, strict=True):
        price = round(float(chain.price[i]), 2)
        out[chain.occ_ticker(i).removeprefix("O:")] = {
            "latestQuote": {
                "ap": float(chain.ask[i]),
                "as": 10,
                "ax": "C",
                "bp": float(chain.bid[i]),
                "bs": 10 if chain.bid[i] > 0 else 0,
                "bx": "C",
                "c": "A",
                "t": quoted_at,
            },
            "latestTrade": {"c": "I", "p": price, "s": 1, "t": quoted_at, "x": "C"},
            "impliedVolatility": round(float(chain.iv[i]), 6),
            "greeks": {
                "delta": round(float(chain.delta[i]), 6),
                "gamma": round(float(chain.gamma[i]), 6),
                "rho": round(float(chain.rho[i]), 6),
                "theta": round(float(chain.theta[i]), 6),
                "vega": round(float(chain.vega[i]), 6),
            },
        }
    return out
