"""`marketpipe news`'s --since/--until and --symbols parsing (no service)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.errors import RequestError
from marketpipe.cli.news import parse_symbols, parse_when

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def test_dates_times_and_ages() -> None:
    assert parse_when("2026-03-02", "--since") == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_when("2026-03-02T14:30", "--since") == datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    east = parse_when("2026-03-02T14:30+02:00", "--since")
    assert east == datetime(2026, 3, 2, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    assert parse_when("7d", "--since", NOW) == NOW - timedelta(days=7)
    assert parse_when("12h", "--since", NOW) == NOW - timedelta(hours=12)
    assert parse_when("30m", "--since", NOW) == NOW - timedelta(minutes=30)
    assert parse_when(None, "--since") is None


def test_a_bad_time_names_the_option_and_the_forms() -> None:
    with pytest.raises(RequestError, match=r"--until 'last week' is neither an ISO date/time .* nor an age"):
        parse_when("last week", "--until")


def test_symbols() -> None:
    assert parse_symbols(" aapl, msft ,") == ["AAPL", "MSFT"]
    assert parse_symbols(None) is None
    with pytest.raises(RequestError, match="names no ticker"):
        parse_symbols(" , ")
