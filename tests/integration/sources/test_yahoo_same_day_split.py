"""Yahoo served on a split's ex date, over real HTTP from the sandbox: the client dates the page
by its HTTP Date, and the parser undoes the same-day split only when Yahoo has applied it (the
sandbox's ``/_sandbox/late-splits`` serves it late), so the bars equal Polygon's raw bars either way."""

import asyncio
from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import pandas as pd
import pytest

from sandbox import Market
from sandbox.market import SplitEvent
from tests.support.vendors import AS_OF, polygon_client, yahoo_client

PRICES = ["open", "high", "low", "close"]


@pytest.fixture(scope="module")
def split() -> SplitEvent:
    """A split of the sources' sandbox market (seed 7) by at least 2 (a move no session's gap
    mimics), ex a few weeks before its last day."""
    market = Market(7, as_of=AS_OF)
    return next(
        e
        for i in range(400)
        for e in market.splits(f"S{i}")
        if date(2024, 2, 1) <= e.ex_date < AS_OF and max(e.split_to / e.split_from, e.split_from / e.split_to) >= 2
    )


@pytest.fixture
def on_ex_date(sandbox_url: str, split: SplitEvent) -> Iterator[str]:
    """The sandbox at 11:00 New York on the split's ex date; clock and late splits put back after."""
    response = httpx.post(f"{sandbox_url}/_sandbox/clock", json={"now": f"{split.ex_date}T11:00"})
    assert response.status_code == 200, response.text
    try:
        yield sandbox_url
    finally:
        httpx.delete(f"{sandbox_url}/_sandbox/late-splits")
        httpx.delete(f"{sandbox_url}/_sandbox/clock")


def fetch(url: str, split: SplitEvent) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Daily bars of the 10 days before the ex date and minute bars of the last session before it,
    from Yahoo and (raw) from Polygon, and the Yahoo daily page's request context."""
    start, end = str(split.ex_date - timedelta(days=10)), f"{split.ex_date - timedelta(days=1)}T23:59:59"

    async def go():
        yahoo, polygon = yahoo_client(url), polygon_client(url)
        try:
            daily, _ = await yahoo.chart(split.symbol, start, end)
            reference = await polygon.aggregates(split.symbol, start, end, timeframe="1day", adjusted=False)
            last = reference["ts"].max().tz_convert("America/New_York").date()
            minutes = await yahoo.bars(split.symbol, str(last), f"{last}T23:59:59", timeframe="1min")
            minutes_reference = await polygon.aggregates(
                split.symbol, str(last), f"{last}T23:59:59", timeframe="1min", adjusted=False
            )
            page = await anext(yahoo.iter_pages(yahoo.chart_request(split.symbol, start, end)))
            return daily, reference, minutes, minutes_reference, page.request.context
        finally:
            await yahoo.aclose()
            await polygon.aclose()

    return asyncio.run(go())


def assert_same_prices(yahoo: pd.DataFrame, polygon: pd.DataFrame, split: SplitEvent) -> None:
    """Same stamps, prices to Yahoo's 4-decimal rounding, volumes to its rounding of whole adjusted
    shares (a reverse split's 1:k multiplies that by k)."""
    assert len(yahoo) > 0 and list(yahoo["ts"]) == list(polygon["ts"])
    for column in PRICES:
        assert (yahoo[column] - polygon[column]).abs().max() <= 1e-3, column
    assert (yahoo["volume"] - polygon["volume"]).abs().max() <= max(2.0, split.split_from / split.split_to)


def test_a_same_day_split_yahoo_has_applied_is_undone(on_ex_date: str, split: SplitEvent) -> None:
    daily, reference, minutes, minutes_reference, context = fetch(on_ex_date, split)
    assert context["served_on"] == str(split.ex_date)  # the page's HTTP Date, kept with the stored request
    assert_same_prices(daily, reference, split)
    assert_same_prices(minutes, minutes_reference, split)


def test_a_same_day_split_a_late_yahoo_has_not_applied_is_not_undone(on_ex_date: str, split: SplitEvent) -> None:
    httpx.post(f"{on_ex_date}/_sandbox/late-splits", json={"symbol": split.symbol}).raise_for_status()
    daily, reference, minutes, minutes_reference, _ = fetch(on_ex_date, split)
    assert_same_prices(daily, reference, split)  # undoing the split again would be off by its ratio
    assert_same_prices(minutes, minutes_reference, split)
