"""The NYSE calendar: sessions, half days, holidays, DST, expected stamps, alignment."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core import calendar as cal
from core.errors import DataQualityError

NY = "America/New_York"


def test_holiday_is_not_a_session_and_the_neighbours_are() -> None:
    schedule = cal.nyse_sessions("2024-07-03", "2024-07-05")
    assert [str(d) for d in schedule.dates] == ["2024-07-03", "2024-07-05"]


def test_a_range_of_only_a_holiday_or_weekend_is_empty() -> None:
    assert len(cal.nyse_sessions("2024-07-04", "2024-07-04")) == 0
    assert len(cal.nyse_sessions("2024-07-06", "2024-07-07")) == 0


def test_half_day_closes_at_13_new_york() -> None:
    schedule = cal.nyse_sessions("2024-11-29", "2024-11-29")
    close = pd.Timestamp(schedule.close_ns[0], tz="UTC").tz_convert(NY)
    assert (close.hour, close.minute) == (13, 0)
    assert schedule.minutes.tolist() == [210] and schedule.half_days.tolist() == [True]


def test_open_follows_dst_in_utc() -> None:
    schedule = cal.nyse_sessions("2024-03-08", "2024-03-11")  # DST starts Sunday 2024-03-10
    opens = pd.to_datetime(schedule.open_ns, utc=True)
    assert [ts.hour for ts in opens] == [14, 13]
    assert all(ts.tz_convert(NY).strftime("%H:%M") == "09:30" for ts in opens)


@pytest.mark.parametrize(
    ("timeframe", "anchor", "count", "first", "last"),
    [
        ("1min", "clock", 210, "09:30", "12:59"),
        ("5min", "clock", 42, "09:30", "12:55"),
        ("15min", "session", 14, "09:30", "12:45"),
        ("1hour", "clock", 4, "09:00", "12:00"),
        ("1hour", "session", 4, "09:30", "12:30"),
    ],
)
def test_expected_stamps_of_a_half_day(timeframe: str, anchor: cal.Anchor, count: int, first: str, last: str) -> None:
    stamps = cal.expected_timestamps(cal.nyse_sessions("2024-11-29", "2024-11-29"), timeframe, anchor)
    local = stamps.tz_convert(NY).strftime("%H:%M")
    assert (len(stamps), local[0], local[-1]) == (count, first, last)


def test_full_day_minutes_run_from_open_to_one_minute_before_close() -> None:
    stamps = cal.expected_timestamps(cal.nyse_sessions("2024-06-03", "2024-06-03"), "1min")
    assert len(stamps) == 390
    assert stamps[0] == pd.Timestamp("2024-06-03 13:30", tz="UTC")
    assert stamps[-1] == pd.Timestamp("2024-06-03 19:59", tz="UTC")


def test_daily_stamps_are_midnight_new_york_across_dst() -> None:
    stamps = cal.expected_timestamps(cal.nyse_sessions("2024-03-08", "2024-03-11"), "1day")
    assert list(stamps) == [pd.Timestamp("2024-03-08 05:00", tz="UTC"), pd.Timestamp("2024-03-11 04:00", tz="UTC")]
    assert list(stamps) == list(cal.daily_bar_ts([date(2024, 3, 8), date(2024, 3, 11)]))


def test_session_index_maps_by_new_york_date() -> None:
    schedule = cal.nyse_sessions("2024-07-03", "2024-07-05")
    ts = pd.Series(pd.to_datetime(["2024-07-03 13:30", "2024-07-05 03:59", "2024-07-04 15:00"], utc=True))
    # 03:59 UTC on the 5th is still the 4th (a holiday) in New York
    assert schedule.session_index(ts).tolist() == [0, -1, -1]


def test_alignment_and_session_membership_on_a_half_day() -> None:
    schedule = cal.nyse_sessions("2024-11-29", "2024-11-29")
    ts = pd.Series(
        pd.to_datetime(
            ["2024-11-29 14:30", "2024-11-29 17:59", "2024-11-29 18:00", "2024-11-29 14:30:30"],
            utc=True,
            format="ISO8601",
        )
    )
    ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    session = schedule.session_index(ts)
    assert cal.aligned(ns, session, schedule, "1min").tolist() == [True, True, True, False]
    assert cal.in_session(ns, session, schedule, "1min").tolist() == [True, True, False, True]


def test_clock_hour_before_the_open_overlaps_the_session() -> None:
    schedule = cal.nyse_sessions("2024-06-03", "2024-06-03")
    ts = pd.Series(pd.to_datetime(["2024-06-03 13:00", "2024-06-03 12:00", "2024-06-03 13:30"], utc=True))
    ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    session = schedule.session_index(ts)
    assert cal.in_session(ns, session, schedule, "1hour").tolist() == [True, False, True]
    assert cal.aligned(ns, session, schedule, "1hour", "clock").tolist() == [True, True, False]
    assert cal.aligned(ns, session, schedule, "1hour", "session").tolist() == [False, False, True]


def test_weekly_bars_are_refused_with_a_clear_error() -> None:
    with pytest.raises(DataQualityError, match="1week"):
        cal.bar_width_ns("1week")
