"""Small vendor-format payloads, built by helpers so each test states only what it varies."""

from __future__ import annotations

from typing import Any

# 2023-01-03 (a Tuesday) 00:00 America/New_York = 05:00 UTC, in Unix ms.
JAN3_MIDNIGHT_ET_MS = 1672722000000
JAN3_1430_UTC_S = 1672756200  # 09:30 New York, the opening bell


def polygon_agg(t: int = JAN3_MIDNIGHT_ET_MS, **overrides: Any) -> dict[str, Any]:
    bar = {"v": 1000, "vw": 10.5, "o": 10.0, "c": 11.0, "h": 12.0, "l": 9.0, "t": t, "n": 42}
    bar.update(overrides)
    return bar


def polygon_aggs(results: list[dict[str, Any]] | None, ticker: str = "AAPL", **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ticker": ticker,
        "queryCount": len(results or []),
        "resultsCount": len(results or []),
        "adjusted": True,
        "status": "OK",
        "request_id": "abc",
        **extra,
    }
    if results is not None:
        payload["results"] = results
    return payload


def alpaca_bar(t: str = "2023-01-03T05:00:00Z", **overrides: Any) -> dict[str, Any]:
    bar = {"t": t, "o": 10.0, "h": 12.0, "l": 9.0, "c": 11.0, "v": 1000, "n": 42, "vw": 10.5}
    bar.update(overrides)
    return bar


def yahoo_chart(
    timestamps: list[int], quote: dict[str, list[Any]], events: dict[str, Any] | None = None, symbol: str = "AAPL"
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "meta": {"currency": "USD", "symbol": symbol, "exchangeName": "NMS", "timezone": "EST"},
        "timestamp": timestamps,
        "indicators": {"quote": [quote], "adjclose": [{"adjclose": quote.get("close")}]},
    }
    if events is not None:
        result["events"] = events
    return {"chart": {"result": [result], "error": None}}


def reddit_post(post_id: str, created_utc: float, title: str = "t", **overrides: Any) -> dict[str, Any]:
    data = {
        "id": post_id,
        "name": f"t3_{post_id}",
        "title": title,
        "selftext": "",
        "score": 5,
        "num_comments": 2,
        "created_utc": created_utc,
        "author": "someone",
        "subreddit": "stocks",
        "permalink": f"/r/stocks/comments/{post_id}/x/",
    }
    data.update(overrides)
    return {"kind": "t3", "data": data}


def reddit_listing(children: list[dict[str, Any]], after: str | None = None) -> dict[str, Any]:
    return {"kind": "Listing", "data": {"after": after, "before": None, "dist": len(children), "children": children}}
