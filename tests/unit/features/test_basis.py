"""Stored features are point-in-time: a split or dividend ex after a bar does not change its values.

The bars are the review's (a 4-for-1 split ex 2024-07-01, a $2 dividend ex 2024-08-15): without
the as-traded basis the SMA of 2024-03-01 read 397.11 with no action stored, 99.28 once the split
was and 96.97 with the dividend too; ATR 8.65 -> 2.16, OBV 2.0M -> 8.0M.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core import model
from features import FEATURES, FeatureSet
from features.basis import PRICE_LEVELS, SCALE_FREE, VOLUME_LEVELS, as_traded
from features.refresh import point_in_time_features
from storage.corporate_actions import adjustment_factors

SPLIT = ("split", "2024-07-01", 4.0, 1.0, math.nan)
DIVIDEND = ("dividend", "2024-08-15", math.nan, math.nan, 2.0)
MARCH_1 = pd.Timestamp("2024-03-01", tz="America/New_York").tz_convert("UTC")
EX_SPLIT = pd.Timestamp("2024-07-01", tz="America/New_York").tz_convert("UTC")


def raw_bars() -> pd.DataFrame:
    """ACME's as-traded daily bars: prices quarter and volume quadruples from the split's ex date."""
    days = pd.bdate_range("2024-01-02", "2024-08-30")
    n = len(days)
    close = 400 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, n)))
    ts = pd.DatetimeIndex([pd.Timestamp(d, tz="America/New_York") for d in days]).tz_convert("UTC")
    post = np.asarray(ts >= EX_SPLIT)
    close = np.where(post, close / 4, close)
    columns = {
        "symbol": "ACME",
        "ts": ts,
        "timeframe": "1day",
        "open": close * 0.999,
        "high": close * 1.01,
        "low": close * 0.99,
        "close": close,
        "volume": np.where(post, 4_000_000, 1_000_000),
        "vwap": None,
        "trade_count": None,
        "source": "polygon",
    }
    return model.frame(model.BARS, columns, what="test bars")


def actions(*rows: tuple[str, str, float, float, float]) -> pd.DataFrame:
    columns = {
        "symbol": ["ACME"] * len(rows),
        "action": [r[0] for r in rows],
        "ex_date": [r[1] for r in rows],
        "new_rate": [r[2] for r in rows],
        "old_rate": [r[3] for r in rows],
        "amount": [r[4] for r in rows],
        "currency": "USD",
        "source": "polygon",
    }
    return model.frame(model.CORPORATE_ACTIONS, columns, what="test actions")


def stored(*rows: tuple[str, str, float, float, float]) -> pd.DataFrame:
    """What a refresh stores for ACME with ``rows`` in the corporate actions table."""
    raw = raw_bars()
    features = point_in_time_features(FeatureSet(), raw, adjustment_factors(actions(*rows), raw), "1day")
    return features.set_index("ts")[list(FEATURES)]


def test_the_features_are_split_into_levels_and_scale_free_ones() -> None:
    assert sorted(PRICE_LEVELS + VOLUME_LEVELS + SCALE_FREE) == sorted(FEATURES)


def test_a_later_split_leaves_earlier_bars_bit_for_bit() -> None:
    before, after = stored(), stored(SPLIT)

    earlier = before.index < EX_SPLIT
    pd.testing.assert_frame_equal(after[earlier], before[earlier])
    assert after.loc[MARCH_1, "sma"] == pytest.approx(397.113355, abs=1e-6)
    assert after.loc[MARCH_1, "atr"] == pytest.approx(8.647936, abs=1e-6)
    assert after.loc[MARCH_1, "obv"] == 2_000_000


def test_a_later_dividend_leaves_earlier_bars_up_to_rounding() -> None:
    # %B divides by the band width: its rounding is relative to that, hence 1e-9
    before, after = stored(SPLIT), stored(SPLIT, DIVIDEND)

    earlier = before.index < pd.Timestamp("2024-08-15", tz="America/New_York")
    np.testing.assert_allclose(after[earlier].to_numpy(), before[earlier].to_numpy(), rtol=1e-9, equal_nan=True)
    assert after.loc[MARCH_1, "sma"] == pytest.approx(397.113355, abs=1e-6)


def test_bars_after_an_action_see_it_adjusted_in_their_windows() -> None:
    features = stored(SPLIT)
    first_after = features.index[features.index >= EX_SPLIT][0]

    assert features.loc[first_after, "ret"] > -0.1  # the split is no -75 % return
    assert features.loc[first_after, "sma"] == pytest.approx(features.loc[MARCH_1:EX_SPLIT, "sma"].iloc[-2] / 4, 0.05)


def test_as_traded_divides_price_levels_and_multiplies_volume_levels() -> None:
    rows = pd.DataFrame({name: [8.0, 8.0] for name in FEATURES})

    converted = as_traded(rows, np.array([0.25, 1.0]), np.array([0.5, 1.0]))

    assert converted.loc[0, "sma"] == 16.0 and converted.loc[0, "obv"] == 2.0 and converted.loc[0, "rsi"] == 8.0
    assert (converted.loc[1] == 8.0).all()
