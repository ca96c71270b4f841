"""Polygon.io payloads -> canonical frames: pure ``parse_*`` functions, no I/O.

Wire formats (https://polygon.io/docs): aggregates carry ``t`` = window start in Unix ms (grouped
daily rows also ``T``); trades and quotes a nanosecond ``sip_timestamp``; splits, dividends, news,
option chain snapshots and financials their own result objects. A vendor error status in the
payload becomes a :class:`~core.errors.PermanentSourceError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from core import model
from core.errors import PermanentSourceError
from core.json_columns import records_as_columns
from sources.http import BodyReader, Parser, Request

SOURCE = "polygon"


def _results(payload: Any, what: str) -> list[Any]:
    if not isinstance(payload, dict):
        raise PermanentSourceError(f"polygon {what}: expected a JSON object, got {type(payload).__name__}")
    status = payload.get("status")
    if status in ("ERROR", "NOT_AUTHORIZED", "NOT_FOUND"):
        message = payload.get("error") or payload.get("message") or status
        raise PermanentSourceError(f"polygon {what}: vendor status {status}: {message}")
    results = payload.get("results")
    if results is None:
        return []
    if not isinstance(results, list):
        raise PermanentSourceError(f"polygon {what}: 'results' is {type(results).__name__}, not a list")
    return results


_AGGREGATE_FIELDS, _AGGREGATE_OPTIONAL = ("t", "o", "h", "l", "c", "v"), ("vw", "n")


def parse_aggregates(payload: Any, *, timeframe: str = "1day", symbol: str | None = None) -> pd.DataFrame:
    """Aggregates (also grouped daily, whose rows carry ``T``) -> :data:`model.BARS`."""
    results = _results(payload, "aggregates")
    required, optional = _AGGREGATE_FIELDS, _AGGREGATE_OPTIONAL
    grouped = bool(results) and isinstance(results[0], dict) and "T" in results[0]
    raw: Any = None if grouped else model.numeric_columns(results, required, optional)
    if raw is None:  # grouped rows (they carry "T"), no rows, or records with a defect this path names
        records = model.require_keys(results, required, what="polygon aggregates")
        if not len(records):
            return model.empty_frame(model.BARS)
        raw = {name: records.get(name) for name in (*required, *optional, "T")}
    return _aggregates_frame(payload, raw, timeframe, symbol)


def read_aggregates_body(
    body: bytes, *, timeframe: str = "1day", symbol: str | None = None
) -> tuple[Any, pd.DataFrame] | None:
    """An aggregates page straight from its body (:func:`core.json_columns.records_as_columns`):
    (the payload without its ``results``, the frame :func:`parse_aggregates` gives), or None when
    the body is not a page of plain numeric bars (grouped rows, a defect, no rows): parse it then."""
    read = records_as_columns(body, "results", (*_AGGREGATE_FIELDS, *_AGGREGATE_OPTIONAL))
    if read is None:
        return None
    head, columns = read
    if any(name not in columns for name in _AGGREGATE_FIELDS):
        return None
    _results({**head, "results": []}, "aggregates")  # the vendor's error status, as parse_aggregates
    raw = {name: columns.get(name) for name in (*_AGGREGATE_FIELDS, *_AGGREGATE_OPTIONAL)}
    return head, _aggregates_frame(head, raw, timeframe, symbol)


def _aggregates_frame(payload: Any, raw: dict[str, Any], timeframe: str, symbol: str | None) -> pd.DataFrame:
    if raw.get("T") is not None:
        symbols: Any = model.normalize_symbols(raw["T"])
    else:
        ticker = symbol or payload.get("ticker")
        if not ticker:
            raise PermanentSourceError("polygon aggregates: no 'ticker' in the payload and no symbol given")
        symbols = model.normalize_symbol(ticker)
    ts = model.epoch_to_utc(raw["t"], "ms")
    frame_tf = model.canonical_timeframe(timeframe)
    if model.parse_timeframe(frame_tf)[1] in ("day", "week", "month"):
        ts = model.session_start(ts)
    return model.frame(
        model.BARS,
        {
            "symbol": symbols,
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
        what="polygon aggregates",
    )


def parse_trades(payload: Any, *, symbol: str) -> pd.DataFrame:
    raw = model.require_keys(_results(payload, "trades"), ("sip_timestamp", "price", "size"), what="polygon trades")
    if not len(raw):
        return model.empty_frame(model.TRADES)
    return model.frame(
        model.TRADES,
        {
            "symbol": model.normalize_symbol(symbol),
            "ts": model.epoch_to_utc(raw["sip_timestamp"], "ns"),
            "price": raw["price"],
            "size": raw["size"],
            "exchange": _as_str(raw.get("exchange")),
            "trade_id": _as_str(raw.get("id")),
            "conditions": model.join_list_column(raw["conditions"]) if "conditions" in raw else None,
            "tape": _as_str(raw.get("tape")),
            "source": SOURCE,
        },
        what="polygon trades",
    )


def parse_quotes(payload: Any, *, symbol: str) -> pd.DataFrame:
    raw = model.require_keys(
        _results(payload, "quotes"),
        ("sip_timestamp", "bid_price", "ask_price"),
        what="polygon quotes",
    )
    if not len(raw):
        return model.empty_frame(model.QUOTES)
    return model.frame(
        model.QUOTES,
        {
            "symbol": model.normalize_symbol(symbol),
            "ts": model.epoch_to_utc(raw["sip_timestamp"], "ns"),
            "bid_price": raw["bid_price"],
            "bid_size": raw.get("bid_size", 0),
            "bid_exchange": _as_str(raw.get("bid_exchange")),
            "ask_price": raw["ask_price"],
            "ask_size": raw.get("ask_size", 0),
            "ask_exchange": _as_str(raw.get("ask_exchange")),
            "conditions": model.join_list_column(raw["conditions"]) if "conditions" in raw else None,
            "tape": _as_str(raw.get("tape")),
            "source": SOURCE,
        },
        what="polygon quotes",
    )


def parse_splits(payload: Any) -> pd.DataFrame:
    raw = model.require_keys(
        _results(payload, "splits"),
        ("ticker", "execution_date", "split_from", "split_to"),
        what="polygon splits",
    )
    if not len(raw):
        return model.empty_frame(model.CORPORATE_ACTIONS)
    return model.frame(
        model.CORPORATE_ACTIONS,
        {
            "symbol": model.normalize_symbols(raw["ticker"]),
            "action": "split",
            "ex_date": raw["execution_date"],
            "new_rate": raw["split_to"],
            "old_rate": raw["split_from"],
            "source": SOURCE,
        },
        what="polygon splits",
    )


def parse_dividends(payload: Any) -> pd.DataFrame:
    raw = model.require_keys(
        _results(payload, "dividends"),
        ("ticker", "ex_dividend_date", "cash_amount"),
        what="polygon dividends",
    )
    if not len(raw):
        return model.empty_frame(model.CORPORATE_ACTIONS)
    return model.frame(
        model.CORPORATE_ACTIONS,
        {
            "symbol": model.normalize_symbols(raw["ticker"]),
            "action": "dividend",
            "ex_date": raw["ex_dividend_date"],
            "amount": raw["cash_amount"],
            "currency": raw.get("currency"),
            "record_date": raw.get("record_date"),
            "pay_date": raw.get("pay_date"),
            "source": SOURCE,
        },
        what="polygon dividends",
    )


def parse_news(payload: Any) -> pd.DataFrame:
    raw = model.require_keys(_results(payload, "news"), ("id", "published_utc", "title"), what="polygon news")
    if not len(raw):
        return model.empty_frame(model.NEWS)
    publisher = (
        raw["publisher"].map(lambda p: p.get("name") if isinstance(p, dict) else None) if ("publisher" in raw) else None
    )
    return model.frame(
        model.NEWS,
        {
            "id": raw["id"].astype(str),
            "ts": raw["published_utc"],
            "headline": raw["title"],
            "summary": raw.get("description"),
            "author": raw.get("author"),
            "url": raw.get("article_url"),
            "symbols": model.join_list_column(raw["tickers"], normalize=True) if "tickers" in raw else None,
            "publisher": publisher,
            "updated_ts": raw["published_utc"],
            "vendor_sentiment": raw["insights"].map(_insight_labels) if "insights" in raw else None,
            "source": SOURCE,
        },
        what="polygon news",
    )


def _insight_labels(insights: Any) -> str | None:
    """Polygon's per-ticker ``insights`` as ``"AAPL:positive,MSFT:neutral"`` (None without any)."""
    if not isinstance(insights, list):
        return None
    pairs = [
        f"{model.normalize_symbol(str(i['ticker']))}:{str(i['sentiment']).lower()}"
        for i in insights
        if isinstance(i, dict) and i.get("ticker") and i.get("sentiment")
    ]
    return ",".join(pairs) or None


def parse_option_chain(payload: Any, *, underlying: str | None = None) -> pd.DataFrame:
    """Option chain snapshot -> :data:`model.OPTION_SNAPSHOTS` (nested objects flattened)."""
    results = _results(payload, "option chain")
    if not results:
        return model.empty_frame(model.OPTION_SNAPSHOTS)
    if not all(isinstance(r, dict) for r in results):
        raise PermanentSourceError("polygon option chain: results must be objects")
    flat = pd.json_normalize(results)
    required = ("details.ticker", "details.contract_type", "details.expiration_date", "details.strike_price")
    missing = [c for c in required if c not in flat.columns or flat[c].isna().any()]
    if missing:
        raise PermanentSourceError(f"polygon option chain: contracts lack required field(s) {missing}")

    def col(name: str) -> Any:
        return flat[name] if name in flat.columns else None

    if "underlying_asset.ticker" in flat.columns:
        underlyings: Any = model.normalize_symbols(flat["underlying_asset.ticker"].fillna(underlying or ""))
    elif underlying:
        underlyings = model.normalize_symbol(underlying)
    else:
        raise PermanentSourceError("polygon option chain: no underlying ticker in the payload or the call")
    quoted = _first_of(col("last_quote.last_updated"), col("last_trade.sip_timestamp"))
    snapshot = _first_of(col("underlying_asset.last_updated"), quoted)
    quote_ts = model.epoch_to_utc(quoted, "ns") if quoted is not None else None
    ts = model.epoch_to_utc(snapshot, "ns") if snapshot is not None else None
    open_interest = col("open_interest")
    shares = col("details.shares_per_contract")
    return model.frame(
        model.OPTION_SNAPSHOTS,
        {
            "underlying": underlyings,
            "contract": flat["details.ticker"],
            "contract_type": flat["details.contract_type"],
            "expiration": flat["details.expiration_date"],
            "strike": flat["details.strike_price"],
            "shares_per_contract": shares.fillna(100) if shares is not None else 100,
            "implied_volatility": col("implied_volatility"),
            "delta": col("greeks.delta"),
            "gamma": col("greeks.gamma"),
            "theta": col("greeks.theta"),
            "vega": col("greeks.vega"),
            "open_interest": open_interest.fillna(0) if open_interest is not None else 0,
            "bid": col("last_quote.bid"),
            "ask": col("last_quote.ask"),
            "last_price": col("last_trade.price"),
            "underlying_price": col("underlying_asset.price"),
            "ts": ts,
            "bid_size": col("last_quote.bid_size"),
            "ask_size": col("last_quote.ask_size"),
            "volume": col("day.volume"),
            "quote_ts": quote_ts,
            "exercise_style": col("details.exercise_style"),
            "source": SOURCE,
        },
        what="polygon option chain",
    )


def _first_of(*columns: pd.Series | None) -> pd.Series | None:
    """The first non-null value of each row across ``columns`` (absent ones skipped)."""
    present = [c for c in columns if c is not None]
    if not present:
        return None
    out = present[0]
    for other in present[1:]:
        out = out.fillna(other)
    return out


def parse_financials(payload: Any, *, symbol: str | None = None) -> pd.DataFrame:
    """Financial filings -> one row per (filing, statement, line item) in :data:`model.FINANCIALS`."""
    results = _results(payload, "financials")
    rows: dict[str, list[Any]] = {name: [] for name in model.FINANCIALS if name != "source"}
    unzoned: list[str] = []  # filings whose acceptance time has no zone: stored without it
    for filing in results:
        if not isinstance(filing, dict) or not isinstance(filing.get("financials"), dict):
            raise PermanentSourceError("polygon financials: every result needs a 'financials' object")
        tickers = filing.get("tickers") or ([symbol] if symbol else [])
        if not tickers:
            raise PermanentSourceError("polygon financials: a filing names no ticker")
        accepted_at = _acceptance_time(filing)
        if accepted_at is _UNZONED:
            accepted_at = None
            unzoned.append(
                f"{filing.get('acceptance_datetime')!r} of the {filing.get('fiscal_period')} "
                f"{filing.get('fiscal_year')} filing of {_filer(symbol, tickers)} dated {filing.get('filing_date')!r}"
            )
        for statement, items in filing["financials"].items():
            if not isinstance(items, dict):
                continue
            for item, body in items.items():
                if not isinstance(body, dict) or "value" not in body:
                    continue
                rows["symbol"].append(_filer(symbol, tickers))
                rows["period_start"].append(filing.get("start_date"))
                rows["period_end"].append(filing.get("end_date"))
                rows["filing_date"].append(filing.get("filing_date"))
                rows["accepted_at"].append(accepted_at)
                rows["fiscal_period"].append(filing.get("fiscal_period"))
                rows["fiscal_year"].append(_none_or_str(filing.get("fiscal_year")))
                rows["statement"].append(statement)
                rows["item"].append(item)
                rows["value"].append(body["value"])
                rows["unit"].append(body.get("unit"))
    if unzoned:
        logger.warning(
            "polygon financials: {} filing(s) have an acceptance_datetime without a time zone, stored without an "
            "acceptance time (known from the first session close after the filing date; a time stored before is "
            "kept): {}. Its instant is ambiguous (read as UTC it would be hours early); if the vendor sends this "
            "format for good, teach parse_financials its zone and recollect",
            len(unzoned),
            "; ".join(unzoned),
        )
    if not rows["symbol"]:
        return model.empty_frame(model.FINANCIALS)
    return model.frame(model.FINANCIALS, {**rows, "source": SOURCE}, what="polygon financials")


_UNZONED = pd.Timestamp(0)  # sentinel of _acceptance_time: a value without a zone (compared by identity)


def _acceptance_time(filing: dict[str, Any]) -> pd.Timestamp | None:
    """A filing's ``acceptance_datetime`` as an instant; None when absent; :data:`_UNZONED` when it
    has no zone (a naive ISO time, EDGAR's own ``YYYYMMDDHHMMSS``, a number, text): read as UTC it
    would make the filing known hours before it was accepted, and nothing documents the vendor's
    zone for such a value (REFERENCE.md says nothing of the field; the sandbox sends ``...Z``), so
    the caller stores the filing without it rather than refusing the page."""
    value = filing.get("acceptance_datetime")
    if value is None or value == "":
        return None
    try:
        at = pd.Timestamp(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None or at is pd.NaT or at.tzinfo is None:
        return _UNZONED
    return at.tz_convert("UTC")


def _filer(symbol: str | None, tickers: list[Any]) -> str:
    """The symbol a filing is stored under: the one asked for when the filing names it (or names
    none), else the filing's own first ticker, so validation sees a filing of another company."""
    named = [model.normalize_symbol(str(t)) for t in tickers]
    asked = model.normalize_symbol(symbol) if symbol else None
    return asked if asked is not None and (not named or asked in named) else named[0]


def parse_earnings(payload: Any, *, symbol: str | None = None) -> pd.DataFrame:
    """Benzinga's earnings calendar as Polygon serves it (``/benzinga/v1/earnings``) ->
    :data:`model.EARNINGS`, one row per report as known at its ``last_updated``."""
    results = _results(payload, "earnings")
    if not results:
        return model.empty_frame(model.EARNINGS)
    raw = model.require_keys(
        results, ("ticker", "date", "fiscal_period", "fiscal_year", "last_updated"), what="polygon earnings"
    )

    def col(name: str) -> Any:
        return raw[name] if name in raw.columns else None

    times = col("time")
    return model.frame(
        model.EARNINGS,
        {
            "symbol": raw["ticker"].map(lambda t: model.normalize_symbol(str(t))),
            "fiscal_year": raw["fiscal_year"].map(_none_or_str),
            "fiscal_period": raw["fiscal_period"].map(_none_or_str),
            "report_date": pd.to_datetime(raw["date"], utc=True, format="ISO8601"),
            "report_time": _as_str(times),
            "time_of_day": [time_of_day(t) for t in (times if times is not None else [None] * len(raw))],
            "date_status": _as_str(col("date_status")),
            "eps_estimate": col("estimated_eps"),
            "eps_actual": col("actual_eps"),
            "revenue_estimate": col("estimated_revenue"),
            "revenue_actual": col("actual_revenue"),
            "known_at": raw["last_updated"],
            "source": SOURCE,
        },
        what="polygon earnings",
    )


def time_of_day(value: Any) -> str:
    """A report's New York wall time (``HH:MM[:SS]``) as bmo (before the 09:30 open), dmh (during
    market hours) or amc (from the 16:00 close on); unknown when the vendor gives none."""
    if not isinstance(value, str) or len(value) < 5 or value[2] != ":":
        return "unknown"
    try:
        minutes = int(value[:2]) * 60 + int(value[3:5])
    except ValueError:
        return "unknown"
    return "bmo" if minutes < 9 * 60 + 30 else ("amc" if minutes >= 16 * 60 else "dmh")


def _as_str(values: pd.Series | None) -> pd.Series | None:
    if values is None:
        return None
    return values.map(_none_or_str)


def _none_or_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def body_reader_for(request: Request) -> BodyReader | None:
    """The columnar reader of a request's pages, where its dataset has one (bars): see
    :func:`sources.http.paginate`."""
    if request.dataset != "bars":
        return None
    timeframe, symbol = request.context.get("timeframe", "1day"), request.context.get("symbol")
    return lambda body: read_aggregates_body(body, timeframe=timeframe, symbol=symbol)


def parser_for(request: Request) -> Parser:
    """Which parser reads a request's pages; keyed on the dataset so a stored request can be replayed."""
    dataset, symbol = request.dataset, request.context.get("symbol")
    if dataset == "bars":
        timeframe = request.context.get("timeframe", "1day")
        return lambda payload: parse_aggregates(payload, timeframe=timeframe, symbol=symbol)
    if dataset in ("trades", "quotes"):
        if not isinstance(symbol, str):  # their pages do not repeat the ticker
            raise PermanentSourceError(f"polygon {dataset}: the request names no symbol: {request.describe()}")
        parse = parse_trades if dataset == "trades" else parse_quotes
        return lambda payload: parse(payload, symbol=symbol)
    if dataset == "option_snapshots":
        return lambda payload: parse_option_chain(payload, underlying=symbol)
    if dataset == "financials":
        return lambda payload: parse_financials(payload, symbol=symbol)
    if dataset == "earnings":
        return lambda payload: parse_earnings(payload, symbol=symbol)
    parsers = {"splits": parse_splits, "dividends": parse_dividends, "news": parse_news}
    if dataset not in parsers:
        raise PermanentSourceError(f"polygon has no dataset {request.dataset!r}")
    return parsers[dataset]
