"""Yahoo Finance chart payloads -> canonical frames: pure parsers, no I/O.

``{"chart": {"result": [{"meta", "timestamp": [...], "events": {"dividends", "splits"},
"indicators": {"quote": [{"open","high","low","close","volume"}], "adjclose": [...]}}], "error"}}``.
Timestamps are Unix seconds; OHLC are split-adjusted (not dividend-adjusted); rows Yahoo pads with
nulls (halts, the current minute) are not bars and are dropped.

Yahoo adjusts its prices (and its dividends' amounts) for every split up to its own today, the
date it serves the response. The hot store keeps raw bars and raw cash per share (adjustment is
ours, from corporate actions), so :func:`parse_chart_bars` undoes those splits: a bar's prices are
multiplied, and its volume divided, by ``numerator / denominator`` of every split with a later ex
date (prices to 4 decimals, the vendor's own rounding of adjusted prices; volumes to whole shares),
and :func:`parse_chart_events` multiplies a dividend's amount by the same ratios
(:func:`later_split_factors`, the one rule for both). Only the splits Yahoo had applied count:
those with an ex date on or before the New York date it served the response (``meta.regularMarketTime``
in the payload, the HTTP Date for an intraday page's ``later_splits``); an announced split it lists
with a later ex date is not undone. Yahoo lists only the splits of the range it
returns, so daily and corporate-action requests run to the vendor's today
(``YahooClient.chart_request``) and the parsers keep the range asked for (``start``/``end`` of the
request's context). An intraday request cannot (Yahoo caps its span): its client fetches the daily
chart's splits from the range's start to the vendor's today right after the bars and puts the
vendor's split records into the bars request's context (``later_splits``, with ex dates up to the
date the bars were served: :func:`later_splits_context`), where the stored page's parser finds them.
Minute bars whose splits are unknown (a page without that context, served after its range) are
refused with :class:`~core.errors.PermanentSourceError`, never stored as raw.
"""

from __future__ import annotations

from datetime import datetime
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


Split = tuple[pd.Timestamp, float]  # (ex date as midnight UTC of its New York date, shares after per share before)


def _split_records(result: dict[str, Any]) -> list[Any]:
    """The chart's split events as Yahoo sent them."""
    events = result.get("events") or {}
    return list((events.get("splits") or {}).values()) if isinstance(events, dict) else []


def _splits_through(records: list[Any], through: pd.Timestamp | None) -> list[Any]:
    """The split records whose ex date is on or before the New York date ``through`` (midnight, no
    zone; None: all of them): the splits Yahoo had applied to a response it served that day. Yahoo
    may list an announced split with a later ex date, which it has not applied yet."""
    if through is None:
        return list(records)
    dated = model.require_keys(records, ("date", "numerator", "denominator"), what="yahoo splits")
    if not len(dated):
        return []
    ex_dates = model.session_date(model.epoch_to_utc(dated["date"], "s")).dt.tz_localize(None)
    return [r for r, ex in zip(records, ex_dates, strict=True) if ex <= through]


def _split_events(result: dict[str, Any], later: list[Any] | None = None) -> list[Split]:
    """Each split of the chart's events that Yahoo had applied when it served the chart (ex date on
    or before the New York date of ``meta.regularMarketTime``; every listed split without one) and
    of ``later`` (split records of the same shape from the daily chart, already so chosen, see
    :func:`later_splits_context`), once per ex date."""
    served = _market_time(result)
    own = _splits_through(_split_records(result), served.tz_localize(None) if served is not None else None)
    splits = own + list(later or [])
    raw = model.require_keys(splits, ("date", "numerator", "denominator"), what="yahoo splits")
    if not len(raw):
        return []
    ex_dates = model.session_date(model.epoch_to_utc(raw["date"], "s"))
    ratios = pd.to_numeric(raw["numerator"], errors="coerce") / pd.to_numeric(raw["denominator"], errors="coerce")
    if not (np.isfinite(ratios) & (ratios > 0)).all():
        raise PermanentSourceError("yahoo chart: a split's numerator/denominator is not a positive ratio")
    return list(dict(zip(ex_dates, ratios.astype(float), strict=True)).items())


def later_split_factors(sessions: pd.Series, splits: list[Split]) -> np.ndarray:
    """Per session date (midnight UTC, as :func:`core.model.session_date` gives): the product of
    the ratios of every split whose ex date is after it. Yahoo's split-adjusted price times it, or
    its split-adjusted dividend amount times it, is the raw one; a split and a dividend on the same
    ex date are in post-split units already."""
    factor = np.ones(len(sessions))
    for ex_date, ratio in splits:
        factor[(sessions < ex_date).to_numpy()] *= ratio
    return factor


def later_splits_context(daily_chart: Any, served_at: datetime | None, bars_chart: Any) -> dict[str, Any]:
    """What an intraday chart request's context gains once its bars are served: ``later_splits``,
    the split records of ``daily_chart`` (the daily chart from the range's start to the vendor's
    today, fetched right after the bars) whose ex date is on or before the New York date the bars
    were served (their HTTP Date; Yahoo's ``meta.regularMarketTime`` when it sent none): the splits
    Yahoo had applied to them."""
    if served_at is not None:
        through = pd.Timestamp(served_at).tz_convert(model.EXCHANGE_TZ).tz_localize(None).normalize()
    else:
        market_time = _market_time(_result(bars_chart))
        if market_time is None:
            raise PermanentSourceError(
                "yahoo chart: the minute bars came with no Date header and no meta.regularMarketTime, so the "
                "splits Yahoo adjusted them for are unknown; ask again"
            )
        through = market_time.tz_localize(None)
    return {"later_splits": _splits_through(_split_records(_result(daily_chart)), through)}


def serves_no_bars(payload: Any) -> bool:
    """A well-formed chart without timestamps (a range with no session yet, say)."""
    try:
        return not _result(payload).get("timestamp")
    except PermanentSourceError:
        return False  # its parser says what is wrong


def _market_time(result: dict[str, Any]) -> pd.Timestamp | None:
    """The New York date of the chart's ``meta.regularMarketTime`` (midnight UTC), None without one."""
    meta = result.get("meta")
    seconds = meta.get("regularMarketTime") if isinstance(meta, dict) else None
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return None
    return model.session_date(model.epoch_to_utc([seconds], "s"))[0]


def _unknown_splits(result: dict[str, Any], ticker: str, ts: pd.Series, end: Any) -> PermanentSourceError | None:
    """Why minute bars cannot be made raw without the splits after their range (None when they can:
    the vendor served them on their range's last date, so every split it had applied is listed)."""
    served = _market_time(result)
    last = model.session_date(pd.Series([model.to_utc(end) if end is not None else ts.max()]))[0]
    if served is not None and served <= last:
        return None
    return PermanentSourceError(
        f"yahoo chart: {len(ts)} intraday bar(s) of {ticker} from {ts.min()} to {ts.max()} are split-adjusted "
        f"up to the vendor's today ({served.date() if served is not None else 'unknown'}), and the splits after "
        f"their range are not known (the request's context has no 'later_splits'): they are refused rather than "
        "stored as raw; fetch the range again (the Yahoo client then asks for its later splits)"
    )


def parse_chart_bars(
    payload: Any,
    *,
    timeframe: str = "1day",
    symbol: str | None = None,
    start: Any = None,
    end: Any = None,
    later_splits: list[Any] | None = None,
) -> pd.DataFrame:
    """The chart's bars, raw (its splits and ``later_splits`` undone), between ``start`` and
    ``end`` when given. Intraday bars without ``later_splits`` are refused unless they were served
    on their range's last date (see the module docstring)."""
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
    elif later_splits is None and len(ts) and (refused := _unknown_splits(result, ticker, ts, end)) is not None:
        raise refused
    factor = later_split_factors(model.session_date(ts), _split_events(result, later_splits))
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


def parse_chart_events(payload: Any, *, symbol: str | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
    """Split and dividend events of a chart response -> :data:`model.CORPORATE_ACTIONS`, those
    with an ex date from ``start``'s to ``end``'s New York date when given. Dividend amounts are
    raw cash per share: Yahoo's split-adjusted amount times the ratios of the chart's later splits."""
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
        ex_dates = model.session_date(model.epoch_to_utc(raw["date"], "s"))
        amounts = pd.to_numeric(raw["amount"], errors="coerce")
        frames.append(
            model.frame(
                model.CORPORATE_ACTIONS,
                {
                    "symbol": ticker,
                    "action": "dividend",
                    "ex_date": ex_dates,
                    "amount": np.round(amounts * later_split_factors(ex_dates, _split_events(result)), 6),
                    "currency": (result.get("meta") or {}).get("currency"),
                    "source": SOURCE,
                },
                what="yahoo dividends",
            )
        )
    if not frames:
        return model.empty_frame(model.CORPORATE_ACTIONS)
    actions = pd.concat(frames, ignore_index=True).sort_values("ex_date", ignore_index=True)
    keep = np.ones(len(actions), dtype=bool)
    if start is not None:
        keep &= (actions["ex_date"] >= model.session_date(pd.Series([model.to_utc(start)]))[0]).to_numpy()
    if end is not None:
        keep &= (actions["ex_date"] <= model.session_date(pd.Series([model.to_utc(end)]))[0]).to_numpy()
    return actions if keep.all() else actions[keep].reset_index(drop=True)


def parser_for(request: Request) -> Parser:
    """The parser of a chart request's pages (stored requests and raw pages are re-parsed with it):
    its corporate actions for the ``corporate_actions`` dataset, else its bars."""
    context = request.context
    if request.dataset == "corporate_actions":
        return lambda payload: parse_chart_events(
            payload, symbol=context.get("symbol"), start=context.get("start"), end=context.get("end")
        )
    return lambda payload: parse_chart_bars(
        payload,
        timeframe=context.get("timeframe", "1day"),
        symbol=context.get("symbol"),
        start=context.get("start"),
        end=context.get("end"),
        later_splits=context.get("later_splits"),
    )
