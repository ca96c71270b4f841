"""Where an incremental news ingest resumes (pure): a poll an hour before the newest stored item,
a backfill over its whole range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.plan import TEXT_OVERLAP, resume_starts
from pipeline.request import IngestRequest

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
MARK = NOW - timedelta(minutes=7)


def request(start: datetime, data_type: str = "news") -> IngestRequest:
    return IngestRequest(data_type, ("AAPL",), start, NOW, "1day", "polygon")


def test_a_poll_resumes_an_hour_before_the_newest_stored_item() -> None:
    assert resume_starts(request(NOW - timedelta(hours=24)), {"AAPL": MARK}) == {"AAPL": MARK - TEXT_OVERLAP}


def test_a_backfill_takes_its_whole_range_and_a_new_symbol_its_start() -> None:
    old = NOW - timedelta(days=120)
    assert resume_starts(request(old), {"AAPL": MARK}) == {"AAPL": old}
    assert resume_starts(request(old, "social"), {}) == {"AAPL": old}
