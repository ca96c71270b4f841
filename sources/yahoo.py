"""Yahoo Finance chart API: pure parsers of ``/v8/finance/chart/{T}`` and :class:`YahooClient`.

``{"chart": {"result": [{"meta", "timestamp": [...], "events": {"dividends", "splits"},
"indicators": {"quote": [{"open","high","low","close","volume"}], "adjclose": [...]}}], "error"}}``.
Timestamps are Unix seconds; OHLC are split-adjusted (not dividend-adjusted); rows Yahoo pads with
nulls (halts, the current minute) are not bars and are dropped. One request covers the whole range.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pandas as pd

from core.errors import PermanentSourceError
from core import model
from sources.http import Page, Request, VendorClient, collect, paginate
from sources.resilience import Resilience

SOURCE = "yahoo"
DEFAULT_BASE_URL = "https://query1.finance.yahoo.com"
_INTERVAL = {
    (1, "min"): "1m", (2, "min"): "2m", (5, "min"): "5m", (15, "min"): "15m", (30, "min"): "30m",
    (60, "min"): "60m", (90, "min"): "90m", (1, "hour"): "1h", (1, "day"): "1d", (5, "day"): "5d",
    (1, "week"): "1wk", (1, "month"): "1mo", (3, "month"): "3mo",
}  # fmt: skip


def _result(payload: Any) -> dict[str, Any]:
    chart = payload.get("chart") if isinstance(payload, dict) else None
    if not isinstance(chart, dict):
        raise PermanentSourceError("yahoo chart: expected an object with a 'chart' object")
    if chart.get("error"):
        error = chart["error"]
        detail = error.get("description") or error.get("code") if isinstance(error, dict) else error
        raise PermanentSourceError(f"yahoo chart: vendor error: {detail}")
    results = chart.get("result")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise PermanentSourceError("yahoo chart: 'result' is not a non-empty list of objects")
    return results[0]


def _symbol(result: dict[str, Any], symbol: str | None) -> str:
    meta = result.get("meta") if isinstance(result.get("meta"), dict) else {}
    ticker = symbol or meta.get("symbol")
    if not ticker:
        raise PermanentSourceError("yahoo chart: no symbol in 'meta' and none given")
    return model.normalize_symbol(ticker)


def parse_chart_bars(payload: Any, *, timeframe: str = "1day", symbol: str | None = None) -> pd.DataFrame:
    result = _result(payload)
    ticker = _symbol(result, symbol)
    timestamps = result.get("timestamp") or []
    if not timestamps:
        return model.empty_frame(model.BARS)
    try:
        quote = result["indicators"]["quote"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise PermanentSourceError("yahoo chart: 'indicators.quote[0]' is missing") from exc
    columns = {}
    for field in ("open", "high", "low", "close", "volume"):
        values = quote.get(field) if isinstance(quote, dict) else None
        if not isinstance(values, list) or len(values) != len(timestamps):
            raise PermanentSourceError(
                f"yahoo chart: indicator {field!r} has {len(values) if isinstance(values, list) else 'no'} "
                f"values for {len(timestamps)} timestamps"
            )
        columns[field] = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    raw = pd.DataFrame({"t": timestamps, **columns})
    raw = raw.dropna(subset=["open", "high", "low", "close"]).reset_index(drop=True)
    ts = model.epoch_to_utc(raw["t"], "s")
    frame_tf = model.canonical_timeframe(timeframe)
    if model.parse_timeframe(frame_tf)[1] in ("day", "week", "month"):
        ts = model.session_start(ts)
    return model.frame(
        model.BARS,
        {
            "symbol": ticker,
            "ts": ts,
            "timeframe": frame_tf,
            "open": raw["open"],
            "high": raw["high"],
            "low": raw["low"],
            "close": raw["close"],
            "volume": raw["volume"].fillna(0),
            "vwap": None,
            "trade_count": None,
            "source": SOURCE,
        },
        what="yahoo chart",
    )


def parse_chart_events(payload: Any, *, symbol: str | None = None) -> pd.DataFrame:
    """Split and dividend events of a chart response -> :data:`model.CORPORATE_ACTIONS`."""
    result = _result(payload)
    ticker = _symbol(result, symbol)
    events = result.get("events") or {}
    if not isinstance(events, dict):
        raise PermanentSourceError("yahoo chart: 'events' is not an object")
    frames = []
    splits = list((events.get("splits") or {}).values())
    raw = model.require_keys(splits, ("date", "numerator", "denominator"), what="yahoo splits")
    if len(raw):
        frames.append(
            model.frame(
                model.CORPORATE_ACTIONS,
                {
                    "symbol": ticker,
                    "action": "split",
                    "ex_date": model.session_date(model.epoch_to_utc(raw["date"], "s")),
                    "new_rate": raw["numerator"],
                    "old_rate": raw["denominator"],
                    "source": SOURCE,
                },
                what="yahoo splits",
            )
        )
    dividends = list((events.get("dividends") or {}).values())
    raw = model.require_keys(dividends, ("date", "amount"), what="yahoo dividends")
    if len(raw):
        frames.append(
            model.frame(
                model.CORPORATE_ACTIONS,
                {
                    "symbol": ticker,
                    "action": "dividend",
                    "ex_date": model.session_date(model.epoch_to_utc(raw["date"], "s")),
                    "amount": raw["amount"],
                    "currency": (result.get("meta") or {}).get("currency"),
                    "source": SOURCE,
                },
                what="yahoo dividends",
            )
        )
    if not frames:
        return model.empty_frame(model.CORPORATE_ACTIONS)
    return pd.concat(frames, ignore_index=True).sort_values("ex_date", ignore_index=True)


class YahooClient(VendorClient):
    """Yahoo chart API. Receives its transport (``VendorHttp``) through the constructor."""

    source = SOURCE

    @classmethod
    def create(
        cls,
        *,
        base_url: str = DEFAULT_BASE_URL,
        resilience: Resilience | None = None,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> YahooClient:
        return cls(cls._transport(base_url, resilience=resilience, timeout_seconds=timeout_seconds,
                                  transport=transport, headers={"User-Agent": "marketpipe/0.1"}))  # fmt: skip

    def chart_request(self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day") -> Request:
        interval = _INTERVAL.get(model.parse_timeframe(timeframe))
        if interval is None:
            raise PermanentSourceError(
                f"yahoo has no interval for timeframe {timeframe!r}; use one of "
                + ", ".join(f"{m}{u}" for m, u in _INTERVAL)
            )
        return Request(
            SOURCE,
            "chart",
            f"/v8/finance/chart/{model.vendor_symbol(symbol, SOURCE)}",
            {
                "period1": int(model.to_utc(start).timestamp()),
                "period2": int(model.to_utc(end).timestamp()),
                "interval": interval,
                "events": "div,splits",
                "includeAdjustedClose": "true",
            },
            {"symbol": model.normalize_symbol(symbol), "timeframe": model.canonical_timeframe(timeframe)},
        )

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        """The chart is one page; its frame holds the bars (events: :meth:`corporate_actions`)."""
        return paginate(self.http, request, parser_for(request), lambda response: None)

    async def bars(self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day") -> pd.DataFrame:
        request = self.chart_request(symbol, start, end, timeframe=timeframe)
        return await collect(self.iter_pages(request), model.empty_frame(model.BARS))

    async def chart(
        self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day"
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Bars and corporate actions from one request."""
        request = self.chart_request(symbol, start, end, timeframe=timeframe)
        page = await anext(self.iter_pages(request))
        return page.frame, parse_chart_events(page.payload, symbol=symbol)

    async def corporate_actions(self, symbol: str, start: Any, end: Any) -> pd.DataFrame:
        return (await self.chart(symbol, start, end))[1]


def parser_for(request: Request) -> Any:
    """The chart's bars parser for a request (stored requests and raw pages are re-parsed with it)."""
    context = request.context
    return lambda payload: parse_chart_bars(
        payload, timeframe=context.get("timeframe", "1day"), symbol=context.get("symbol")
    )
