import asyncio
import itertools
from datetime import UTC, datetime

import pytest

from sources.base import SourceContext, SymbolRequest
from sources.yahoo import YahooSource

START, END = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data_type", "dataset"), [("market_data", "chart"), ("corporate_actions", "corporate_actions")]
)
def test_every_data_type_starts_with_one_chart_request(data_type, dataset):
    source = YahooSource(SourceContext(name="yahoo"))
    first = source.first_requests(SymbolRequest("BRK.B", START, END, "1day", data_type))
    asyncio.run(source.aclose())
    assert [(r.dataset, r.url) for r in first] == [(dataset, "/v8/finance/chart/BRK-B")]


def test_daily_bars_and_actions_run_to_the_vendors_today():
    source = YahooSource(SourceContext(name="yahoo"))
    (bars,) = source.first_requests(SymbolRequest("AAPL", START, END, "1day"))
    (actions,) = source.first_requests(SymbolRequest("AAPL", START, END, "1day", "corporate_actions"))
    asyncio.run(source.aclose())
    assert "period2" not in bars.params and bars.context["end"] == END.isoformat()  # the parser trims
    # every later split is listed, so prices and dividend amounts can be made raw; the parser trims
    assert "period2" not in actions.params and actions.context["end"] == END.isoformat()


def test_minute_bars_are_asked_for_seven_days_at_a_time_without_overlap():
    source = YahooSource(SourceContext(name="yahoo"))
    start, end = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 16, 23, 59, 59, tzinfo=UTC)
    requests = source.first_requests(SymbolRequest("AAPL", start, end, "1min"))
    asyncio.run(source.aclose())
    spans = [(r.params["period1"], r.params["period2"]) for r in requests]
    assert len(spans) == 3 and spans[0][0] == int(start.timestamp()) and spans[-1][1] == int(end.timestamp())
    assert all(b - a <= 7 * 86_400 for a, b in spans)  # Yahoo refuses longer 1m spans
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in itertools.pairwise(spans))
