import pandas as pd
import pytest

from core import model
from core.errors import PermanentSourceError
from sources.yahoo import parse_chart_bars, parse_chart_events
from tests.support.payloads import JAN3_1430_UTC_S, yahoo_chart

DAY = 86_400


def test_daily_chart_bars_are_stamped_at_the_session_like_polygon_and_alpaca():
    chart = yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + DAY],
        {"open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [1.5, 2.5], "volume": [100, 200]},
        symbol="BRK-B",
    )
    bars = parse_chart_bars(chart, timeframe="1day")
    assert list(bars.columns) == list(model.BARS)
    assert bars["symbol"].tolist() == ["BRK.B", "BRK.B"]
    assert bars.loc[0, "ts"] == pd.Timestamp("2023-01-03T05:00:00Z")
    assert bars["volume"].tolist() == [100, 200]


def test_rows_yahoo_pads_with_nulls_are_dropped():
    chart = yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + 60],
        {"open": [1.0, None], "high": [2.0, None], "low": [0.5, None], "close": [1.5, None], "volume": [100, None]},
    )
    assert len(parse_chart_bars(chart, timeframe="1min")) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {
            "chart": {
                "result": None,
                "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
            }
        },
        {"chart": {"result": [], "error": None}},
        yahoo_chart(
            [JAN3_1430_UTC_S], {"open": [1.0, 2.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1]}
        ),
        yahoo_chart([JAN3_1430_UTC_S], {"open": ["x"], "high": ["x"], "low": ["x"], "close": ["x"], "volume": [1]})
        | {"broken": True},
        {"unexpected": 1},
    ],
    ids=["vendor-error", "empty-result", "length-mismatch", "all-unreadable", "no-chart"],
)
def test_malformed_charts_raise_a_typed_error_or_yield_no_bars(payload):
    try:
        bars = parse_chart_bars(payload)
    except PermanentSourceError:
        return
    assert len(bars) == 0  # unreadable prices are treated like Yahoo's null padding


def test_vendor_error_names_the_reason():
    with pytest.raises(PermanentSourceError, match="delisted"):
        parse_chart_bars({"chart": {"result": None, "error": {"code": "Not Found", "description": "maybe delisted"}}})


def test_chart_events_give_splits_and_dividends_on_their_new_york_date():
    events = {
        "dividends": {str(JAN3_1430_UTC_S): {"amount": 0.23, "date": JAN3_1430_UTC_S}},
        "splits": {
            str(JAN3_1430_UTC_S + DAY): {
                "date": JAN3_1430_UTC_S + DAY,
                "numerator": 4,
                "denominator": 1,
                "splitRatio": "4:1",
            }
        },
    }
    chart = yahoo_chart(
        [JAN3_1430_UTC_S], {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1]}, events
    )
    actions = parse_chart_events(chart)
    assert actions["action"].tolist() == ["dividend", "split"]
    assert actions.loc[0, "ex_date"] == pd.Timestamp("2023-01-03T00:00:00Z") and actions.loc[0, "amount"] == 0.23
    assert (actions.loc[1, "new_rate"], actions.loc[1, "old_rate"]) == (4.0, 1.0)
