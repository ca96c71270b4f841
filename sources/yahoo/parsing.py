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
those with an ex date on or before the New York date it served the response, its HTTP Date (the
client records it in the request's context as ``served_on``, so a stored page re-parses the same),
else ``meta.regularMarketTime``; an announced split it lists with a later ex date is not undone. A
page with neither whose events list a split after its last bar (no bar is served before its
session, so earlier ones were applied) is refused: whether Yahoo had applied that one is unknown.
A split ex on the very day served is checked against the prices around it (:func:`split_applied`:
the last close before the ex date over the first open from it is near 1 once adjusted, near the
ratio while the vendor is late); it is not undone when they show Yahoo has not applied it yet, and
when they cannot tell (no bar on both sides) it is taken as applied, with a warning.
Yahoo lists only the splits of the range it returns, so daily and corporate-action requests run to the vendor's today
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
from loguru import logger

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

#: How far (in log terms, as a share of the split's own size) the move across a split's ex date may
#: stray from "no split" or "the whole split" and still say which of the two a series shows: an
#: adjusted series moves by a session's gap only, an unadjusted one by the split's ratio as well.
_BASIS_TOLERANCE = 1 / 3


def _split_records(result: dict[str, Any]) -> list[Any]:
    """The chart's split events as Yahoo sent them."""
    events = result.get("events") or {}
    return list((events.get("splits") or {}).values()) if isinstance(events, dict) else []


def _ex_dates(records: list[Any]) -> pd.Series:
    """The New York ex date of each split record (midnight UTC)."""
    dated = model.require_keys(records, ("date", "numerator", "denominator"), what="yahoo splits")
    if not len(dated):
        return pd.Series([], dtype=model.TS)
    return model.session_date(model.epoch_to_utc(dated["date"], "s"))


def _splits_through(records: list[Any], through: pd.Timestamp) -> list[Any]:
    """The split records whose ex date is on or before the New York date ``through`` (midnight
    UTC): the splits Yahoo had applied to a response it served that day. Yahoo may list an
    announced split with a later ex date, which it has not applied yet."""
    return [r for r, ex in zip(records, _ex_dates(records), strict=True) if ex <= through]


def _splits(records: list[Any]) -> list[Split]:
    """Split records as (ex date, ratio), once per ex date."""
    raw = model.require_keys(records, ("date", "numerator", "denominator"), what="yahoo splits")
    if not len(raw):
        return []
    ratios = pd.to_numeric(raw["numerator"], errors="coerce") / pd.to_numeric(raw["denominator"], errors="coerce")
    if not (np.isfinite(ratios) & (ratios > 0)).all():
        raise PermanentSourceError("yahoo chart: a split's numerator/denominator is not a positive ratio")
    return list(dict(zip(_ex_dates(records), ratios.astype(float), strict=True)).items())


def split_applied(series: pd.DataFrame, ex_date: pd.Timestamp, ratio: float) -> bool | None:
    """Whether Yahoo's prices ``series`` (columns ``session``, the New York date as midnight UTC,
    ``open`` and ``close``, in time order) are already adjusted for a split of ``ratio`` ex
    ``ex_date``, judged by the last close before the ex date over the first open from it: near 1
    in an adjusted series (a session's gap), near ``ratio`` in one Yahoo has not adjusted yet (a
    vendor late with a same-day split). True or False when the move is that close (within
    :data:`_BASIS_TOLERANCE` of the split's size) to one of the two, None when the series has no
    bar on one side of the ex date or the move is near neither."""
    size = abs(np.log(ratio))
    if not size:
        return None
    before = series[series["session"] < ex_date]
    after = series[series["session"] >= ex_date]
    if not len(before) or not len(after):
        return None
    close, open_ = float(before["close"].iloc[-1]), float(after["open"].iloc[0])
    if not (close > 0 and open_ > 0):
        return None
    move = np.log(close / open_)
    if abs(move) <= size * _BASIS_TOLERANCE:
        return True
    if abs(move - np.log(ratio)) <= size * _BASIS_TOLERANCE:
        return False
    return None


def _applied_splits(
    result: dict[str, Any],
    ticker: str,
    series: pd.DataFrame,
    adjusted: pd.Series,
    *,
    served_on: str | None = None,
    later: list[Any] | None = None,
) -> list[Split]:
    """The splits Yahoo had applied to the chart's prices and dividends: those of its events with
    an ex date on or before the New York date it served them (:func:`_served_date`), and
    ``later`` (split records of the daily chart, already so chosen: :func:`later_splits_context`).

    Without a serving date, ``series`` (the chart's own bars, see :func:`split_applied`) bounds it
    from below (no bar is served before its session): a split ex after its last bar may or may not
    have been applied, and when a date to adjust (``adjusted``: bar sessions, dividend ex dates)
    lies before one the chart is refused. A split ex on the serving date is checked against
    ``series``: it is left out when the prices show Yahoo has not applied it yet, and when they
    cannot tell it is taken as applied (Yahoo's rule) with a warning."""
    served = _served_date(result, served_on)
    own = _splits(_split_records(result))
    through = served if served is not None else (series["session"].max() if len(series) else None)
    undated = [(ex, ratio) for ex, ratio in own if through is None or ex > through]
    if served is None and undated and len(adjusted) and (adjusted < max(ex for ex, _ in undated)).any():
        listed = ", ".join(f"ratio {ratio:g} ex {ex.date()}" for ex, ratio in undated)
        raise PermanentSourceError(
            f"yahoo chart of {ticker} lists split(s) ({listed}) after its last bar"
            f"{f' ({through.date()})' if through is not None else ''}, but the page has no serving date (no HTTP "
            "Date in its request's context 'served_on' and no meta.regularMarketTime), so whether Yahoo had "
            "applied them to its prices and dividends is unknown: the page is refused rather than stored on a "
            "guessed basis; fetch the range again (the Yahoo client records the Date it was served)"
        )
    decided = dict(_splits(later or []))
    splits = dict([*[s for s in own if through is not None and s[0] <= through], *decided.items()])
    day = "the day the chart was served" if served is not None else "the day of the chart's last bar"
    for ex, ratio in list(splits.items()):
        if ex != through:
            continue
        verdict = split_applied(series, ex, ratio)
        if verdict is False:
            logger.info(
                "yahoo chart of {}: the split of ratio {:g} ex {} ({}) is not applied to its prices yet (the move "
                "across the ex date is the split's): it is not undone",
                ticker,
                ratio,
                ex.date(),
                day,
            )
            del splits[ex]
        elif verdict is None and ex not in decided:
            logger.warning(
                "yahoo chart of {}: the split of ratio {:g} ex {} is on {}, and its prices cannot tell whether "
                "Yahoo has applied it yet (no bar on both sides of the ex date, or a move near neither 1 nor the "
                "ratio); assumed applied, as Yahoo does on the ex date, and undone. If the stored prices before {} "
                "are off by that ratio, fetch the range again after the ex date",
                ticker,
                ratio,
                ex.date(),
                day,
                ex.date(),
            )
    return sorted(splits.items())


def later_split_factors(sessions: pd.Series, splits: list[Split]) -> np.ndarray:
    """Per session date (midnight UTC, as :func:`core.model.session_date` gives): the product of
    the ratios of every split whose ex date is after it. Yahoo's split-adjusted price times it, or
    its split-adjusted dividend amount times it, is the raw one; a split and a dividend on the same
    ex date are in post-split units already."""
    factor = np.ones(len(sessions))
    for ex_date, ratio in splits:
        factor[(sessions < ex_date).to_numpy()] *= ratio
    return factor


def served_on_context(served_at: datetime | None) -> dict[str, Any]:
    """What a chart request's context gains once its page is served with an HTTP Date:
    ``served_on``, its New York date (ISO), the day whose splits Yahoo had applied (nothing
    without a Date: the parser then reads ``meta.regularMarketTime``)."""
    if served_at is None:
        return {}
    return {"served_on": pd.Timestamp(served_at).tz_convert(model.EXCHANGE_TZ).date().isoformat()}


def later_splits_context(daily_chart: Any, served_at: datetime | None, bars_chart: Any) -> dict[str, Any]:
    """What an intraday chart request's context gains once its bars are served: ``served_on`` (the
    New York date the bars were served: their HTTP Date, Yahoo's ``meta.regularMarketTime`` when it
    sent none) and ``later_splits``, the split records of ``daily_chart`` (the daily chart from the
    range's start to the vendor's today, fetched right after the bars) Yahoo had applied to them:
    ex on or before that date, less a split ex that very day whose daily prices show it is not
    applied yet (:func:`split_applied`)."""
    if served_at is not None:
        served_on = served_on_context(served_at)["served_on"]
    else:
        market_time = _market_time(_result(bars_chart))
        if market_time is None:
            raise PermanentSourceError(
                "yahoo chart: the minute bars came with no Date header and no meta.regularMarketTime, so the "
                "splits Yahoo adjusted them for are unknown; ask again"
            )
        served_on = market_time.date().isoformat()
    daily = _result(daily_chart)
    through = pd.Timestamp(served_on, tz="UTC")
    records = _splits_through(_split_records(daily), through)
    same_day = [r for r, ex in zip(records, _ex_dates(records), strict=True) if ex == through]
    if same_day:
        ticker = _symbol(daily, None)
        applied = _applied_splits(daily, ticker, _series(daily), pd.Series([], dtype=model.TS), served_on=served_on)
        records = [r for r in records if r not in same_day or through in dict(applied)]
    return {"later_splits": records, "served_on": served_on}


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


def _served_date(result: dict[str, Any], served_on: str | None) -> pd.Timestamp | None:
    """The New York date (midnight UTC) Yahoo served the chart: its HTTP Date's (``served_on`` of
    the request's context), else ``meta.regularMarketTime``'s, None without either."""
    if served_on:
        try:
            return pd.Timestamp(served_on, tz="UTC").normalize()
        except ValueError as exc:
            raise PermanentSourceError(
                f"yahoo chart: the request's context has served_on={served_on!r}, not an ISO date; fetch the range "
                "again"
            ) from exc
    return _market_time(result)


def _prices(result: dict[str, Any]) -> pd.DataFrame:
    """The chart's rows with prices (``t`` in Unix seconds, OHLCV as Yahoo sent them); Yahoo's
    null padding left out."""
    timestamps = result.get("timestamp") or []
    if not timestamps:
        return pd.DataFrame({c: [] for c in ("t", "open", "high", "low", "close", "volume")})
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
    return raw.dropna(subset=["open", "high", "low", "close"]).reset_index(drop=True)


def _series(result: dict[str, Any], prices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Session, open and close of the chart's bars in Yahoo's basis (what :func:`split_applied`
    reads); empty when the chart has none or they are unreadable (the bars' parser says why)."""
    if prices is None:
        try:
            prices = _prices(result)
        except PermanentSourceError:
            prices = _prices({})
    if not len(prices):
        return pd.DataFrame({"session": pd.Series([], dtype=model.TS), "open": [], "close": []})
    sessions = model.session_date(model.epoch_to_utc(prices["t"], "s"))
    return pd.DataFrame({"session": sessions, "open": prices["open"], "close": prices["close"]})


def _unknown_splits(
    result: dict[str, Any], ticker: str, ts: pd.Series, end: Any, served_on: str | None
) -> PermanentSourceError | None:
    """Why minute bars cannot be made raw without the splits after their range (None when they can:
    the vendor served them on their range's last date, so every split it had applied is listed)."""
    served = _served_date(result, served_on)
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
    served_on: str | None = None,
) -> pd.DataFrame:
    """The chart's bars, raw (the splits Yahoo had applied, its own and ``later_splits``, undone),
    between ``start`` and ``end`` when given. ``served_on``: the New York date of the response's
    HTTP Date (the request's context; else ``meta.regularMarketTime`` stands for it). Intraday
    bars without ``later_splits`` are refused unless they were served on their range's last date,
    and any chart without a serving date that lists a split after its last bar (see the module
    docstring)."""
    result = _result(payload)
    ticker = _symbol(result, symbol)
    raw = _prices(result)
    if not len(raw):
        return model.empty_frame(model.BARS)
    ts = model.epoch_to_utc(raw["t"], "s")
    frame_tf = model.canonical_timeframe(timeframe)
    if model.parse_timeframe(frame_tf)[1] in ("day", "week", "month"):
        ts = model.session_start(ts)
    elif later_splits is None and (refused := _unknown_splits(result, ticker, ts, end, served_on)) is not None:
        raise refused
    sessions = model.session_date(ts)
    splits = _applied_splits(result, ticker, _series(result, raw), sessions, served_on=served_on, later=later_splits)
    factor = later_split_factors(sessions, splits)
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


def parse_chart_events(
    payload: Any, *, symbol: str | None = None, start: Any = None, end: Any = None, served_on: str | None = None
) -> pd.DataFrame:
    """Split and dividend events of a chart response -> :data:`model.CORPORATE_ACTIONS`, those
    with an ex date from ``start``'s to ``end``'s New York date when given. Dividend amounts are
    raw cash per share: Yahoo's split-adjusted amount times the ratios of the later splits Yahoo
    had applied (``served_on`` as for :func:`parse_chart_bars`)."""
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
        applied = _applied_splits(result, ticker, _series(result), ex_dates, served_on=served_on)
        frames.append(
            model.frame(
                model.CORPORATE_ACTIONS,
                {
                    "symbol": ticker,
                    "action": "dividend",
                    "ex_date": ex_dates,
                    "amount": np.round(amounts * later_split_factors(ex_dates, applied), 6),
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
            payload,
            symbol=context.get("symbol"),
            start=context.get("start"),
            end=context.get("end"),
            served_on=context.get("served_on"),
        )
    return lambda payload: parse_chart_bars(
        payload,
        timeframe=context.get("timeframe", "1day"),
        symbol=context.get("symbol"),
        start=context.get("start"),
        end=context.get("end"),
        later_splits=context.get("later_splits"),
        served_on=context.get("served_on"),
    )
