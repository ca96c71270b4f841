"""The real clients against the market sandbox over real HTTP: formats, pagination, equality of the
one synthetic market across vendors."""

import asyncio

import pandas as pd

from core import model
from tests.support.vendors import AS_OF, alpaca_client, polygon_client, reddit_client, stats, yahoo_client

WEEK = ("2024-06-17", "2024-06-22")  # Mon..Fri sessions, 19th is Juneteenth (closed)


def run(coro):
    return asyncio.run(coro)


def schema_of(frame: pd.DataFrame, schema: dict) -> bool:
    expected = model.empty_frame(schema).dtypes
    return list(frame.columns) == list(schema) and all(frame.dtypes == expected)


def test_polygon_minute_aggregates_paginate_without_gaps_or_duplicates(sandbox_url):
    async def fetch(limit):
        client = polygon_client(sandbox_url)
        try:
            return await client.aggregates("AAPL", *WEEK, timeframe="1min", limit=limit)
        finally:
            await client.aclose()

    paged = run(fetch(500))
    whole = run(fetch(50_000))
    assert schema_of(paged, model.BARS)
    assert len(paged) > 1000  # several sessions of minute bars, so more than two pages of 500
    assert stats(sandbox_url)["vendors"]["polygon"]["total"] >= 3
    assert not paged.duplicated(["symbol", "ts"]).any() and paged["ts"].is_monotonic_increasing
    pd.testing.assert_frame_equal(paged, whole)
    sessions = set(paged["ts"].dt.tz_convert("America/New_York").dt.date.astype(str))
    assert "2024-06-19" not in sessions and len(sessions) == 4


def test_polygon_and_alpaca_serve_the_same_minute_bars(sandbox_url):
    async def fetch():
        polygon, alpaca = polygon_client(sandbox_url), alpaca_client(sandbox_url)
        try:
            p = await polygon.aggregates("MSFT", "2024-06-17", "2024-06-18", timeframe="1min", adjusted=False)
            a = await alpaca.bars(
                ["MSFT"], "2024-06-17T00:00:00Z", "2024-06-19T00:00:00Z", timeframe="1min", adjustment="raw", limit=700
            )
            return p, a
        finally:
            await polygon.aclose()
            await alpaca.aclose()

    polygon, alpaca = run(fetch())
    assert len(polygon) > 0
    merged = polygon.merge(alpaca, on=["symbol", "ts"], suffixes=("_p", "_a"))
    assert len(merged) == len(polygon) == len(alpaca)
    assert (merged["close_p"] == merged["close_a"]).all() and (merged["volume_p"] == merged["volume_a"]).all()


def test_alpaca_multi_symbol_bars_page_with_next_page_token(sandbox_url):
    async def fetch():
        client = alpaca_client(sandbox_url)
        try:
            return await client.bars(["AAPL", "BRK-B", "MSFT"], "2024-06-03", "2024-06-28", limit=10)
        finally:
            await client.aclose()

    bars = run(fetch())
    assert schema_of(bars, model.BARS)
    assert set(bars["symbol"]) == {"AAPL", "BRK.B", "MSFT"}
    assert not bars.duplicated(["symbol", "ts"]).any()
    assert stats(sandbox_url)["vendors"]["alpaca"]["total"] >= 5  # ~57 bars at 10 per page


def test_polygon_trades_and_quotes_follow_v3_cursors(sandbox_url):
    async def fetch():
        client = polygon_client(sandbox_url)
        try:
            start, end = "2024-06-17T13:30:00Z", "2024-06-17T13:35:00Z"
            return await client.trades("AAPL", start, end, limit=200), await client.quotes(
                "AAPL", start, end, limit=200
            )
        finally:
            await client.aclose()

    trades, quotes = run(fetch())
    assert schema_of(trades, model.TRADES) and schema_of(quotes, model.QUOTES)
    assert len(trades) > 200 and trades["ts"].is_monotonic_increasing
    assert (trades["ts"] >= pd.Timestamp("2024-06-17T13:30:00Z")).all()
    assert len(quotes) > 200 and (quotes["ask_price"] >= quotes["bid_price"]).all()


def test_polygon_reference_news_options_and_financials(sandbox_url):
    async def fetch():
        client = polygon_client(sandbox_url)
        try:
            return (
                await client.splits(None, "2000-01-01", AS_OF),
                await client.dividends("AAPL", "2020-01-01", AS_OF),
                await client.news("AAPL", "2024-06-01", AS_OF),
                await client.option_chain("AAPL"),
                await client.financials("AAPL"),
            )
        finally:
            await client.aclose()

    splits, dividends, news, options, financials = run(fetch())
    assert schema_of(splits, model.CORPORATE_ACTIONS) and (splits["action"] == "split").all()
    assert len(dividends) > 0 and (dividends["amount"] > 0).all() and set(dividends["symbol"]) == {"AAPL"}
    assert len(news) > 0 and news["symbols"].str.contains("AAPL").all()
    assert len(options) > 0 and set(options["contract_type"]) <= {"call", "put"} and (options["strike"] > 0).all()
    assert len(financials) > 0 and set(financials["symbol"]) == {"AAPL"}


def test_alpaca_trades_quotes_news_and_corporate_actions(sandbox_url):
    async def fetch():
        client = alpaca_client(sandbox_url)
        try:
            start, end = "2024-06-17T13:30:00Z", "2024-06-17T13:32:00Z"
            return (
                await client.trades(["AAPL"], start, end, limit=100),
                await client.quotes(["AAPL"], start, end, limit=100),
                await client.news(["AAPL"], "2024-06-01", AS_OF),
                await client.corporate_actions(["AAPL", "MSFT"], "2020-01-01", AS_OF),
            )
        finally:
            await client.aclose()

    trades, quotes, news, actions = run(fetch())
    assert len(trades) > 100 and schema_of(trades, model.TRADES)
    assert len(quotes) > 100 and schema_of(quotes, model.QUOTES)
    assert len(news) > 0 and schema_of(news, model.NEWS)
    assert len(actions) > 0 and set(actions["action"]) <= {"split", "dividend"}


def test_yahoo_chart_bars_match_polygon_daily_bars_and_carry_events(sandbox_url):
    async def fetch():
        yahoo, polygon = yahoo_client(sandbox_url), polygon_client(sandbox_url)
        try:
            return (
                await yahoo.chart("AAPL", "2024-06-03", "2024-06-29"),
                await polygon.aggregates("AAPL", "2024-06-03", "2024-06-28", timeframe="1day"),
                await yahoo.corporate_actions("AAPL", "2015-01-01", AS_OF),
            )
        finally:
            await yahoo.aclose()
            await polygon.aclose()

    (bars, _), polygon_bars, actions = run(fetch())
    assert schema_of(bars, model.BARS) and len(bars) == len(polygon_bars)
    assert list(bars["ts"]) == list(polygon_bars["ts"])  # both stamped at the session
    assert (bars["volume"] > 0).all()
    assert schema_of(actions, model.CORPORATE_ACTIONS) and len(actions) > 0


def test_reddit_listing_pages_back_to_the_start(sandbox_url):
    async def fetch():
        client = reddit_client(sandbox_url)
        try:
            return await client.posts("wallstreetbets", "2024-06-20", "2024-06-28")
        finally:
            await client.aclose()

    posts = run(fetch())
    assert schema_of(posts, model.SOCIAL_POSTS) and len(posts) > 0
    assert posts["ts"].min() >= pd.Timestamp("2024-06-20T00:00:00Z")
    assert not posts["id"].duplicated().any()
