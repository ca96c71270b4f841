"""Incremental runs resume after the committed watermark and skip symbols with nothing new."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.plan import resume_starts, unfinished_starts
from pipeline.request import parse_ingest_request

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def request(timeframe: str = "1min", data_type: str = "market_data"):
    return parse_ingest_request(
        data_type=data_type,
        symbols=["A", "B", "C"],
        start_date="2024-03-04",
        end_date="2024-03-08T23:59:59",
        timeframe=timeframe,
        now=NOW,
    )


def test_intraday_symbols_resume_at_whole_sessions() -> None:
    marks = {
        "A": datetime(2024, 3, 6, 20, 59, tzinfo=UTC),  # the 6th's last bar (close 21:00 UTC): next day
        "B": datetime(2024, 3, 7, 15, 0, tzinfo=UTC),  # mid-session: refetch the 7th whole
        "C": datetime(2024, 3, 8, 20, 59, tzinfo=UTC),  # the range's last session is complete
    }
    starts = resume_starts(request(), marks)
    assert starts["A"] == datetime(2024, 3, 7, 5, 0, tzinfo=UTC)  # midnight New York of the 7th
    assert starts["B"] == datetime(2024, 3, 7, 5, 0, tzinfo=UTC)
    assert starts["C"] is None  # committed through the end: nothing new
    assert resume_starts(request(), {})["A"] == datetime(2024, 3, 4, tzinfo=UTC)  # no watermark: everything


def test_a_watermark_before_the_range_does_not_widen_it() -> None:
    starts = resume_starts(request("1day"), {"A": datetime(2020, 1, 2, tzinfo=UTC)})
    assert starts["A"] == datetime(2024, 3, 4, tzinfo=UTC)


def test_daily_bars_step_a_day() -> None:
    starts = resume_starts(request("1day"), {"B": datetime(2024, 3, 5, 5, 0, tzinfo=UTC)})
    assert starts["B"] == datetime(2024, 3, 6, 5, 0, tzinfo=UTC)


def test_corporate_actions_of_a_symbol_with_an_open_letter_are_asked_again_whole() -> None:
    """Splits and dividends share one watermark: after one of them failed it may be past what the
    failed request should have brought, so that symbol asks the request's whole range."""
    actions = request("1day", "corporate_actions")
    resumes = resume_starts(actions, {"A": datetime(2024, 3, 5, tzinfo=UTC), "B": datetime(2024, 3, 5, tzinfo=UTC)})
    starts = unfinished_starts(actions, resumes, {"A"})
    assert starts == {**resumes, "A": datetime(2024, 3, 4, tzinfo=UTC)}
    assert resumes["A"] == datetime(2024, 3, 6, tzinfo=UTC)  # after the watermark otherwise
    bars = request("1day")  # bars have one request a symbol: their letters move nothing
    assert unfinished_starts(bars, resume_starts(bars, {"A": datetime(2024, 3, 5, tzinfo=UTC)}), {"A"})[
        "A"
    ] == datetime(2024, 3, 6, tzinfo=UTC)


def test_pipeline_jobs_put_corporate_actions_first_over_the_longest_lookback() -> None:
    from datetime import date

    from core.settings import BarJob, PipelineSettings
    from pipeline.plan import pipeline_jobs

    bars = [BarJob(timeframe="1day", lookback_days=365), BarJob(timeframe="1min", lookback_days=14)]
    settings = PipelineSettings(symbols=["AAPL", "MSFT"], bars=bars)
    jobs = pipeline_jobs(settings, date(2026, 11, 20))
    assert [(j.data_type, j.timeframe) for j in jobs] == [
        ("corporate_actions", "1day"),
        ("market_data", "1day"),
        ("market_data", "1min"),
    ]
    assert jobs[0].start == date(2025, 11, 20) and jobs[2].start == date(2026, 11, 6)
    assert pipeline_jobs(settings, date(2026, 11, 20), symbols=["TSLA"])[1].symbols == ("TSLA",)


def test_missing_sessions_and_gap_ranges_against_the_calendar() -> None:
    from datetime import date

    import pandas as pd

    from core.calendar import nyse_sessions
    from pipeline.plan import gap_ranges, missing_sessions

    # 2024-07-01..2024-07-10: 7 sessions (07-03 is a half day, 07-04 a holiday)
    schedule = nyse_sessions("2024-07-01", "2024-07-10")
    assert len(schedule) == 7
    a_days, b_days = (1, 2, 3, 8, 10), (1, 2, 3, 5, 8, 9, 10)
    stored = pd.DataFrame(
        {
            "symbol": ["A"] * len(a_days) + ["B"] * len(b_days),
            "session_date": [date(2024, 7, d) for d in (*a_days, *b_days)],
            "bars": [390, 390, 210, 390, 390, 390, 390, 200, 390, 390, 390, 390],
        }
    )
    missing = missing_sessions(stored, schedule, "1min", ["A", "B", "C"])
    as_pairs = {(r.symbol, pd.Timestamp(r.session_date).date()) for r in missing.itertuples()}
    assert ("A", date(2024, 7, 5)) in as_pairs and ("A", date(2024, 7, 9)) in as_pairs
    assert ("B", date(2024, 7, 3)) in as_pairs  # 200 of the half day's 210 bars
    assert ("A", date(2024, 7, 4)) not in as_pairs  # a holiday is never a gap
    assert sum(1 for s, _ in as_pairs if s == "C") == 7  # a symbol with nothing stored misses every session

    ranges = gap_ranges(missing, schedule, max_sessions=3)
    a = [(r.start, r.end) for r in ranges if "A" in r.symbols]
    assert a == [(date(2024, 7, 5), date(2024, 7, 5)), (date(2024, 7, 9), date(2024, 7, 9))]
    c = [(r.start, r.end, r.sessions) for r in ranges if "C" in r.symbols]
    assert c == [
        (date(2024, 7, 1), date(2024, 7, 3), 3),
        (date(2024, 7, 5), date(2024, 7, 9), 3),
        (date(2024, 7, 10), date(2024, 7, 10), 1),
    ]
