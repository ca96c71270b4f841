"""Alpaca market-data endpoints: multi- and single-symbol bars, trades, quotes; news; corporate actions.

Multi-symbol pages are filled symbol by symbol in alphabetical order up to `limit` items in total,
and `next_page_token` says where to resume (symbol and time), as the real API does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np

from sandbox.handling import (
    Payload,
    RequestContext,
    WireError,
    parse_choice,
    parse_instant,
    parse_int,
)
from sandbox.market import Market, canonical_symbol
from sandbox.news import DEFAULT_UNIVERSE
from sandbox.polygon_api import news_items
from sandbox.wire import alpaca as wire
from sandbox.wire.common import decode_cursor, encode_cursor, rfc3339

TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
UNITS = {
    "Min": "minute",
    "T": "minute",
    "Hour": "hour",
    "H": "hour",
    "Day": "day",
    "D": "day",
    "Week": "week",
    "W": "week",
    "Month": "month",
    "M": "month",
}
FEEDS = ("sip", "iex", "delayed_sip", "otc", "boats", "overnight")
DAY_NS = 86_400_000_000_000


def _err(status: int) -> Callable[[str], WireError]:
    return lambda message: WireError(status, wire.error_body(status, message))


def _timeframe(text: str | None) -> tuple[str, int]:
    match = TIMEFRAME.match(text or "")
    if not match:
        raise _err(422)("invalid timeframe")
    amount, unit = int(match.group(1)), UNITS[match.group(2)]
    limits = {"minute": 59, "hour": 23, "day": 1, "week": 1, "month": 12}
    if not 1 <= amount <= limits[unit]:
        raise _err(422)("invalid timeframe")
    return unit, amount


def _window(ctx: RequestContext) -> tuple[int, int]:
    market = ctx.market
    today = int(market.calendar.midnight_ns[market.last_session])
    try:
        start = parse_instant(ctx.query["start"]) if ctx.query.get("start") else today
        end = (
            parse_instant(ctx.query["end"], end_of_day=True)
            if ctx.query.get("end")
            else int(market.calendar.close_ns[market.last_session])
        )
    except ValueError as exc:
        raise _err(400)(f"invalid start or end: {exc}") from exc
    if end < start:
        raise _err(422)("end should not be before start")
    return start, end


def _symbols(ctx: RequestContext) -> list[str]:
    if "symbol" in ctx.path:
        raw = [ctx.path["symbol"]]
    else:
        raw = [s for s in (ctx.query.get("symbols") or "").split(",") if s.strip()]
        if not raw:
            raise _err(400)("missing symbols")
    symbols = sorted({canonical_symbol(s) for s in raw})
    for s in symbols:
        if not ctx.market.is_valid(s):
            raise _err(400)(f"invalid symbol: {s}")
    return symbols


def _token(ctx: RequestContext) -> dict[str, Any] | None:
    token = ctx.query.get("page_token")
    if not token:
        return None
    try:
        return decode_cursor(token)
    except ValueError as exc:
        raise _err(400)("invalid page token") from exc


def _paginate(
    ctx: RequestContext, key: str, fetch: Callable[[str, int, int, int, bool], tuple[list, int | None]], max_limit: int
) -> Payload:
    """Fill one page across symbols; `fetch(sym, start, end, n, desc)` -> (records, next_start_or_None)."""
    symbols = _symbols(ctx)
    start, end = _window(ctx)
    limit = parse_int(ctx.query.get("limit"), 1000, "limit", 1, max_limit, _err(422))
    desc = parse_choice(ctx.query.get("sort"), "asc", "sort", ("asc", "desc"), _err(422)) == "desc"
    parse_choice(ctx.query.get("feed"), "sip", "feed", FEEDS, _err(422))
    token = _token(ctx)
    data: dict[str, list[dict[str, Any]]] = {}
    next_token = None
    remaining = limit
    for sym in symbols:
        if token and sym < token["s"]:
            continue
        s_start, s_end = start, end
        if token and sym == token["s"]:
            s_start, s_end = (start, token["t"]) if desc else (token["t"], end)
        records, resume = fetch(sym, s_start, s_end, remaining, desc)
        if records:
            data[sym] = records
            remaining -= len(records)
        if resume is not None:
            next_token = encode_cursor({"s": sym, "t": resume})
            break
        if remaining == 0:
            later = [s for s in symbols if s > sym]
            if later:
                next_token = encode_cursor({"s": later[0], "t": end if desc else start})
            break
    lists = list(data.values())
    if "symbol" in ctx.path:
        sym = symbols[0]
        body: dict[str, Any] = {key: data.get(sym), "symbol": sym, "next_page_token": next_token}
    else:
        body = {key: data, "next_page_token": next_token}
    return Payload(body, lists, symbols)


def bars(ctx: RequestContext) -> Payload:
    unit, amount = _timeframe(ctx.query.get("timeframe"))
    adjustment = parse_choice(
        ctx.query.get("adjustment"), "raw", "adjustment", ("raw", "split", "dividend", "all"), _err(422)
    )
    market: Market = ctx.market

    def fetch(sym: str, start: int, end: int, n: int, desc: bool) -> tuple[list, int | None]:
        page, more = market.bars_page(sym, start, end, unit, amount, adjustment, n, descending=desc)
        resume = None
        if more and len(page):
            last = int(page.t_ns[-1])
            resume = last - 1 if desc else last + 1
        return wire.bar_records(page), resume

    return _paginate(ctx, "bars", fetch, 10_000)


def _ticks(ctx: RequestContext, kind: str) -> Payload:
    market: Market = ctx.market

    def fetch(sym: str, start: int, end: int, n: int, desc: bool) -> tuple[list, int | None]:
        if not market.exists(sym):
            return [], None
        tape = market.profile(sym).tape
        out: list[dict[str, Any]] = []
        end = min(end, market.now_ns())  # nothing after the sandbox's now
        for session in market.tick_sessions(start, end, descending=desc):
            ticks = market.trades(sym, session) if kind == "trades" else market.quotes(sym, session)
            idx = np.flatnonzero((ticks.t_ns >= start) & (ticks.t_ns <= end))
            if desc:
                idx = idx[::-1]
            take = ticks.take(idx[: n - len(out)])
            out += wire.trade_records(take, tape) if kind == "trades" else wire.quote_records(take, tape)
            if len(out) >= n:
                last = int(take.t_ns[-1])
                more_here = len(idx) > len(take)
                resume = (last - 1 if desc else last + 1) if more_here else None
                if not more_here:  # resume in the next session, if any is left in range
                    nxt = [
                        s
                        for s in market.tick_sessions(start, end, descending=desc)
                        if (s < session if desc else s > session)
                    ]
                    if nxt:
                        resume = last - 1 if desc else last + 1
                return out, resume
        return out, None

    return _paginate(ctx, kind, fetch, 10_000)


def trades(ctx: RequestContext) -> Payload:
    return _ticks(ctx, "trades")


def quotes(ctx: RequestContext) -> Payload:
    return _ticks(ctx, "quotes")


def news(ctx: RequestContext) -> Payload:
    market: Market = ctx.market
    raw = [s for s in (ctx.query.get("symbols") or "").split(",") if s.strip()]
    symbols = sorted({canonical_symbol(s) for s in raw}) if raw else list(DEFAULT_UNIVERSE)
    symbols = [s for s in symbols if market.exists(s)]
    end_default = int(market.calendar.midnight_ns[market.last_session]) + DAY_NS - 1
    try:
        start = parse_instant(ctx.query["start"]) if ctx.query.get("start") else end_default - 30 * DAY_NS
        end = parse_instant(ctx.query["end"], end_of_day=True) if ctx.query.get("end") else end_default
    except ValueError as exc:
        raise _err(400)(f"invalid start or end: {exc}") from exc
    limit = parse_int(ctx.query.get("limit"), 10, "limit", 1, 50, _err(422))
    desc = parse_choice(ctx.query.get("sort"), "desc", "sort", ("asc", "desc"), _err(422)) == "desc"
    token = _token(ctx)
    offset = int(token["o"]) if token else 0
    rows = news_items("alpaca", market, symbols, start, min(end, market.now_ns()), descending=desc)
    page = rows[offset : offset + limit]
    records = [wire.news_record(item, *rfc3339(np.array([item.t_ns, item.updated_ns or item.t_ns]))) for item in page]
    next_token = encode_cursor({"o": offset + limit}) if offset + limit < len(rows) else None
    return Payload({"news": records, "next_page_token": next_token}, [records], symbols)


CA_TYPES = (
    "forward_split",
    "reverse_split",
    "cash_dividend",
    "stock_dividend",
    "unit_split",
    "spin_off",
    "cash_merger",
    "stock_merger",
    "stock_and_cash_merger",
    "redemption",
    "name_change",
    "worthless_removal",
    "rights_distribution",
)


def corporate_actions(ctx: RequestContext) -> Payload:
    market: Market = ctx.market
    raw = [s for s in (ctx.query.get("symbols") or "").split(",") if s.strip()]
    symbols = sorted({canonical_symbol(s) for s in raw}) if raw else list(DEFAULT_UNIVERSE)
    types = [t for t in (ctx.query.get("types") or "").split(",") if t]
    for t in types:
        if t not in CA_TYPES:
            raise _err(400)(f"invalid type: {t}")
    try:
        start = date.fromisoformat(ctx.query["start"]) if ctx.query.get("start") else market.as_of
        end = date.fromisoformat(ctx.query["end"]) if ctx.query.get("end") else market.as_of
    except ValueError as exc:
        raise _err(400)(f"invalid start or end: {exc}") from exc
    limit = parse_int(ctx.query.get("limit"), 1000, "limit", 1, 1000, _err(422))
    desc = parse_choice(ctx.query.get("sort"), "asc", "sort", ("asc", "desc"), _err(422)) == "desc"
    events: list[tuple[Any, str, str, dict[str, Any]]] = []
    for sym in symbols:
        for s in market.splits(sym):
            group, rec = wire.split_record(s)
            events.append((s.ex_date, sym, group, rec))
        for d in market.dividends(sym):
            group, rec = wire.dividend_record(d)
            events.append((d.ex_date, sym, group, rec))
    wanted = {t + "s" for t in types}
    events = [e for e in events if start <= e[0] <= end and (not wanted or e[2] in wanted)]
    events.sort(key=lambda e: (e[0], e[1]), reverse=desc)
    token = _token(ctx)
    offset = int(token["o"]) if token else 0
    grouped: dict[str, list[dict[str, Any]]] = {}
    for _, _, group, rec in events[offset : offset + limit]:
        grouped.setdefault(group, []).append(rec)
    next_token = encode_cursor({"o": offset + limit}) if offset + limit < len(events) else None
    return Payload({"corporate_actions": grouped, "next_page_token": next_token}, list(grouped.values()), symbols)


def option_chain(ctx: RequestContext) -> Payload:
    """/v1beta1/options/snapshots/{underlying_symbol}: the chain's snapshots keyed by contract
    symbol (OCC without Polygon's ``O:``), filtered by type, strike_price_gte/lte and
    expiration_date(_gte/_lte), paged by ``page_token`` (limit up to 1000, default 100)."""
    market: Market = ctx.market
    bad = _err(400)
    underlying = ctx.path["underlying_symbol"]
    if not market.exists(underlying):
        return Payload({"snapshots": {}, "next_page_token": None}, [[]], [canonical_symbol(underlying)])
    chain = market.option_chain(underlying)
    q = ctx.query
    mask = np.ones(len(chain), dtype=bool)
    kind = parse_choice(q.get("type"), "", "type", ("", "call", "put"), bad)
    if kind:
        mask &= chain.is_call == (kind == "call")
    try:
        if q.get("strike_price_gte"):
            mask &= chain.strike >= float(q["strike_price_gte"])
        if q.get("strike_price_lte"):
            mask &= chain.strike <= float(q["strike_price_lte"])
        days = chain.expiration.astype("datetime64[D]")
        for name, keep in (("expiration_date", np.equal), ("expiration_date_gte", np.greater_equal)):
            if q.get(name):
                mask &= keep(days, np.datetime64(date.fromisoformat(q[name])))
        if q.get("expiration_date_lte"):
            mask &= days <= np.datetime64(date.fromisoformat(q["expiration_date_lte"]))
    except ValueError as exc:
        raise bad(f"invalid filter: {exc}") from exc
    rows = np.flatnonzero(mask)
    rows = rows[np.lexsort((chain.strike[rows], ~chain.is_call[rows], chain.expiration[rows]))]
    limit = parse_int(q.get("limit"), 100, "limit", 1, 1000, _err(422))
    token = _token(ctx)
    offset = int(token["o"]) if token else 0
    page = rows[offset : offset + limit]
    snapshots = wire.option_snapshots(chain, page)
    next_token = encode_cursor({"o": offset + limit}) if offset + limit < len(rows) else None
    return Payload(
        {"snapshots": snapshots, "next_page_token": next_token}, [list(snapshots.values())], [chain.underlying]
    )
