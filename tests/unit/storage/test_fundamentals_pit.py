"""Which close a point-in-time read of fundamentals stands for (storage.fundamentals.close_of)."""

from datetime import UTC, date, datetime

from storage.fundamentals import close_of


def test_a_day_stands_for_the_close_of_the_last_session_on_or_before_it():
    assert close_of(date(2024, 6, 3)) == datetime(2024, 6, 3, 20, tzinfo=UTC)  # 16:00 New York
    assert close_of(date(2024, 6, 8)) == datetime(2024, 6, 7, 20, tzinfo=UTC)  # a Saturday: Friday's
    assert close_of(date(2024, 7, 3)) == datetime(2024, 7, 3, 17, tzinfo=UTC)  # a half day: 13:00
