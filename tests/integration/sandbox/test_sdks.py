"""The official SDKs, pointed at the sandbox, parse what it serves (bars across pages, ticks, news)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.historical.news import NewsClient
from alpaca.data.requests import CorporateActionsRequest, NewsRequest, StockBarsRequest, StockTradesRequest
from alpaca.data.timeframe import TimeFrame
from massive import RESTClient
from massive.exceptions import BadResponse


def test_massive_lists_minute_aggs_across_pages(no_faults: str) -> None:
    client = RESTClient(api_key="sandbox", base=no_faults, retries=0)
    aggs = list(client.list_aggs("AAPL", 1, "minute", "2024-06-03", "2024-06-07", limit=700))
    assert len(aggs) == 5 * 390  # five full sessions, served in 3 pages of at most 700
    stamps = [a.timestamp for a in aggs]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(a.low <= min(a.open, a.close) and a.high >= max(a.open, a.close) for a in aggs)


def test_massive_daily_aggs_equal_the_minute_aggregation(no_faults: str) -> None:
    client = RESTClient(api_key="sandbox", base=no_faults, retries=0)
    day = client.get_aggs("MSFT", 1, "day", "2024-06-04", "2024-06-04")[0]
    minutes = list(client.list_aggs("MSFT", 1, "minute", "2024-06-04", "2024-06-04", limit=50000))
    assert day.open == minutes[0].open and day.close == minutes[-1].close
    assert day.high == max(m.high for m in minutes) and day.volume == sum(m.volume for m in minutes)


def test_massive_trades_news_splits_options_financials(no_faults: str) -> None:
    client = RESTClient(api_key="sandbox", base=no_faults, retries=0)
    trades = list(client.list_trades("AAPL", timestamp="2024-06-03", order="asc", limit=5000))
    minutes = client.get_aggs("AAPL", 1, "day", "2024-06-03", "2024-06-03")[0]
    assert len(trades) == minutes.transactions and sum(t.size for t in trades) == minutes.volume
    news = list(client.list_ticker_news("TSLA", published_utc_gte="2024-05-01", limit=10))
    assert news and all("TSLA" in n.tickers and n.insights[0].sentiment for n in news)
    chain = list(client.list_snapshot_options_chain("AAPL", params={"limit": 250}))
    assert len(chain) > 250 and all(c.details.strike_price > 0 and c.greeks.delta is not None for c in chain)
    fin = list(client.vx.list_stock_financials("MSFT", timeframe="quarterly", limit=20))
    assert fin and fin[0].financials.income_statement.revenues.value > 0
    splits = list(client.list_splits(limit=1000))
    assert all(s.execution_date <= "2024-06-28" for s in splits)


def test_massive_surfaces_auth_errors(no_faults: str) -> None:
    client = RESTClient(api_key="invalid-key", base=no_faults, retries=0)
    with pytest.raises(BadResponse, match="Unknown API Key"):
        client.get_aggs("AAPL", 1, "day", "2024-06-03", "2024-06-07")


def alpaca(url: str, key: str = "sandbox") -> StockHistoricalDataClient:
    return StockHistoricalDataClient(api_key=key, secret_key="secret", url_override=url)


def test_alpaca_bars_across_pages_and_symbols(no_faults: str) -> None:
    request = StockBarsRequest(
        symbol_or_symbols=["AAPL", "MSFT"],
        timeframe=TimeFrame.Minute,
        start=datetime(2024, 6, 3, tzinfo=UTC),
        end=datetime(2024, 6, 6, tzinfo=UTC),
        adjustment=Adjustment.ALL,
    )
    barset = alpaca(no_faults).get_stock_bars(request)  # alpaca-py pages 10,000 at a time
    assert {s: len(b) for s, b in barset.data.items()} == {"AAPL": 3 * 390, "MSFT": 3 * 390}
    first = barset.data["AAPL"][0]
    assert first.timestamp == datetime(2024, 6, 3, 13, 30, tzinfo=UTC)


def test_alpaca_minute_equals_polygon_minute(no_faults: str) -> None:
    start = datetime(2024, 6, 5, 13, 30, tzinfo=UTC)
    request = StockBarsRequest(
        symbol_or_symbols="NVDA",
        timeframe=TimeFrame.Minute,
        start=start,
        end=datetime(2024, 6, 5, 20, 0, tzinfo=UTC),
        adjustment=Adjustment.SPLIT,
        limit=50,
    )
    a = alpaca(no_faults).get_stock_bars(request).data["NVDA"]
    p = RESTClient(api_key="sandbox", base=no_faults, retries=0).get_aggs(
        "NVDA", 1, "minute", "2024-06-05", "2024-06-05", adjusted=True, limit=50
    )
    assert [(b.open, b.high, b.low, b.close, b.volume, b.trade_count) for b in a] == [
        (b.open, b.high, b.low, b.close, b.volume, b.transactions) for b in p
    ]


def test_alpaca_trades_news_and_corporate_actions(no_faults: str) -> None:
    trades = alpaca(no_faults).get_stock_trades(
        StockTradesRequest(
            symbol_or_symbols="AAPL",
            start=datetime(2024, 6, 3, 13, 30, tzinfo=UTC),
            end=datetime(2024, 6, 3, 14, 0, tzinfo=UTC),
        )
    )
    assert len(trades.data["AAPL"]) > 0 and all(t.size > 0 for t in trades.data["AAPL"])
    news = NewsClient(api_key="sandbox", secret_key="s", url_override=no_faults).get_news(
        NewsRequest(symbols="TSLA,AAPL", start=datetime(2024, 1, 1), end=datetime(2024, 6, 28), limit=60)
    )
    assert len(news.data["news"]) == 60 and all(n.symbols for n in news.data["news"])
    actions = CorporateActionsClient(api_key="sandbox", secret_key="s", url_override=no_faults).get_corporate_actions(
        CorporateActionsRequest(
            symbols=["KO", "PG", "JNJ", "XOM"], start=datetime(2015, 1, 1).date(), end=datetime(2024, 6, 28).date()
        )
    )
    assert actions.data.get("cash_dividends")


def test_alpaca_surfaces_auth_errors(no_faults: str) -> None:
    request = StockBarsRequest(
        symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=datetime(2024, 6, 3, tzinfo=UTC)
    )
    with pytest.raises(APIError) as raised:
        alpaca(no_faults, key="invalid-key").get_stock_bars(request)
    assert raised.value.status_code == 401 and raised.value.code == 40110000
