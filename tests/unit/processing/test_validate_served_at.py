"""Bars judged against the instant the vendor served them: from the future (an error) or still
forming (provisional, no defect), and coverage that expects only the windows closed by then."""

from __future__ import annotations

import pandas as pd
import pytest

from core import model
from quality.score import quality_report
from quality.validate import FLAGS, REASON, Rule, validate_bars
from tests.support.quality import bars, session_bars

AT_1411 = pd.Timestamp("2024-06-03 14:11:30", tz="America/New_York")
AFTER_CLOSE = pd.Timestamp("2024-06-03 16:30", tz="America/New_York")


def test_the_provisional_bit_is_the_models() -> None:
    assert Rule.PROVISIONAL == model.PROVISIONAL_FLAG and Rule.FUTURE_TS.code == "future_ts"


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_a_bar_from_the_future_is_rejected_in_either_mode(mode: str) -> None:
    frame = bars([{"ts": "2024-06-03 18:10"}, {"ts": "2024-06-03 19:59"}])  # 14:10 and 15:59 New York
    result = validate_bars(frame, mode=mode, served_at=AT_1411)
    assert result.accepted["ts"].tolist() == [pd.Timestamp("2024-06-03 18:10", tz="UTC")]
    assert result.rejected[REASON].tolist() == ["future_ts"]
    assert result.rule_counts["future_ts"] == 1


def test_a_minute_still_forming_is_accepted_provisional_even_in_strict_mode() -> None:
    served = pd.Timestamp("2024-06-03 14:10:30", tz="America/New_York")
    frame = bars([{"ts": "2024-06-03 18:09"}, {"ts": "2024-06-03 18:10"}])
    result = validate_bars(frame, mode="strict", served_at=served)
    assert result.accepted[FLAGS].tolist() == [0, Rule.PROVISIONAL]
    assert result.rejected.empty and "provisional" not in result.rule_counts


def test_todays_daily_bar_is_provisional_until_the_close() -> None:
    daily = session_bars("AAPL", "2024-05-28", "2024-06-03", timeframe="1day")
    forming = validate_bars(daily, served_at=AT_1411)
    assert forming.accepted[FLAGS].tolist() == [0, 0, 0, 0, Rule.PROVISIONAL]
    final = validate_bars(daily, served_at=AFTER_CLOSE)
    assert final.accepted[FLAGS].tolist() == [0] * 5


def test_coverage_expects_only_the_windows_closed_when_served() -> None:
    minutes = session_bars("AAPL", "2024-06-03", "2024-06-03")
    served = minutes[minutes["ts"] < pd.Timestamp("2024-06-03 18:11", tz="UTC")]  # 09:30 .. 14:10
    result = validate_bars(served, served_at=AT_1411, start="2024-06-03", end="2024-06-03", symbols=["AAPL"])
    assert result.coverage[["expected", "present", "missing"]].values.tolist() == [[281, 281, 0]]
    assert result.gaps.empty
    later = validate_bars(served, served_at=AFTER_CLOSE, start="2024-06-03", end="2024-06-03", symbols=["AAPL"])
    assert later.coverage["missing"].tolist() == [109]  # the same bars served after the close: a gap


def test_a_forming_daily_bar_scores_like_a_final_one() -> None:
    daily = session_bars("AAPL", "2024-05-28", "2024-06-03", timeframe="1day")
    result = validate_bars(daily, served_at=AT_1411, start="2024-05-28", end="2024-06-03", symbols=["AAPL"])
    assert result.coverage["expected"].tolist() == [1] * 5 and result.coverage["valid"].tolist() == [1] * 5
    assert quality_report(result).score == pytest.approx(1.0)
