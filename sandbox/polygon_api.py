"""Polygon REST endpoints: parse the query the way Polygon does, answer from the market, page.

Every `next_url` is absolute (this server's address) and carries an opaque `cursor` holding all
paging state, because the official client follows it without re-sending the original query.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

import numpy as np

from sandbox.handling import (
    Payload,
    RequestContext,
    WireError,
    date_ordinal,
    parse_choice,
    parse_instant,
    parse_int,
    range_bounds,
)
from sandbox.market import canonical_symbol
from sandbox.news import DEFAULT_UNIVERSE, NewsItem, vendor_news
from sandbox.wire import polygon as wire
from sandbox.wire.common import decode_cursor, encode_cursor, rfc3339

TIMESPANS = ("minute", "hour", "day", "week", "month", "quarter", "year")
DAY_NS = 86_400_000_000_000


def _bad(ctx: RequestContext) -> Any:
    return lambda message: WireError(400, wire.error_body(message, ctx.request_id))


def _cursor_state(ctx: RequestContext) -> dict[str, Any] | None:
    token = ctx.query.get("cursor")
    if not token:
        return None
    try:
        return decode_cursor(token)
    except ValueError as exc:
        raise _bad(ctx)(str(exc)) from exc


def _next_url(ctx: RequestContext, path: str, state: dict[str, Any]) -> str:
    return f"{ctx.base_url}{path}?{urlencode({'cursor': encode_cursor(state)})}"


def aggregates(ctx: RequestContext) -> Payload:
    bad = _bad(ctx)
    p = ctx.path
    ticker = p["ticker"]
    state = _cursor_state(ctx) or {}
    q = {**ctx.query, **state}
    mult = parse_int(p["multiplier"], 1, "multiplier", 1, 100_000, bad)
    span = p["timespan"]
    if span not in TIMESPANS:
        raise bad(f"Invalid timespan '{span}'. Use one of: {', '.join(TIMESPANS)}")
    try:
        start = parse_instant(p["from"], int_unit_ns=1_000_000)
        end = parse_instant(p["to"], end_of_day=True, int_unit_ns=1_000_000)
    except ValueError as exc:
        raise bad("Could not parse the time parameter: 'from' or 'to'. Use YYYY-MM-DD or Unix MS Timestamps") from exc
    adjusted = parse_choice(str(q.get("adjusted", "true")).lower(), "true", "adjusted", ("true", "false"), bad)
    sort = parse_choice(q.get("sort"), "asc", "sort", ("asc", "desc"), bad)
    limit = parse_int(str(q["limit"]) if "limit" in q else None, 5000, "limit", 1, 50_000, bad)
    market = ctx.market
    adjustment = "split" if adjusted == "true" else "raw"
    bars, more = market.bars_page(ticker, start, end, span, mult, adjustment, limit, descending=sort == "desc")
    results = wire.agg_results(bars)
    next_url = None
    if more and len(bars):
        last_ms = int(bars.t_ns[-1]) // 1_000_000
        frm, to = (last_ms + 1, p["to"]) if sort == "asc" else (p["from"], last_ms - 1)
        path = f"/v2/aggs/ticker/{ticker}/range/{mult}/{span}/{frm}/{to}"
        next_url = _next_url(ctx, path, {"adjusted": adjusted, "sort": sort, "limit": limit})
    body = wire.aggs_body(ticker, results, len(results), adjusted == "true", ctx.request_id, next_url)
    return Payload(body, [results] if results else [], [canonical_symbol(ticker)])


def _ticks(ctx: RequestContext, kind: str) -> Payload:
    bad = _bad(ctx)
    ticker = ctx.path["ticker"]
    state = _cursor_state(ctx)
    market = ctx.market
    if state is None:
        low, high = range_bounds(ctx.query, "timestamp", lambda t, end: parse_instant(t, end_of_day=end), bad)
        if low is None and high is None:  # no range: the latest session
            last = market.last_session
            low, high = int(market.calendar.midnight_ns[last]), int(market.calendar.midnight_ns[last]) + DAY_NS
        low = low if low is not None else 0
        high = high if high is not None else int(market.calendar.close_ns[market.last_session])
        order = parse_choice(ctx.query.get("order"), "desc", "order", ("asc", "desc"), bad)
        limit = parse_int(ctx.query.get("limit"), 1000, "limit", 1, 50_000, bad)
        parse_choice(ctx.query.get("sort"), "timestamp", "sort", ("timestamp",), bad)
        state = {"lo": low, "hi": high, "order": order, "limit": limit, "session": None, "pos": 0}
    results: list[dict[str, Any]] = []
    if market.exists(ticker):
        tape = market.profile(ticker).tape
        desc = state["order"] == "desc"
        sessions = list(market.tick_sessions(state["lo"], state["hi"], descending=desc))
        if state["session"] is not None:
            sessions = [s for s in sessions if (s <= state["session"] if desc else s >= state["session"])]
        pos = state["pos"]
        high = min(int(state["hi"]), market.now_ns())  # nothing after the sandbox's now
        for session in sessions:
            ticks = market.trades(ticker, session) if kind == "trades" else market.quotes(ticker, session)
            t = ticks.t_ns
            idx = np.flatnonzero((t >= state["lo"]) & (t <= high))
            if desc:
                idx = idx[::-1]
            if session != state["session"]:
                pos = 0
            take = idx[pos : pos + state["limit"] - len(results)]
            chunk = ticks.take(take)
            results += wire.trade_results(chunk, tape, session) if kind == "trades" else wire.quote_results(chunk, tape)
            if len(results) >= state["limit"]:
                next_pos = pos + len(take)
                if next_pos < len(idx):
                    state = {**state, "session": session, "pos": next_pos}
                else:
                    following = sessions[sessions.index(session) + 1 :]
                    state = {**state, "session": following[0], "pos": 0} if following else {}
                break
        else:
            state = {}
    else:
        state = {}
    next_url = _next_url(ctx, f"/v3/{kind}/{ticker}", state) if state.get("session") is not None else None
    return Payload(wire.list_body(results, ctx.request_id, next_url), [results], [canonical_symbol(ticker)])


def trades(ctx: RequestContext) -> Payload:
    return _ticks(ctx, "trades")


def quotes(ctx: RequestContext) -> Payload:
    return _ticks(ctx, "quotes")


def _paged_list(
    ctx: RequestContext, path: str, rows: list[Any], render: Any, default_limit: int, max_limit: int, symbols: list[str]
) -> Payload:
    """Offset paging over an already filtered and ordered row list (reference endpoints are small)."""
    bad = _bad(ctx)
    state = _cursor_state(ctx)
    if state is None:
        state = {
            "offset": 0,
            "limit": parse_int(ctx.query.get("limit"), default_limit, "limit", 1, max_limit, bad),
            "query": {k: v for k, v in ctx.query.items() if k not in ("apiKey", "cursor")},
        }
    offset, limit = int(state["offset"]), int(state["limit"])
    results = [render(r) for r in rows[offset : offset + limit]]
    next_url = None
    if offset + limit < len(rows):
        next_url = _next_url(ctx, path, {**state, "offset": offset + limit})
    return Payload(wire.list_body(results, ctx.request_id, next_url), [results], symbols)


def _effective_query(ctx: RequestContext) -> dict[str, str]:
    state = _cursor_state(ctx)
    return dict(state["query"]) if state else dict(ctx.query)


def _symbols(query: dict[str, str]) -> list[str]:
    ticker = query.get("ticker")
    return [canonical_symbol(ticker)] if ticker else list(DEFAULT_UNIVERSE)


def _date_filter(query: dict[str, str], name: str, bad: Any) -> tuple[int, int]:
    low, high = range_bounds(query, name, date_ordinal, bad)
    return (low if low is not None else date.min.toordinal(), high if high is not None else date.max.toordinal())


def splits(ctx: RequestContext) -> Payload:
    bad = _bad(ctx)
    query = _effective_query(ctx)
    symbols = _symbols(query)
    low, high = _date_filter(query, "execution_date", bad)
    reverse = query.get("reverse_split")
    order = parse_choice(query.get("order"), "desc", "order", ("asc", "desc"), bad)
    rows = [e for s in symbols for e in ctx.market.splits(s) if low <= e.ex_date.toordinal() <= high]
    if reverse in ("true", "false"):
        rows = [e for e in rows if (e.split_from > e.split_to) == (reverse == "true")]
    rows.sort(key=lambda e: (e.ex_date, e.symbol), reverse=order == "desc")
    return _paged_list(ctx, "/v3/reference/splits", rows, wire.split_result, 10, 1000, symbols)


def dividends(ctx: RequestContext) -> Payload:
    bad = _bad(ctx)
    query = _effective_query(ctx)
    symbols = _symbols(query)
    low, high = _date_filter(query, "ex_dividend_date", bad)
    order = parse_choice(query.get("order"), "desc", "order", ("asc", "desc"), bad)
    rows = [e for s in symbols for e in ctx.market.dividends(s) if low <= e.ex_date.toordinal() <= high]
    rows.sort(key=lambda e: (e.ex_date, e.symbol), reverse=order == "desc")
    return _paged_list(ctx, "/v3/reference/dividends", rows, wire.dividend_result, 10, 1000, symbols)


def news(ctx: RequestContext) -> Payload:
    bad = _bad(ctx)
    query = _effective_query(ctx)
    symbols = [s for s in _symbols(query) if ctx.market.exists(s)]
    low, high = range_bounds(query, "published_utc", lambda t, end: parse_instant(t, end_of_day=end), bad)
    market = ctx.market
    high = high if high is not None else int(market.calendar.midnight_ns[market.last_session]) + DAY_NS - 1
    low = low if low is not None else high - 30 * DAY_NS
    order = parse_choice(query.get("order"), "desc", "order", ("asc", "desc"), bad)
    rows = news_items("polygon", market, symbols, low, min(high, market.now_ns()), descending=order == "desc")

    def render(item: NewsItem) -> dict[str, Any]:
        return wire.news_result(item, rfc3339(np.array([item.t_ns]))[0])

    return _paged_list(ctx, "/v2/reference/news", rows, render, 10, 1000, symbols)


def news_items(vendor: str, market: Any, symbols: list[str], low: int, high: int, descending: bool) -> list[NewsItem]:
    """``vendor``'s copies of every story about ``symbols`` published in [low, high], in time order."""
    tables = {sym: market.news(sym) for sym in symbols}
    return vendor_news(vendor, tables, low, high, market.now_ns(), descending)


def _chain_rows(ctx: RequestContext, query: dict[str, str], chain: Any) -> list[int]:
    """The contracts of a chain the query's filters keep (strike_price, expiration_date with their
    .gt/.gte/.lt/.lte forms, contract_type), in the order asked (sort, order)."""
    bad = _bad(ctx)
    mask = np.ones(len(chain), dtype=bool)
    try:
        lo, hi = range_bounds(query, "strike_price", lambda t, end: round(float(t) * 1000), bad)
    except ValueError as exc:
        raise bad(f"invalid strike_price: {exc}") from exc
    strikes_milli = np.round(chain.strike * 1000).astype(np.int64)
    if lo is not None:
        mask &= strikes_milli >= lo
    if hi is not None:
        mask &= strikes_milli <= hi
    elo, ehi = range_bounds(query, "expiration_date", date_ordinal, bad)
    exp_ord = chain.expiration.astype(np.int64) + date(1970, 1, 1).toordinal()
    if elo is not None:
        mask &= exp_ord >= elo
    if ehi is not None:
        mask &= exp_ord <= ehi
    ctype = (
        parse_choice(query.get("contract_type"), "", "contract_type", ("call", "put"), bad)
        if query.get("contract_type")
        else ""
    )
    if ctype:
        mask &= chain.is_call == (ctype == "call")
    sort = parse_choice(query.get("sort"), "ticker", "sort", ("ticker", "expiration_date", "strike_price"), bad)
    order = parse_choice(query.get("order"), "asc", "order", ("asc", "desc"), bad)
    idx = np.flatnonzero(mask)
    keys = {
        "ticker": (chain.expiration[idx], ~chain.is_call[idx], chain.strike[idx]),
        "expiration_date": (chain.strike[idx], chain.expiration[idx]),
        "strike_price": (chain.expiration[idx], chain.strike[idx]),
    }[sort]
    idx = idx[np.lexsort(keys)]
    if order == "desc":
        idx = idx[::-1]
    return [int(i) for i in idx]


def options_chain(ctx: RequestContext) -> Payload:
    query = _effective_query(ctx)
    underlying = ctx.path["underlying"]
    market = ctx.market
    if not market.exists(underlying):
        return Payload(wire.list_body([], ctx.request_id, None), [[]], [canonical_symbol(underlying)])
    chain = market.option_chain(underlying)
    rows = _chain_rows(ctx, query, chain)
    return _paged_list(
        ctx,
        f"/v3/snapshot/options/{underlying}",
        rows,
        lambda i: wire.option_results(chain, np.array([i]))[0],
        10,
        250,
        [canonical_symbol(underlying)],
    )


def options_contracts(ctx: RequestContext) -> Payload:
    """/v3/reference/options/contracts: the listed contracts of ``underlying_ticker`` (required
    here: the sandbox does not list every contract of the market). ``expired=true`` lists none:
    the sandbox keeps no history of expired contracts."""
    bad = _bad(ctx)
    query = _effective_query(ctx)
    underlying = query.get("underlying_ticker")
    if not underlying:
        raise bad(
            "The underlying_ticker parameter is required in this sandbox (listing every contract is not emulated)"
        )
    expired = parse_choice(query.get("expired"), "false", "expired", ("true", "false"), bad)
    market = ctx.market
    if expired == "true" or not market.exists(underlying):
        return Payload(wire.list_body([], ctx.request_id, None), [[]], [canonical_symbol(underlying)])
    chain = market.option_chain(underlying)
    rows = _chain_rows(ctx, query, chain)
    return _paged_list(
        ctx,
        "/v3/reference/options/contracts",
        rows,
        lambda i: wire.option_contract_result(chain, i),
        10,
        1000,
        [canonical_symbol(underlying)],
    )


def financials(ctx: RequestContext) -> Payload:
    bad = _bad(ctx)
    query = _effective_query(ctx)
    ticker = query.get("ticker")
    if not ticker:
        raise bad("The ticker parameter is required in this sandbox (filtering by cik/company is not emulated)")
    market = ctx.market
    timeframe = (
        parse_choice(query.get("timeframe"), "", "timeframe", ("annual", "quarterly"), bad)
        if query.get("timeframe")
        else ""
    )
    flo, fhi = _date_filter(query, "filing_date", bad)
    plo, phi = _date_filter(query, "period_of_report_date", bad)
    sort = parse_choice(
        query.get("sort"), "period_of_report_date", "sort", ("filing_date", "period_of_report_date"), bad
    )
    order = parse_choice(query.get("order"), "desc", "order", ("asc", "desc"), bad)
    sym = canonical_symbol(ticker)
    rows = market.filings(sym) if market.exists(sym) else []
    rows = [
        f
        for f in rows
        if (not timeframe or f.timeframe == timeframe)
        and flo <= f.filing_date.toordinal() <= fhi
        and plo <= f.end_date.toordinal() <= phi
    ]
    rows.sort(
        key=lambda f: (f.filing_date if sort == "filing_date" else f.end_date, f.timeframe), reverse=order == "desc"
    )
    profile = market.profile(sym) if rows else None

    def render(f: Any) -> dict[str, Any]:
        assert profile is not None
        return wire.financial_result(f, sym, profile.cik, profile.name)

    return _paged_list(ctx, "/vX/reference/financials", rows, render, 10, 100, [sym])


def earnings(ctx: RequestContext) -> Payload:
    """Benzinga's earnings calendar as Polygon serves it (`/benzinga/v1/earnings`): filters
    `ticker` (or `ticker.any_of`), `date.gte/lte`, `sort` date.asc|date.desc, `limit` up to 50,000."""
    bad = _bad(ctx)
    query = _effective_query(ctx)
    tickers = query.get("ticker.any_of") or query.get("ticker")
    if not tickers:
        raise bad("The ticker parameter is required in this sandbox (the whole-market calendar is not emulated)")
    symbols = [canonical_symbol(t) for t in tickers.split(",") if t.strip()]
    low, high = _date_filter(query, "date", bad)
    sort = parse_choice(query.get("sort"), "date.asc", "sort", ("date.asc", "date.desc"), bad)
    market = ctx.market
    rows = [(sym, r) for sym in symbols if market.exists(sym) for r in market.earnings(sym)]
    rows = [(sym, r) for sym, r in rows if low <= r.report_date.toordinal() <= high]
    rows.sort(key=lambda row: (row[1].report_date, row[0]), reverse=sort == "date.desc")

    def render(row: tuple[str, Any]) -> dict[str, Any]:
        sym, report = row
        return wire.earnings_result(report, sym, market.profile(sym).name)

    return _paged_list(ctx, "/benzinga/v1/earnings", rows, render, 100, 50_000, symbols)
