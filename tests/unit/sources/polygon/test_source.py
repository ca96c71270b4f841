import asyncio
from datetime import UTC, datetime

from sources.base import SourceContext, SymbolRequest
from sources.http import Request
from sources.polygon import PolygonSource, parse_aggregates
from tests.support.payloads import polygon_agg, polygon_aggs

START, END = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)


def polygon_source() -> PolygonSource:
    return PolygonSource(SourceContext(name="polygon", api_key="k"))


def test_market_data_starts_with_unadjusted_aggregates():
    source = polygon_source()
    first = source.first_requests(SymbolRequest("AAPL", START, END, "1min"))
    asyncio.run(source.aclose())
    assert [(r.dataset, r.params["adjusted"]) for r in first] == [("bars", "false")]
    assert first[0].context == {"symbol": "AAPL", "timeframe": "1min"}


def test_corporate_actions_start_with_splits_and_dividends():
    source = polygon_source()
    first = source.first_requests(SymbolRequest("AAPL", START, END, "1day", "corporate_actions"))
    asyncio.run(source.aclose())
    assert [r.dataset for r in first] == ["splits", "dividends"]


def test_stored_pages_parse_with_the_aggregates_parser():
    payload = polygon_aggs([polygon_agg()])
    request = Request("polygon", "bars", "/v2/aggs", {}, {"symbol": "AAPL", "timeframe": "1day"})
    parsed = PolygonSource.parse_page(request, payload)
    assert parsed.equals(parse_aggregates(payload, timeframe="1day", symbol="AAPL"))
