"""The upcoming-earnings scanner's call: arguments checked before any query."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.scanners import ScanArgumentError, upcoming_earnings


def test_a_date_means_the_end_of_that_new_york_day() -> None:
    query = upcoming_earnings(30, as_of="2024-06-28", limit=5)
    assert query.function == "upcoming_earnings"
    assert query.args == (30, datetime(2024, 6, 29, 3, 59, 59, 999999, tzinfo=UTC), 5)


def test_an_instant_is_taken_as_given() -> None:
    assert upcoming_earnings(as_of="2024-06-28T14:00:00Z").args[1] == datetime(2024, 6, 28, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": -1}, "days must be a whole number from 0 to 366, got -1"),
        ({"days": 367}, "days must be a whole number from 0 to 366, got 367"),
        ({"limit": 0}, "limit must be a whole number from 1"),
        ({"as_of": "tomorrow"}, "as_of 'tomorrow' is not a date or time"),
    ],
)
def test_bad_arguments_are_refused_with_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ScanArgumentError, match=message):
        upcoming_earnings(**kwargs)
