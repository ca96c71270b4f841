"""Alpaca market-data payloads -> canonical frames: pure ``parse_*`` functions, no I/O.

Bars return ``{"bars": {"A": [{"t","o","h","l","c","v","n","vw"}]}, "next_page_token"}`` (the
single-symbol endpoint a list and ``"symbol"``; an empty result is ``null`` or ``{}``); trades and
quotes likewise under ``trades``/``quotes``; news a ``news`` list (Benzinga); corporate actions
are grouped by type. Times are RFC 3339.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core import model
from core.errors import PermanentSourceError
from sources.http import Parser, Request

SOURCE = "alpaca"


def _by_symbol(payload: Any, key: str) -> list[tuple[str, list[Any]]]:
    """``{key: {SYM: [...]}}`` (multi-symbol) or ``{key: [...], "symbol": SYM}`` (single)."""
    if not isinstance(payload, dict):
        raise PermanentSourceError(f"alpaca {key}: expected a JSON object, got {type(payload).__name__}")
    if "message" in payload and key not in payload:
        raise PermanentSourceError(f"alpaca {key}: vendor error: {payload['message']}")
    body = payload.get(key)
    if body is None:
        return []
    if isinstance(body, list):
        symbol = payload.get("symbol")
        if not symbol:
            raise PermanentSourceError(f"alpaca {key}: a single-symbol response without 'symbol'")
        return [(symbol, body)]
    if isinstance(body, dict):
        for symbol, rows in body.items():
            if not isinstance(rows, list):
                raise PermanentSourceError(f"alpaca {key}: {symbol} maps to {type(rows).__name__}, not a list")
        return list(body.items())
    raise PermanentSourceError(f"alpaca {key}: {key!r} is {type(body).__name__}, not an object or list")


def _flatten(groups: list[tuple[str, list[Any]]], keys: tuple[str, ...], what: str) -> pd.DataFrame:
    """All symbols' rows in one raw frame with a ``_symbol`` column."""
    frames = []
    for symbol, rows in groups:
        raw = model.require_keys(rows, keys, what=what)
        if len(raw):
            raw["_symbol"] = symbol
            frames.append(raw)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def parse_bars(payload: Any, *, timeframe: str = "1day") -> pd.DataFrame:
    raw = _flatten(_by_symbol(payload, "bars"), ("t", "o", "h", "l", "c", "v"), "alpaca bars")
    if not len(raw):
        return model.empty_frame(model.BARS)
    frame_tf = model.canonical_timeframe(timeframe)
    ts = model.frame({"ts": model.TS}, {"ts": raw["t"]}, what="alpaca bars")["ts"]
    if model.parse_timeframe(frame_tf)[1] in ("day", "week", "month"):
        ts = model.session_start(ts)
    return model.frame(
        model.BARS,
        {
            "symbol": model.normalize_symbols(raw["_symbol"]),
            "ts": ts,
            "timeframe": frame_tf,
            "open": raw["o"],
            "high": raw["h"],
            "low": raw["l"],
            "close": raw["c"],
            "volume": raw["v"],
            "vwap": raw.get("vw"),
            "trade_count": raw.get("n"),
            "source": SOURCE,
        },
        what="alpaca bars",
    )


def parse_trades(payload: Any) -> pd.DataFrame:
    raw = _flatten(_by_symbol(payload, "trades"), ("t", "p", "s"), "alpaca trades")
    if not len(raw):
        return model.empty_frame(model.TRADES)
    return model.frame(
        model.TRADES,
        {
            "symbol": model.normalize_symbols(raw["_symbol"]),
            "ts": raw["t"],
            "price": raw["p"],
            "size": raw["s"],
            "exchange": raw.get("x"),
            "trade_id": raw["i"].astype(str) if "i" in raw else None,
            "conditions": model.join_list_column(raw["c"]) if "c" in raw else None,
            "tape": raw.get("z"),
            "source": SOURCE,
        },
        what="alpaca trades",
    )


def parse_quotes(payload: Any) -> pd.DataFrame:
    raw = _flatten(_by_symbol(payload, "quotes"), ("t", "bp", "ap"), "alpaca quotes")
    if not len(raw):
        return model.empty_frame(model.QUOTES)
    return model.frame(
        model.QUOTES,
        {
            "symbol": model.normalize_symbols(raw["_symbol"]),
            "ts": raw["t"],
            "bid_price": raw["bp"],
            "bid_size": raw.get("bs", 0),
            "bid_exchange": raw.get("bx"),
            "ask_price": raw["ap"],
            "ask_size": raw.get("as", 0),
            "ask_exchange": raw.get("ax"),
            "conditions": model.join_list_column(raw["c"]) if "c" in raw else None,
            "tape": raw.get("z"),
            "source": SOURCE,
        },
        what="alpaca quotes",
    )


def parse_news(payload: Any) -> pd.DataFrame:
    if not isinstance(payload, dict) or not isinstance(payload.get("news", []), list):
        raise PermanentSourceError("alpaca news: expected an object with a 'news' list")
    raw = model.require_keys(payload.get("news") or [], ("id", "created_at", "headline"), what="alpaca news")
    if not len(raw):
        return model.empty_frame(model.NEWS)
    return model.frame(
        model.NEWS,
        {
            "id": raw["id"].astype(str),
            "ts": raw["created_at"],
            "headline": raw["headline"],
            "summary": raw.get("summary"),
            "author": raw.get("author"),
            "url": raw.get("url"),
            "symbols": model.join_list_column(raw["symbols"], normalize=True) if "symbols" in raw else None,
            "publisher": raw.get("source"),
            "body": raw.get("content"),
            "updated_ts": raw["updated_at"].fillna(raw["created_at"]) if "updated_at" in raw else raw["created_at"],
            "source": SOURCE,
        },
        what="alpaca news",
    )


_SPLIT_TYPES = ("forward_splits", "reverse_splits", "unit_splits")
_DIVIDEND_TYPES = ("cash_dividends",)


def parse_corporate_actions(payload: Any) -> pd.DataFrame:
    """Splits and cash dividends from ``corporate_actions`` (other action types are not modelled)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("corporate_actions", {}), dict):
        raise PermanentSourceError("alpaca corporate actions: expected an object with a 'corporate_actions' object")
    actions = payload.get("corporate_actions") or {}
    frames = []
    for kind in _SPLIT_TYPES:
        raw = model.require_keys(
            actions.get(kind) or [], ("symbol", "ex_date", "new_rate", "old_rate"), what=f"alpaca {kind}"
        )
        if len(raw):
            frames.append(
                model.frame(
                    model.CORPORATE_ACTIONS,
                    {
                        "symbol": model.normalize_symbols(raw["symbol"]),
                        "action": "split",
                        "ex_date": raw["ex_date"],
                        "new_rate": raw["new_rate"],
                        "old_rate": raw["old_rate"],
                        "record_date": raw.get("record_date"),
                        "pay_date": raw.get("payable_date"),
                        "source": SOURCE,
                    },
                    what=f"alpaca {kind}",
                )
            )
    for kind in _DIVIDEND_TYPES:
        raw = model.require_keys(actions.get(kind) or [], ("symbol", "ex_date", "rate"), what=f"alpaca {kind}")
        if len(raw):
            frames.append(
                model.frame(
                    model.CORPORATE_ACTIONS,
                    {
                        "symbol": model.normalize_symbols(raw["symbol"]),
                        "action": "dividend",
                        "ex_date": raw["ex_date"],
                        "amount": raw["rate"],
                        "currency": "USD",
                        "record_date": raw.get("record_date"),
                        "pay_date": raw.get("payable_date"),
                        "source": SOURCE,
                    },
                    what=f"alpaca {kind}",
                )
            )
    if not frames:
        return model.empty_frame(model.CORPORATE_ACTIONS)
    return pd.concat(frames, ignore_index=True)


def parser_for(request: Request) -> Parser:
    """Which parser reads a request's pages; keyed on the dataset so a stored request can be replayed."""
    if request.dataset == "bars":
        timeframe = request.context.get("timeframe", "1day")
        return lambda payload: parse_bars(payload, timeframe=timeframe)
    parsers = {
        "trades": parse_trades,
        "quotes": parse_quotes,
        "news": parse_news,
        "corporate_actions": parse_corporate_actions,
    }
    if request.dataset not in parsers:
        raise PermanentSourceError(f"alpaca has no dataset {request.dataset!r}")
    return parsers[request.dataset]
