"""Yahoo Finance chart API wire format (`/v8/finance/chart/{symbol}`).

Quote prices are split-adjusted (Yahoo's convention); `adjclose` is split- and dividend-adjusted;
timestamps are Unix seconds of each bar's start (the session open for daily bars).
"""

from __future__ import annotations

from typing import Any

from sandbox.market import DividendEvent, SplitEvent
from sandbox.prices import Bars

VALID_INTERVALS = ("1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h", "1d", "5d", "1wk", "1mo", "3mo")
VALID_RANGES = ("1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max")


def error_body(code: str, description: str) -> dict[str, Any]:
    return {"chart": {"result": None, "error": {"code": code, "description": description}}}


def chart_body(
    symbol: str,
    bars: Bars,
    t_seconds: list[int],
    adjclose: list[float] | None,
    interval: str,
    range_text: str,
    first_trade: int,
    regular_open: int,
    regular_close: int,
    dividends: list[tuple[int, DividendEvent]],
    splits: list[tuple[int, SplitEvent]],
) -> dict[str, Any]:
    last_close = float(bars.close[-1]) if len(bars) else None
    meta = {
        "currency": "USD",
        "symbol": symbol.replace(".", "-"),
        "exchangeName": "NMS",
        "fullExchangeName": "NasdaqGS",
        "instrumentType": "EQUITY",
        "firstTradeDate": first_trade,
        "regularMarketTime": regular_close,
        "hasPrePostMarketData": True,
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": "America/New_York",
        "regularMarketPrice": last_close,
        "chartPreviousClose": float(bars.open[0]) if len(bars) else None,
        "priceHint": 2,
        "currentTradingPeriod": {
            "pre": {"timezone": "EST", "start": regular_open - 19800, "end": regular_open, "gmtoffset": -18000},
            "regular": {"timezone": "EST", "start": regular_open, "end": regular_close, "gmtoffset": -18000},
            "post": {"timezone": "EST", "start": regular_close, "end": regular_close + 14400, "gmtoffset": -18000},
        },
        "dataGranularity": interval,
        "range": range_text,
        "validRanges": list(VALID_RANGES),
    }
    result: dict[str, Any] = {"meta": meta}
    if len(bars):
        result["timestamp"] = t_seconds
        events: dict[str, Any] = {}
        if dividends:
            events["dividends"] = {str(t): {"amount": d.cash_amount, "date": t} for t, d in dividends}
        if splits:
            events["splits"] = {
                str(t): {
                    "date": t,
                    "numerator": s.split_to,
                    "denominator": s.split_from,
                    "splitRatio": f"{_num(s.split_to)}:{_num(s.split_from)}",
                }
                for t, s in splits
            }
        if events:
            result["events"] = events
        quote = {
            "open": bars.open.tolist(),
            "high": bars.high.tolist(),
            "low": bars.low.tolist(),
            "close": bars.close.tolist(),
            "volume": bars.volume.tolist(),
        }
        result["indicators"] = {"quote": [quote]}
        if adjclose is not None:
            result["indicators"]["adjclose"] = [{"adjclose": adjclose}]
    else:
        result["indicators"] = {"quote": [{}]}
    return {"chart": {"result": [result], "error": None}}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
