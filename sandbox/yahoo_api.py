"""Yahoo Finance chart endpoint: OHLCV with split-adjusted quotes, adjclose, dividend/split events.

As Yahoo does, every price and every dividend amount is adjusted for the splits up to the market's
today (its last session), whatever the range asked; the events listed are those whose session
opens inside the range asked (``period1``..``period2``, up to today), so an intraday range before a
split serves split-adjusted bars without the split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from sandbox.handling import Payload, RequestContext, WireError
from sandbox.market import DividendEvent, SplitEvent, canonical_symbol
from sandbox.wire import yahoo as wire

INTERVALS = {
    "1m": ("minute", 1),
    "2m": ("minute", 2),
    "5m": ("minute", 5),
    "15m": ("minute", 15),
    "30m": ("minute", 30),
    "60m": ("hour", 1),
    "1h": ("hour", 1),
    "90m": ("minute", 90),
    "1d": ("day", 1),
    "5d": ("day", 5),
    "1wk": ("week", 1),
    "1mo": ("month", 1),
    "3mo": ("quarter", 1),
}
RANGE_DAYS = {"1d": 1, "5d": 5, "1mo": 31, "3mo": 92, "6mo": 183, "1y": 366, "2y": 731, "5y": 1827, "10y": 3653}
MAX_INTRADAY_DAYS = {"1m": 8}
S = 1_000_000_000


def _err(status: int, code: str) -> Callable[[str], WireError]:
    return lambda description: WireError(status, wire.error_body(code, description))


def chart(ctx: RequestContext) -> Payload:
    bad = _err(400, "Bad Request")
    market = ctx.market
    raw_symbol = ctx.path["symbol"]
    sym = canonical_symbol(raw_symbol)
    interval = ctx.query.get("interval", "1d")
    if interval not in INTERVALS:
        raise bad(f"Invalid input - interval={interval} is not supported. Valid intervals: [{', '.join(INTERVALS)}]")
    if not market.exists(sym):
        raise _err(404, "Not Found")("No data found, symbol may be delisted")
    now_s = int(market.calendar.close_ns[market.last_session]) // S
    range_text = ctx.query.get("range")
    try:
        if ctx.query.get("period1") or ctx.query.get("period2"):
            p1 = int(ctx.query.get("period1") or 0)
            p2 = int(ctx.query.get("period2") or now_s)
            range_text = ""
        elif range_text:
            if range_text == "max":
                p1 = 0
            elif range_text == "ytd":
                p1 = int(np.datetime64(f"{market.as_of.year}-01-01", "s").astype(np.int64))
            elif range_text in RANGE_DAYS:
                p1 = now_s - RANGE_DAYS[range_text] * 86_400
            else:
                raise bad(f"Invalid input - range={range_text} is not supported.")
            p2 = now_s
        else:
            p1, p2, range_text = now_s - 86_400, now_s, "1d"
    except ValueError as exc:
        raise bad(f"Invalid input - period1/period2 must be integers: {exc}") from exc
    if p2 < p1:
        raise bad(f"Invalid input - startTime({p1}) cannot be greater than endTime({p2})")
    if interval in MAX_INTRADAY_DAYS and p2 - p1 > MAX_INTRADAY_DAYS[interval] * 86_400:
        raise _err(422, "Unprocessable Entity")(
            f"{interval} data not available for startTime={p1} and endTime={p2}. Only "
            f"{MAX_INTRADAY_DAYS[interval]} days worth of {interval} granularity data are allowed to be fetched per "
            "request."
        )
    unit, mult = INTERVALS[interval]
    start_ns, end_ns = p1 * S, p2 * S
    daily = unit not in ("minute", "hour")
    if daily:  # a session counts if its open lies in the window (Yahoo stamps daily bars at the open)
        cal = market.calendar
        lo = int(np.searchsorted(cal.open_ns, start_ns, side="left"))
        hi = int(np.searchsorted(cal.open_ns, end_ns, side="left"))
        if hi <= lo:
            start_ns, end_ns = 1, 0
        else:
            start_ns, end_ns = int(cal.midnight_ns[lo]), int(cal.midnight_ns[hi - 1])
    bars = market.bars(sym, start_ns, end_ns, unit, mult, "split", anchor="session")
    calendar = market.calendar
    stamps = calendar.open_ns[bars.session] if daily else bars.t_ns
    t_seconds = (stamps // S).tolist()
    adjclose = None
    if daily and ctx.query.get("includeAdjustedClose", "true") != "false":
        adj = market.bars(sym, start_ns, end_ns, unit, mult, "all", anchor="session")
        adjclose = adj.close.tolist()
    events = ctx.query.get("events", "")
    dividends, splits = [], []
    if len(bars):
        opens = calendar.open_ns

        def listed(session: int) -> bool:
            return p1 * S <= int(opens[session]) <= p2 * S

        if "div" in events:
            all_splits = market.splits(sym)
            dividends = [
                (int(opens[d.session]) // S, _split_adjusted(d, all_splits))
                for d in market.dividends(sym)
                if listed(d.session)
            ]
        if "split" in events:
            splits = [(int(opens[s.session]) // S, s) for s in market.splits(sym) if listed(s.session)]
    body = wire.chart_body(
        raw_symbol.upper(),
        bars,
        t_seconds,
        adjclose,
        interval,
        range_text or "",
        int(calendar.open_ns[0]) // S,
        int(calendar.open_ns[market.last_session]) // S,
        now_s,
        dividends,
        splits,
    )
    quote = body["chart"]["result"][0]["indicators"]["quote"][0]
    result = body["chart"]["result"][0]
    columns = (
        [result["timestamp"], *(quote[k] for k in ("open", "high", "low", "close", "volume"))] if len(bars) else []
    )
    if columns and adjclose is not None:
        columns.append(result["indicators"]["adjclose"][0]["adjclose"])
    return Payload(body, [], [sym], columns)


def _split_adjusted(dividend: DividendEvent, splits: list[SplitEvent]) -> DividendEvent:
    """The dividend as Yahoo lists it: its cash amount divided by the ratio of every later split."""
    later = [s.split_to / s.split_from for s in splits if s.session > dividend.session]
    return replace(dividend, cash_amount=round(dividend.cash_amount / float(np.prod(later)), 6)) if later else dividend
