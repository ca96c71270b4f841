import asyncio
from datetime import UTC, datetime

from sources.alpaca import AlpacaSource, parse_bars
from sources.base import SourceContext, SymbolRequest
from sources.http import Request
from tests.support.payloads import alpaca_bar

START, END = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)


def alpaca_source() -> AlpacaSource:
    return AlpacaSource(SourceContext(name="alpaca", api_key="k", secret_key="s"))


def test_market_data_starts_with_raw_bars():
    source = alpaca_source()
    first = source.first_requests(SymbolRequest("BRK.B", START, END, "1min"))
    asyncio.run(source.aclose())
    assert [(r.dataset, r.params["adjustment"], r.params["symbols"]) for r in first] == [("bars", "raw", "BRK.B")]


def test_corporate_actions_start_with_the_corporate_actions_endpoint():
    source = alpaca_source()
    first = source.first_requests(SymbolRequest("AAPL", START, END, "1day", "corporate_actions"))
    asyncio.run(source.aclose())
    assert [r.dataset for r in first] == ["corporate_actions"]


def test_stored_pages_parse_with_the_bars_parser():
    payload = {"bars": {"AAPL": [alpaca_bar()]}, "next_page_token": None}
    request = Request("alpaca", "bars", "/v2/stocks/bars", {}, {"timeframe": "1day"})
    assert AlpacaSource.parse_page(request, payload).equals(parse_bars(payload, timeframe="1day"))
