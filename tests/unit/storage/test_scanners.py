"""Scanner calls are built and their arguments checked without a database."""

from __future__ import annotations

import pytest

from core.errors import RequestError
from storage import scanners
from storage.scanners import ScanArgumentError


def test_each_builder_names_its_sql_function_and_arguments() -> None:
    assert scanners.latest_bars("1m").args == ("1min",)
    movers = scanners.top_movers(minutes=15)
    assert (movers.function, movers.args) == ("top_movers_minutes", (15, 20, "both", "1min"))
    sessions = scanners.top_movers(sessions=5, limit=3, direction="down")
    assert (sessions.function, sessions.args) == ("top_movers_sessions", (5, 3, "down"))
    assert scanners.volume_spikes(10, 2.5, timeframe="5min").args == (10, 2.5, "5min", 50)
    assert scanners.opening_gaps(1, "up").args == (1.0, "up", "1min", 50)
    assert scanners.new_highs_lows(20).args == (20, "1day")
    assert scanners.rsi_extremes(80, 20, feature_set="std1-x").args == (80.0, 20.0, "1day", "std1-x")


def test_statement_calls_the_function_with_one_placeholder_per_argument() -> None:
    query = scanners.top_movers(minutes=15).in_schema("bench_storage_scan")

    assert query.statement().as_string() == 'SELECT * FROM "bench_storage_scan"."top_movers_minutes"(%s, %s, %s, %s)'


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: scanners.top_movers(), "exactly one of minutes or sessions, got minutes=None and sessions=None"),
        (lambda: scanners.top_movers(minutes=5, sessions=5), "exactly one of minutes or sessions"),
        (lambda: scanners.top_movers(minutes=-5), "minutes must be a whole number from 1 to 525,600, got -5"),
        (lambda: scanners.top_movers(minutes=True), "minutes must be a whole number"),
        (lambda: scanners.top_movers(minutes=5, limit=0), "limit must be a whole number from 1 to 100,000, got 0"),
        (lambda: scanners.top_movers(minutes=5, direction="flat"), "direction 'flat' is not one of up, down, both"),
        (lambda: scanners.top_movers(minutes=5, timeframe="1day"), "timeframe '1day' cannot be scanned here"),
        (lambda: scanners.latest_bars("1week"), "timeframe '1week' cannot be scanned here"),
        (lambda: scanners.latest_bars("often"), "timeframe 'often' cannot be scanned here"),
        (lambda: scanners.volume_spikes(1), "lookback must be a whole number from 2"),
        (lambda: scanners.volume_spikes(20, float("nan")), "min_z must be a number, got nan"),
        (lambda: scanners.opening_gaps(-0.5), "min_pct must be a number >= 0, got -0.5"),
        (lambda: scanners.new_highs_lows(0), "days must be a whole number from 1"),
        (lambda: scanners.rsi_extremes(30, 70), "below (70) must be less than above (30)"),
        (lambda: scanners.rsi_extremes(101, 30), "above must be a number >= 0 and <= 100, got 101"),
        (lambda: scanners.rsi_extremes(feature_set=" "), "feature_set is empty"),
    ],
)
def test_bad_arguments_are_refused_with_the_value_and_what_is_allowed(build, message: str) -> None:
    with pytest.raises(ScanArgumentError) as caught:
        build()

    assert message in str(caught.value)
    assert isinstance(caught.value, RequestError) and caught.value.exit_code == 2
