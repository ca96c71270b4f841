"""The option scanners' calls and their refusals (before any query), and the options request gate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import RequestError
from pipeline.request import parse_ingest_request
from storage.scanners import ScanArgumentError, option_iv_rank, unusual_options


def test_the_calls_name_their_functions_and_arguments():
    assert option_iv_rank(90, min_days=5, limit=10).args == (90, 5, 10)
    assert unusual_options(3.0, 500, limit=20).args == (3.0, 500, 20)
    assert "scan.option_iv_rank" in option_iv_rank().statement().as_string(None).replace('"', "")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: option_iv_rank(0), "lookback_days must be a whole number from 1"),
        (lambda: option_iv_rank(30, min_days=1), "min_days must be a whole number from 2"),
        (lambda: unusual_options(0.0), "min_ratio must be more than 0"),
        (lambda: unusual_options(-1.0), "min_ratio must be a number >= 0"),
        (lambda: unusual_options(2.0, 0), "min_volume must be a whole number from 1"),
    ],
)
def test_bad_arguments_are_refused_with_what_to_pass(build, message):
    with pytest.raises(ScanArgumentError, match=message):
        build()


def test_an_options_request_needs_no_dates_and_a_vendor_with_chains():
    now = datetime(2026, 12, 4, 15, tzinfo=UTC)
    request = parse_ingest_request(data_type="options", symbols="AAPL", start_date=None, end_date=None, now=now)
    assert request.start.date() == request.end.date() == now.date() and request.source == "polygon"
    with pytest.raises(RequestError, match="source 'yahoo' serves no options: use --source polygon"):
        parse_ingest_request(data_type="options", symbols="AAPL", start_date=None, end_date=None, source="yahoo")
