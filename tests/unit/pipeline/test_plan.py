"""Incremental runs resume after the committed watermark and skip symbols with nothing new."""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.pipeline.plan import resume_starts
from tasks.pipeline.request import parse_ingest_request

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def request(timeframe: str = "1min", data_type: str = "market_data"):
    return parse_ingest_request(data_type=data_type, symbols=["A", "B", "C"], start_date="2024-03-04",
                                end_date="2024-03-08T23:59:59", timeframe=timeframe, now=NOW)  # fmt: skip


def test_symbols_resume_one_bar_after_their_watermark() -> None:
    marks = {"A": datetime(2024, 3, 6, 20, 59, tzinfo=UTC), "C": datetime(2024, 3, 8, 23, 59, 59, tzinfo=UTC)}
    starts = resume_starts(request(), marks)
    assert starts["A"] == datetime(2024, 3, 6, 21, 0, tzinfo=UTC)
    assert starts["B"] == datetime(2024, 3, 4, tzinfo=UTC)  # no watermark: the whole range
    assert starts["C"] is None  # committed through the end: nothing new


def test_a_watermark_before_the_range_does_not_widen_it() -> None:
    starts = resume_starts(request("1day"), {"A": datetime(2020, 1, 2, tzinfo=UTC)})
    assert starts["A"] == datetime(2024, 3, 4, tzinfo=UTC)


def test_daily_bars_step_a_day() -> None:
    starts = resume_starts(request("1day"), {"B": datetime(2024, 3, 5, 5, 0, tzinfo=UTC)})
    assert starts["B"] == datetime(2024, 3, 6, 5, 0, tzinfo=UTC)
