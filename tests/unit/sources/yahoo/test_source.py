import asyncio
from datetime import UTC, datetime

import pytest

from sources.base import SourceContext, SymbolRequest
from sources.yahoo import YahooSource

START, END = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)


@pytest.mark.parametrize("data_type", ["market_data", "corporate_actions"])
def test_every_data_type_starts_with_one_chart_request(data_type):
    source = YahooSource(SourceContext(name="yahoo"))
    first = source.first_requests(SymbolRequest("BRK.B", START, END, "1day", data_type))
    asyncio.run(source.aclose())
    assert [(r.dataset, r.url) for r in first] == [("chart", "/v8/finance/chart/BRK-B")]
