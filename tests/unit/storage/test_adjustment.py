import pandas as pd
import pytest

from core.errors import StorageError
from storage.corporate_actions import adjustment_factors, apply_adjustment
from tests.support.storage import (
    DIVIDEND_FACTOR,
    HAND_CLOSES,
    HAND_SPLIT_ADJUSTED,
    HAND_TOTAL_RETURN,
    HAND_VOLUMES,
    bars,
    by_day,
    hand_actions,
    hand_daily_bars,
)


def test_factors_of_the_hand_example():
    factors = adjustment_factors(hand_actions("X"), hand_daily_bars("X"))
    assert factors["valid_until"].dt.strftime("%Y-%m-%d").tolist() == ["2024-06-06", "2024-06-10"]
    assert factors["valid_from"].isna().tolist() == [True, False]
    assert factors["split_factor"].tolist() == [0.5, 0.5]
    assert factors["total_factor"].tolist() == pytest.approx([0.5 * DIVIDEND_FACTOR, 0.5])


@pytest.mark.parametrize(
    ("adjustment", "expected"), [("split", HAND_SPLIT_ADJUSTED), ("all", HAND_TOTAL_RETURN), ("raw", HAND_CLOSES)]
)
def test_adjusted_closes_of_the_hand_example(adjustment, expected):
    daily = hand_daily_bars("X")
    adjusted = apply_adjustment(daily, adjustment_factors(hand_actions("X"), daily), adjustment)
    assert by_day(adjusted, "close") == pytest.approx(expected)


def test_volumes_are_scaled_by_the_split_only():
    daily = hand_daily_bars("X")
    adjusted = apply_adjustment(daily, adjustment_factors(hand_actions("X"), daily), "all")
    assert by_day(adjusted, "volume") == HAND_VOLUMES


def test_intraday_bars_take_their_session_factor():
    daily = hand_daily_bars("X")
    minutes = pd.concat(
        [bars("X", n=2, start="2024-06-05 19:58", close=104.0), bars("X", n=1, start="2024-06-10 13:30")]
    )
    adjusted = apply_adjustment(minutes, adjustment_factors(hand_actions("X"), daily), "all")
    assert adjusted["close"].tolist() == pytest.approx(
        [104 * 0.5 * DIVIDEND_FACTOR, 105 * 0.5 * DIVIDEND_FACTOR, 100.0]
    )


def test_other_symbols_are_not_adjusted():
    daily = hand_daily_bars("Y")
    adjusted = apply_adjustment(daily, adjustment_factors(hand_actions("X"), hand_daily_bars("X")), "all")
    assert by_day(adjusted, "close") == HAND_CLOSES


def test_a_dividend_without_a_previous_close_is_ignored():
    factors = adjustment_factors(hand_actions("X"), hand_daily_bars("X").iloc[0:0])
    assert factors["total_factor"].tolist() == [0.5, 0.5]


def test_a_dividend_on_a_split_ex_date_is_taken_in_post_split_units():
    actions = hand_actions("X")
    actions.loc[0, "ex_date"] = pd.Timestamp("2024-06-10", tz="UTC")  # $2 on the split's ex date
    factors = adjustment_factors(actions, hand_daily_bars("X"))
    assert factors["total_factor"].tolist() == pytest.approx([0.5 * (1 - 2 / (104 / 2))])


def test_an_unknown_adjustment_is_refused():
    with pytest.raises(StorageError, match="adjustment"):
        apply_adjustment(hand_daily_bars("X"), adjustment_factors(hand_actions("X"), hand_daily_bars("X")), "total")
