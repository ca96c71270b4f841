from datetime import UTC, date, datetime

from core.calendar import closed_reason, new_york_date


def test_thanksgiving_is_a_closed_day() -> None:
    assert closed_reason(date(2026, 11, 26)) == "NYSE holiday (Thursday 2026-11-26)"


def test_a_weekend_is_a_closed_day() -> None:
    assert closed_reason(date(2026, 11, 28)).startswith("weekend (Saturday")


def test_a_regular_day_and_a_half_day_trade() -> None:
    assert closed_reason(date(2026, 11, 25)) is None
    assert closed_reason(date(2026, 11, 27)) is None  # the day after Thanksgiving closes at 13:00


def test_the_new_york_date_is_new_yorks() -> None:
    # 03:00 UTC on the 27th is still the 26th (Thanksgiving) in New York
    assert new_york_date(datetime(2026, 11, 27, 3, 0, tzinfo=UTC)) == date(2026, 11, 26)
    assert new_york_date(datetime(2026, 11, 27, 3, 0)) == date(2026, 11, 26)
