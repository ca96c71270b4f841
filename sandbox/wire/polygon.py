"""Polygon (Massive) REST wire format: aggregates, v3 trades/quotes, reference data, snapshots.

Field names follow the public API and the official client's models (which build some models
with `Model(**record)`, so an unexpected key would crash the SDK: emit exactly these keys).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from sandbox.fundamentals import EarningsReport, Filing
from sandbox.market import DividendEvent, SplitEvent
from sandbox.news import NewsItem
from sandbox.options import OptionChain
from sandbox.prices import Bars, symbol_hash
from sandbox.ticks import POLYGON_EXCHANGE_IDS, Quotes, Trades

MESSAGES = {
    "no_key": "API Key was not provided",
    "bad_key": "Unknown API Key",
    "rate_limit": "You've exceeded the maximum requests per minute, please wait or upgrade your "
    "subscription to continue. https://polygon.io/pricing",
    "server_error": "Internal server error. Please try again later.",
    "not_found": "Not found",
}


def error_body(message: str, request_id: str, status: str = "ERROR") -> dict[str, Any]:
    return {"status": status, "request_id": request_id, "error": message}


def agg_results(bars: Bars) -> list[dict[str, Any]]:
    t_ms = (bars.t_ns // 1_000_000).tolist()
    cols = zip(
        bars.volume.tolist(),
        bars.vwap.tolist(),
        bars.open.tolist(),
        bars.close.tolist(),
        bars.high.tolist(),
        bars.low.tolist(),
        t_ms,
        bars.trades.tolist(),
        strict=True,
    )
    return [{"v": v, "vw": vw, "o": o, "c": c, "h": h, "l": lo, "t": t, "n": n} for v, vw, o, c, h, lo, t, n in cols]


def aggs_body(
    ticker: str, results: list[dict[str, Any]], query_count: int, adjusted: bool, request_id: str, next_url: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ticker": ticker,
        "queryCount": query_count,
        "resultsCount": len(results),
        "adjusted": adjusted,
    }
    if results:
        body["results"] = results
    body.update({"status": "OK", "request_id": request_id, "count": len(results)})
    if next_url:
        body["next_url"] = next_url
    return body


def list_body(results: list[dict[str, Any]], request_id: str, next_url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"results": results, "status": "OK", "request_id": request_id}
    if next_url:
        body["next_url"] = next_url
    return body


def trade_results(trades: Trades, tape: int, session: int) -> list[dict[str, Any]]:
    cols = zip(
        POLYGON_EXCHANGE_IDS[trades.exchange].tolist(),
        trades.sequence.tolist(),
        trades.t_ns.tolist(),
        trades.price.tolist(),
        trades.size.tolist(),
        strict=True,
    )
    return [
        {
            "exchange": x,
            "id": f"{session}{seq:08d}",
            "participant_timestamp": t - 150_000,
            "price": p,
            "sequence_number": seq,
            "sip_timestamp": t,
            "size": s,
            "tape": tape,
        }
        for x, seq, t, p, s in cols
    ]


def quote_results(quotes: Quotes, tape: int) -> list[dict[str, Any]]:
    cols = zip(
        POLYGON_EXCHANGE_IDS[quotes.ask_exchange].tolist(),
        quotes.ask.tolist(),
        quotes.ask_size.tolist(),
        POLYGON_EXCHANGE_IDS[quotes.bid_exchange].tolist(),
        quotes.bid.tolist(),
        quotes.bid_size.tolist(),
        quotes.t_ns.tolist(),
        quotes.sequence.tolist(),
        strict=True,
    )
    return [
        {
            "ask_exchange": ax,
            "ask_price": ap,
            "ask_size": az,
            "bid_exchange": bx,
            "bid_price": bp,
            "bid_size": bz,
            "participant_timestamp": t - 120_000,
            "sequence_number": seq,
            "sip_timestamp": t,
            "tape": tape,
        }
        for ax, ap, az, bx, bp, bz, t, seq in cols
    ]


def split_result(event: SplitEvent) -> dict[str, Any]:
    return {
        "execution_date": event.ex_date.isoformat(),
        "id": f"E{symbol_hash(f'{event.symbol}:{event.session}'):x}",
        "split_from": event.split_from,
        "split_to": event.split_to,
        "ticker": event.symbol,
    }


def dividend_result(event: DividendEvent) -> dict[str, Any]:
    return {
        "cash_amount": event.cash_amount,
        "currency": "USD",
        "declaration_date": event.declaration_date.isoformat(),
        "dividend_type": "CD",
        "ex_dividend_date": event.ex_date.isoformat(),
        "frequency": 4,
        "id": f"E{event.session:06d}{symbol_hash(event.symbol) % 10**8:08d}",
        "pay_date": event.pay_date.isoformat(),
        "record_date": event.record_date.isoformat(),
        "ticker": event.symbol,
    }


def news_result(item: NewsItem, published_utc: str) -> dict[str, Any]:
    return {
        "id": item.id if isinstance(item.id, str) else f"{item.id:x}",
        "publisher": {
            "name": item.publisher,
            "homepage_url": "https://sandbox.invalid/",
            "logo_url": "https://sandbox.invalid/logo.svg",
            "favicon_url": "https://sandbox.invalid/favicon.ico",
        },
        "title": item.headline,
        "author": item.author,
        "published_utc": published_utc,
        "article_url": item.url,
        "tickers": list(item.symbols),
        "description": item.summary,
        "keywords": [item.sentiment, "earnings"],
        "insights": [
            {
                "ticker": s,
                "sentiment": item.sentiment,
                "sentiment_reasoning": f"The article's wording about {s} is {item.sentiment}.",
            }
            for s in item.symbols
        ],
    }


def option_results(chain: OptionChain, index: np.ndarray) -> list[dict[str, Any]]:
    """Snapshot results: the model's IV and greeks (theta per day, vega per vol point, as Polygon
    sends them), the quote with its defects, the last trade at the model price."""
    out = []
    updated_ns = chain.snapshot_ns
    for i in index.tolist():  # one dict per contract of the page; pages hold at most 250
        price = round(float(chain.price[i]), 2)
        half = max(0.01, round(price * 0.02, 2))
        strike = float(chain.strike[i])
        call = bool(chain.is_call[i])
        bid, ask = float(chain.bid[i]), float(chain.ask[i])
        break_even = strike + price if call else strike - price
        out.append(
            {
                "break_even_price": round(break_even, 4),
                "day": {
                    "change": 0.0,
                    "change_percent": 0.0,
                    "close": price,
                    "high": round(price + half, 2),
                    "last_updated": updated_ns,
                    "low": max(0.01, round(price - half, 2)),
                    "open": price,
                    "previous_close": price,
                    "volume": int(chain.volume[i]),
                    "vwap": price,
                },
                "details": {
                    "contract_type": "call" if call else "put",
                    "exercise_style": "american",
                    "expiration_date": str(chain.expiration[i]),
                    "shares_per_contract": 100,
                    "strike_price": strike,
                    "ticker": chain.occ_ticker(i),
                },
                "greeks": {
                    "delta": round(float(chain.delta[i]), 6),
                    "gamma": round(float(chain.gamma[i]), 6),
                    "theta": round(float(chain.theta[i]), 6),
                    "vega": round(float(chain.vega[i]), 6),
                },
                "implied_volatility": round(float(chain.iv[i]), 6),
                "last_quote": {
                    "ask": ask,
                    "ask_size": 10,
                    "bid": bid,
                    "bid_size": 10 if bid > 0 else 0,
                    "last_updated": int(chain.quote_ns[i]),
                    "midpoint": round((bid + ask) / 2, 4),
                    "timeframe": "DELAYED",
                },
                "last_trade": {
                    "conditions": [209],
                    "exchange": 316,
                    "price": price,
                    "sip_timestamp": int(chain.quote_ns[i]),
                    "size": 1,
                    "timeframe": "DELAYED",
                },
                "open_interest": int(chain.open_interest[i]),
                "underlying_asset": {
                    "change_to_break_even": round(break_even - chain.spot, 4),
                    "last_updated": updated_ns,
                    "price": chain.spot,
                    "ticker": chain.underlying,
                    "timeframe": "DELAYED",
                },
            }
        )
    return out


def option_contract_result(chain: OptionChain, i: int) -> dict[str, Any]:
    """A /v3/reference/options/contracts result."""
    call = bool(chain.is_call[i])
    return {
        "cfi": "OCASPS" if call else "OPASPS",
        "contract_type": "call" if call else "put",
        "exercise_style": "american",
        "expiration_date": str(chain.expiration[i]),
        "primary_exchange": "BATO",
        "shares_per_contract": 100,
        "strike_price": float(chain.strike[i]),
        "ticker": chain.occ_ticker(i),
        "underlying_ticker": chain.underlying,
    }


def _point(value: float, label: str, order: int, unit: str = "USD") -> dict[str, Any]:
    return {"value": value, "unit": unit, "label": label, "order": order}


def financial_result(filing: Filing, symbol: str, cik: str, company: str) -> dict[str, Any]:
    f = filing
    filing_id = f"{cik}-{f.fiscal_year}{f.fiscal_period}{'-A' if f.amended else ''}-{f.filing_date:%Y%m%d}"
    return {
        "start_date": f.start_date.isoformat(),
        "end_date": f.end_date.isoformat(),
        "filing_date": f.filing_date.isoformat(),
        "acceptance_datetime": f"{f.filing_date.isoformat()}T16:05:00Z",
        "timeframe": f.timeframe,
        "fiscal_period": f.fiscal_period,
        "fiscal_year": str(f.fiscal_year),
        "cik": cik,
        "sic": "7372",
        "tickers": [symbol],
        "company_name": company,
        "source_filing_url": f"https://api.sandbox.invalid/v1/reference/sec/filings/{filing_id}",
        "source_filing_file_url": f"https://api.sandbox.invalid/v1/reference/sec/filings/{filing_id}/files",
        "financials": {
            "income_statement": {
                "revenues": _point(f.revenues, "Revenues", 100),
                "cost_of_revenue": _point(f.cost_of_revenue, "Cost Of Revenue", 300),
                "gross_profit": _point(f.gross_profit, "Gross Profit", 800),
                "operating_expenses": _point(f.operating_expenses, "Operating Expenses", 1000),
                "operating_income_loss": _point(f.operating_income, "Operating Income/Loss", 1100),
                "net_income_loss": _point(f.net_income, "Net Income/Loss", 3200),
                "basic_earnings_per_share": _point(f.eps, "Basic Earnings Per Share", 4200, "USD / shares"),
                "diluted_earnings_per_share": _point(f.eps, "Diluted Earnings Per Share", 4300, "USD / shares"),
                "basic_average_shares": _point(f.shares, "Basic Average Shares", 4400, "shares"),
                "diluted_average_shares": _point(f.shares, "Diluted Average Shares", 4500, "shares"),
            },
            "balance_sheet": {
                "assets": _point(f.assets, "Assets", 100),
                "current_assets": _point(round(f.assets * 0.4, -3), "Current Assets", 200),
                "liabilities": _point(f.liabilities, "Liabilities", 600),
                "long_term_debt": _point(f.long_term_debt, "Long-term Debt", 700),
                "equity": _point(f.equity, "Equity", 1400),
                "liabilities_and_equity": _point(f.assets, "Liabilities And Equity", 1900),
            },
            "cash_flow_statement": {
                "net_cash_flow_from_operating_activities": _point(
                    f.operating_cash_flow, "Net Cash Flow From Operating Activities", 100
                ),
                "depreciation_and_amortization": _point(
                    f.depreciation_and_amortization, "Depreciation And Amortization", 200
                ),
                "net_cash_flow": _point(round(f.operating_cash_flow * 0.3, -3), "Net Cash Flow", 1100),
            },
            "comprehensive_income": {
                "comprehensive_income_loss": _point(f.net_income, "Comprehensive Income/Loss", 100),
            },
        },
    }


def earnings_result(report: EarningsReport, symbol: str, company: str) -> dict[str, Any]:
    """One `/benzinga/v1/earnings` result (the keys of the official client's BenzingaEarning)."""
    r = report
    eps_surprise = None if r.actual_eps is None else round(r.actual_eps - r.estimated_eps, 4)
    revenue_surprise = None if r.actual_revenue is None else round(r.actual_revenue - r.estimated_revenue, 2)
    return {
        "benzinga_id": r.report_id,
        "ticker": symbol,
        "company_name": company,
        "currency": "USD",
        "date": r.report_date.isoformat(),
        "time": r.report_time.strftime("%H:%M:%S"),
        "date_status": r.date_status,
        "fiscal_period": r.fiscal_period,
        "fiscal_year": r.fiscal_year,
        "importance": 3,
        "estimated_eps": r.estimated_eps,
        "actual_eps": r.actual_eps,
        "eps_method": "gaap",
        "eps_surprise": eps_surprise,
        "eps_surprise_percent": (
            None if eps_surprise is None or not r.estimated_eps else round(eps_surprise / abs(r.estimated_eps), 4)
        ),
        "estimated_revenue": r.estimated_revenue,
        "actual_revenue": r.actual_revenue,
        "revenue_method": "gaap",
        "revenue_surprise": revenue_surprise,
        "revenue_surprise_percent": (
            None if revenue_surprise is None else round(revenue_surprise / r.estimated_revenue, 4)
        ),
        "last_updated": r.last_updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def date_text(d: date) -> str:
    return d.isoformat()
