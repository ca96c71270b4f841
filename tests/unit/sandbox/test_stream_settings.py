"""Stream settings: typed overrides from URL or JSON, layered; bad names and values refused."""

from __future__ import annotations

from datetime import date, time

import pytest

from sandbox.streams.settings import StreamSettings, parse_overrides, universe_symbols


def test_overrides_are_typed_and_later_layers_win() -> None:
    defaults = parse_overrides({"speed": 60, "batch": 10})
    key = parse_overrides({"speed": "600", "from": "10:15"})
    url = parse_overrides({"session": "2024-06-03", "universe": "3", "disconnect_code": "1011"})
    s = StreamSettings.build(defaults, key, url)
    assert (s.speed, s.batch, s.from_time, s.session) == (600.0, 10, time(10, 15), date(2024, 6, 3))
    assert s.universe == ("AAPL", "MSFT", "AMZN") and s.disconnect_code == 1011
    assert s.to_json()["from"] == "10:15:00" and s.to_json()["disconnect_code"] == 1011


@pytest.mark.parametrize(
    "bad",
    [{"sped": 1}, {"from_time": "10:00"}, {"late": 1.5}, {"from": "25"}, {"batch": 0}, {"at_end": "wait"}],
)
def test_bad_overrides_are_refused_with_the_setting_named(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        parse_overrides(bad)


def test_universe_counts_extend_the_news_universe_with_synthetic_symbols() -> None:
    symbols = universe_symbols(22)
    assert symbols[0] == "AAPL" and symbols[-2:] == ("S0001", "S0002") and len(set(symbols)) == 22
