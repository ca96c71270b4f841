from datetime import UTC, datetime

import pandas as pd

from core import model
from sources.records import RECORDS_DATASET, parse_records, records_page


def one_bar() -> pd.DataFrame:
    return model.frame(
        model.BARS,
        {
            "symbol": ["AAPL"],
            "ts": ["2024-03-04T05:00:00Z"],
            "timeframe": "1day",
            "open": [1.0],
            "high": [2.0],
            "low": [0.5],
            "close": [1.5],
            "volume": [10],
            "source": "custom",
        },
        what="test",
    )


def test_a_records_page_parses_back_into_its_frame():
    frame = one_bar()
    start, end = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)
    page = records_page("custom", frame, symbol="AAPL", start=start, end=end, timeframe="1day", schema="bars")
    assert page.request.dataset == RECORDS_DATASET
    pd.testing.assert_frame_equal(parse_records(page.request, page.payload), frame)
