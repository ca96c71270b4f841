"""Alpaca market data: pure ``parse_*`` functions of its payloads, and :class:`AlpacaClient`.

Wire formats (https://docs.alpaca.markets/reference): bars ``/v2/stocks/bars?symbols=A,B`` return
``{"bars": {"A": [{"t","o","h","l","c","v","n","vw"}]}, "next_page_token"}`` (the single-symbol
``/v2/stocks/{S}/bars`` returns a list and ``"symbol"``; an empty result is ``null`` or ``{}``);
trades and quotes likewise under ``trades``/``quotes``; news ``/v1beta1/news`` (Benzinga);
corporate actions ``/v1/corporate-actions`` grouped by type. Times are RFC 3339. Auth travels in
the ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` headers, which are never logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pandas as pd

from core.errors import PermanentSourceError
from core import model
from sources.http import Page, Request, Response, VendorClient, VendorHttp, collect, paginate
from sources.resilience import Resilience

SOURCE = "alpaca"
DEFAULT_BASE_URL = "https://data.alpaca.markets"
MAX_LIMIT = 10_000
MAX_NEWS_LIMIT = 50
MAX_CORPORATE_ACTIONS_LIMIT = 1_000
ADJUSTMENTS = ("raw", "split", "dividend", "all")
_UNIT = {"min": "Min", "hour": "Hour", "day": "Day", "week": "Week", "month": "Month"}


# ---------------------------------------------------------------------------------------------
# Parsing (pure)


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


# ---------------------------------------------------------------------------------------------
# Client


def _rfc3339(value: Any) -> str:
    return model.to_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next(response: Response) -> Request | None:
    payload = response.payload
    token = payload.get("next_page_token") if isinstance(payload, dict) else None
    if not token:
        return None
    request = response.request
    return Request(
        request.source, request.dataset, request.url, {**request.params, "page_token": token}, request.context
    )


def _symbols_param(symbols: str | Sequence[str]) -> str:
    items = [symbols] if isinstance(symbols, str) else list(symbols)
    if not items:
        raise PermanentSourceError("alpaca: at least one symbol is required")
    return ",".join(model.vendor_symbol(s, SOURCE) for s in items)


class AlpacaClient(VendorClient):
    """Alpaca market data. Receives its transport (``VendorHttp``) through the constructor; use
    :meth:`create` to build one from a base URL and key pair."""

    source = SOURCE

    def __init__(self, http: VendorHttp, *, feed: str | None = None) -> None:
        super().__init__(http)
        self.feed = feed

    @classmethod
    def create(
        cls,
        api_key: str,
        secret_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        feed: str | None = None,
        resilience: Resilience | None = None,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AlpacaClient:
        headers = {"APCA-API-KEY-ID": api_key, "APCA-API-SECRET-KEY": secret_key}
        http = cls._transport(base_url, resilience=resilience, timeout_seconds=timeout_seconds, transport=transport,
                              headers=headers)  # fmt: skip
        return cls(http, feed=feed)

    def __repr__(self) -> str:
        return f"AlpacaClient({self.http!r}, feed={self.feed!r})"

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        """Pages of any request this client builds; also resumes a dead-lettered request."""
        return paginate(self.http, request, parser_for(request), _next)

    def _market_request(
        self,
        dataset: str,
        symbols: str | Sequence[str],
        start: Any,
        end: Any,
        limit: int,
        extra: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> Request:
        params: dict[str, Any] = {
            "symbols": _symbols_param(symbols),
            "start": _rfc3339(start),
            "end": _rfc3339(end),
            "limit": max(1, min(limit, MAX_LIMIT)),
            "sort": "asc",
            **(extra or {}),
        }
        if self.feed:
            params["feed"] = self.feed
        return Request(SOURCE, dataset, f"/v2/stocks/{dataset}", params, context or {})

    def bars_request(
        self,
        symbols: str | Sequence[str],
        start: Any,
        end: Any,
        *,
        timeframe: str = "1day",
        adjustment: str = "all",
        limit: int = MAX_LIMIT,
    ) -> Request:
        if adjustment not in ADJUSTMENTS:
            raise PermanentSourceError(f"alpaca adjustment {adjustment!r} is not one of {', '.join(ADJUSTMENTS)}")
        multiplier, unit = model.parse_timeframe(timeframe)
        return self._market_request(
            "bars",
            symbols,
            start,
            end,
            limit,
            {"timeframe": f"{multiplier}{_UNIT[unit]}", "adjustment": adjustment},
            {"timeframe": model.canonical_timeframe(timeframe)},
        )

    async def bars(self, symbols: str | Sequence[str], start: Any, end: Any, **kwargs: Any) -> pd.DataFrame:
        request = self.bars_request(symbols, start, end, **kwargs)
        return await collect(self.iter_pages(request), model.empty_frame(model.BARS))

    async def trades(
        self, symbols: str | Sequence[str], start: Any, end: Any, *, limit: int = MAX_LIMIT
    ) -> pd.DataFrame:
        request = self._market_request("trades", symbols, start, end, limit)
        return await collect(self.iter_pages(request), model.empty_frame(model.TRADES))

    async def quotes(
        self, symbols: str | Sequence[str], start: Any, end: Any, *, limit: int = MAX_LIMIT
    ) -> pd.DataFrame:
        request = self._market_request("quotes", symbols, start, end, limit)
        return await collect(self.iter_pages(request), model.empty_frame(model.QUOTES))

    def news_request(
        self, symbols: str | Sequence[str] | None = None, start: Any = None, end: Any = None, *, limit: int = 50
    ) -> Request:
        params: dict[str, Any] = {"limit": max(1, min(limit, MAX_NEWS_LIMIT)), "sort": "asc"}
        if symbols:
            params["symbols"] = _symbols_param(symbols)
        if start is not None:
            params["start"] = _rfc3339(start)
        if end is not None:
            params["end"] = _rfc3339(end)
        return Request(SOURCE, "news", "/v1beta1/news", params)

    async def news(
        self, symbols: str | Sequence[str] | None = None, start: Any = None, end: Any = None
    ) -> pd.DataFrame:
        request = self.news_request(symbols, start, end)
        return await collect(self.iter_pages(request), model.empty_frame(model.NEWS))

    def corporate_actions_request(
        self, symbols: str | Sequence[str], start: Any = None, end: Any = None, *, types: Sequence[str] = ()
    ) -> Request:
        params: dict[str, Any] = {"symbols": _symbols_param(symbols), "limit": MAX_CORPORATE_ACTIONS_LIMIT}
        if types:
            params["types"] = ",".join(types)
        if start is not None:
            params["start"] = model.to_utc(start).strftime("%Y-%m-%d")
        if end is not None:
            params["end"] = model.to_utc(end).strftime("%Y-%m-%d")
        return Request(SOURCE, "corporate_actions", "/v1/corporate-actions", params)

    async def corporate_actions(self, symbols: str | Sequence[str], start: Any = None, end: Any = None) -> pd.DataFrame:
        request = self.corporate_actions_request(symbols, start, end)
        return await collect(self.iter_pages(request), model.empty_frame(model.CORPORATE_ACTIONS))


def parser_for(request: Request) -> Any:
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
