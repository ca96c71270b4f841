"""Yahoo Finance chart payloads -> canonical frames: pure parsers, no I/O.

``{"chart": {"result": [{"meta", "timestamp": [...], "events": {"dividends", "splits"},
"indicators": {"quote": [{"open","high","low","close","volume"}], "adjclose": [...]}}], "error"}}``.
Timestamps are Unix seconds; OHLC are split-adjusted (not dividend-adjusted); rows Yahoo pads with
nulls (halts, the current minute) are not bars and are dropped.

The hot store keeps raw bars (adjustment is ours, from corporate actions), so :func:`parse_chart_bars`
undoes the splits the chart's ``events`` list: a bar's prices are multiplied, and its volume divided,
by ``numerator / denominator`` of every split with a later ex date (prices to 4 decimals, the
vendor's own rounding of adjusted prices; volumes to whole shares). Yahoo lists only the splits of
the range it returns, so a daily request runs to the vendor's today (``YahooClient.chart_request``)
and the parser keeps the range asked for (``start``/``end`` of the request's context). An intraday
request cannot (Yahoo caps its span): a split after an intraday request's range is not seen, and
those minute bars stay split-adjusted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core import model
from core.errors import PermanentSourceError
from sources.http import Parser, Request

SOURCE = "yahoo"


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
    meta = result.get("meta")
    ticker = symbol or (meta.get("symbol") if isinstance(meta, dict) else None)
    if not ticker:
        raise PermanentSourceError("yahoo chart: no symbol in 'meta' and none given")
    return model.normalize_symbol(ticker)


def _split_events(result: dict[str, Any]) -> list[tuple[pd.Timestamp, float]]:
    """(ex date as midnight UTC of its New York date, shares after per share before) of each split."""
    events = result.get("events") or {}
    splits = list((events.get("splits") or {}).values()) if isinstance(events, dict) else []
    raw = model.require_keys(splits, ("date", "numerator", "denominator"), what="yahoo splits")
    if not len(raw):
        return []
    ex_dates = model.session_date(model.epoch_to_utc(raw["date"], "s"))
    ratios = pd.to_numeric(raw["numerator"], errors="coerce") / pd.to_numeric(raw["denominator"], errors="coerce")
    if not (np.isfinite(ratios) & (ratios > 0)).all():
        raise PermanentSourceError("yahoo chart: a split's numerator/denominator is not a positive ratio")
    return list(zip(ex_dates, ratios.astype(float), strict=True))


def later_split_factors(ts: pd.Series, splits: list[tuple[pd.Timestamp, float]]) -> np.ndarray:
    """Per bar: the product of the ratios of every split whose ex date is after the bar's session."""
    factor = np.ones(len(ts))
    if splits:
        sessions = model.session_date(ts)
        for ex_date, ratio in splits:
            factor[(sessions < ex_date).to_numpy()] *= ratio
    return factor


def parse_chart_bars(
    payload: Any,
    *,
    timeframe: str = "1day",
    symbol: str | None = None,
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """The chart's bars, raw (its splits undone), between ``start`` and ``end`` when given."""
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
    factor = later_split_factors(ts, _split_events(result))
    if (factor != 1.0).any():
        for field in ("open", "high", "low", "close"):
            raw[field] = np.where(factor == 1.0, raw[field], np.round(raw[field].to_numpy(float) * factor, 4))
        raw["volume"] = np.where(factor == 1.0, raw["volume"], np.round(raw["volume"].to_numpy(float) / factor))
    keep = np.ones(len(ts), dtype=bool)
    if start is not None:
        keep &= (ts >= model.to_utc(start)).to_numpy()
    if end is not None:
        keep &= (ts <= model.to_utc(end)).to_numpy()
    if not keep.all():
        raw, ts = raw[keep].reset_index(drop=True), ts[keep].reset_index(drop=True)
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


def parser_for(request: Request) -> Parser:
    """The parser of a chart request's pages (stored requests and raw pages are re-parsed with it):
    its corporate actions for the ``corporate_actions`` dataset, else its bars."""
    context = request.context
    if request.dataset == "corporate_actions":
        return lambda payload: parse_chart_events(payload, symbol=context.get("symbol"))
    return lambda payload: parse_chart_bars(
        payload,
        timeframe=context.get("timeframe", "1day"),
        symbol=context.get("symbol"),
        start=context.get("start"),
        end=context.get("end"),
    )
