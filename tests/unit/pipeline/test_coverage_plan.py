"""An incremental run fetches what the source has not stored of the range asked for, not only
what comes after its newest bar (issue 18)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from pipeline.plan import resume_starts, sessions_to_check, uncovered_starts
from pipeline.request import parse_ingest_request

NOW = datetime(2026, 11, 20, tzinfo=UTC)
WEEK = [date(2024, 3, d) for d in (4, 5, 6, 7, 8)]


def request(timeframe: str = "1day", symbols: tuple[str, ...] = ("A", "B")):
    return parse_ingest_request(
        data_type="market_data",
        symbols=list(symbols),
        start_date="2024-03-04",
        end_date="2024-03-08T23:59:59",
        timeframe=timeframe,
        now=NOW,
    )


def stored(pairs: dict[str, list[date]]) -> pd.DataFrame:
    rows = [(symbol, day) for symbol, days in pairs.items() for day in days]
    return pd.DataFrame(rows, columns=["symbol", "session_date"])


def plan(req, marks: dict[str, datetime], have: dict[str, list[date]]):
    resumes = resume_starts(req, marks)
    return uncovered_starts(req, resumes, sessions_to_check(req, resumes), stored(have))


def test_a_range_before_the_first_stored_bar_is_fetched() -> None:
    # Both committed through the 8th; A's bars start on the 7th (a later range was ingested first).
    marks = {s: datetime(2024, 3, 8, 5, tzinfo=UTC) for s in ("A", "B")}
    starts = plan(request(), marks, {"A": WEEK[3:], "B": WEEK})
    assert starts["A"] == datetime(2024, 3, 4, 5, tzinfo=UTC)  # midnight New York of the first session
    assert starts["B"] is None  # every session stored: nothing to fetch


def test_a_session_missing_in_between_moves_the_start_back_to_it() -> None:
    marks = {"A": datetime(2024, 3, 8, 5, tzinfo=UTC)}
    starts = plan(request(symbols=("A",)), marks, {"A": [WEEK[0], WEEK[1], WEEK[3], WEEK[4]]})
    assert starts["A"] == datetime(2024, 3, 6, 5, tzinfo=UTC)  # midnight New York of the 6th


def test_sessions_after_the_watermark_are_not_asked_about() -> None:
    req = request("1min", symbols=("A",))
    resumes = resume_starts(req, {"A": datetime(2024, 3, 5, 20, 59, tzinfo=UTC)})  # the 5th complete
    assert sessions_to_check(req, resumes) == WEEK[:2]
    starts = uncovered_starts(req, resumes, WEEK[:2], stored({"A": WEEK[:2]}))
    assert starts["A"] == datetime(2024, 3, 6, 5, tzinfo=UTC)  # the watermark's answer stands


def test_a_symbol_without_a_watermark_starts_at_the_request_start() -> None:
    req = request()
    resumes = resume_starts(req, {})
    assert sessions_to_check(req, resumes) == []
    assert uncovered_starts(req, resumes, [], stored({})) == {s: datetime(2024, 3, 4, tzinfo=UTC) for s in "AB"}


def test_corporate_actions_have_no_sessions_to_check() -> None:
    req = parse_ingest_request(
        data_type="corporate_actions",
        symbols=["A"],
        start_date="2024-03-04",
        end_date="2024-03-08",
        timeframe="1day",
        now=NOW,
    )
    assert sessions_to_check(req, {"A": None}) == []
