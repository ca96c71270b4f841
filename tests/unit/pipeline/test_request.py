"""Every bad ingestion request is refused with a clear error before any request or write."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.errors import RequestError
from pipeline.request import parse_ingest_request, parse_symbols

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def ask(**overrides):
    args = {
        "data_type": "market_data",
        "symbols": ["AAPL"],
        "start_date": "2026-10-01",
        "end_date": "2026-10-31",
        "timeframe": "1day",
        "source": "polygon",
        "now": NOW,
    }
    return parse_ingest_request(**{**args, **overrides})


def test_a_good_request_is_normalized() -> None:
    request = ask(symbols="aapl, brk.b,AAPL", timeframe="1d", start_date=date(2026, 10, 1))
    assert request.symbols == ("AAPL", "BRK.B")
    assert request.timeframe == "1day"
    assert request.start == datetime(2026, 10, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"start_date": "2026-11-01", "end_date": "2026-10-01"}, "start_date 2026-11-01 is after end_date 2026-10-01"),
        ({"end_date": "2026-12-01"}, "end_date 2026-12-01 is in the future"),
        ({"start_date": "2027-01-01", "end_date": "2027-01-02"}, "start_date 2027-01-01 is in the future"),
        ({"start_date": "1999-12-31"}, "before 2000-01-01"),
        ({"start_date": "yesterday"}, "start_date 'yesterday' is not a date"),
        ({"timeframe": "2min"}, "unknown timeframe '2min': use one of 1min, 5min, 15min, 1hour, 1day"),
        ({"data_type": "tweets"}, "unknown data_type 'tweets': use one of market_data, corporate_actions"),
        ({"source": "bloomberg"}, "unknown source 'bloomberg'"),
        ({"symbols": []}, "the symbol list is empty"),
        ({"symbols": None}, "no symbols given"),
        ({"symbols": " , "}, "the symbol list is empty"),
        ({"symbols": ["AAPL'; DROP TABLE market.bars;--"]}, "is not a valid ticker"),
        ({"symbols": ["A B"]}, "is not a valid ticker"),
        ({"symbols": [42]}, "is not text"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(overrides: dict, message: str) -> None:
    with pytest.raises(RequestError) as err:
        ask(**overrides)
    assert message in str(err.value)


def test_share_classes_and_index_prefix_are_valid_tickers() -> None:
    assert parse_symbols(["BRK-B", "BF/B", "^GSPC", "SPY", "brk.b"]) == ("BRK.B", "BF.B", "^GSPC", "SPY")
