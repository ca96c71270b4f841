"""Appending bars from the saved state equals a full recompute; no feature looks ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import DataQualityError
from features import FEATURES, FeatureBuilder, FeatureSet
from tests.support.features import random_walk_bars


class Momentum(FeatureBuilder):
    """A plugin whose value at t needs the 4 bars before t."""

    lookback_bars = 4

    def calculate_features(self, data: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"mom4": data["close"] / data.groupby("symbol")["close"].shift(4) - 1})


def _by_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["symbol", "ts"], ignore_index=True)


@pytest.mark.parametrize("timeframe", ["1day", "1min"])
def test_appending_in_chunks_equals_a_full_recompute(timeframe: str) -> None:
    bars = random_walk_bars(symbols=3, bars=900, timeframe=timeframe, seed=3)
    features = FeatureSet(builders={"rolling": Momentum()})
    full = features.compute(bars).frame

    # uneven cuts per symbol, including cuts inside warm-ups and sessions, and a symbol that starts late
    position = bars.groupby("symbol").cumcount()
    cuts = [(0, 7), (7, 30), (30, 400), (400, 401), (401, 900)]
    late = bars["symbol"].eq("S2") & position.lt(30)
    state, parts = None, []
    for lo, hi in cuts:
        chunk = bars[position.ge(lo) & position.lt(hi) & ~late]
        result = features.compute(chunk) if state is None else features.compute_incremental(state, chunk)
        state = result.state
        parts.append(result.frame)
    late_full = features.compute(bars[bars["symbol"].eq("S2") & ~late]).frame
    incremental = _by_key(pd.concat(parts, ignore_index=True))
    expected = _by_key(pd.concat([full[full["symbol"] != "S2"], late_full], ignore_index=True))

    columns = [*FEATURES, "mom4"]
    np.testing.assert_array_equal(incremental[columns].to_numpy(), expected[columns].to_numpy())
    assert incremental["ts"].equals(expected["ts"])


def test_bars_not_after_the_state_are_refused() -> None:
    bars = random_walk_bars(symbols=1, bars=50)
    state = FeatureSet().compute(bars.iloc[:40]).state
    with pytest.raises(DataQualityError, match="not after the last bar"):
        FeatureSet().compute_incremental(state, bars.iloc[39:])


@pytest.mark.parametrize("timeframe", ["1day", "1min"])
def test_perturbing_future_bars_leaves_past_features_unchanged(timeframe: str) -> None:
    bars = random_walk_bars(symbols=2, bars=800, timeframe=timeframe, seed=11)
    features = FeatureSet(builders={"rolling": Momentum()})
    before = features.compute(bars).frame
    t = bars.groupby("symbol").cumcount().ge(500)
    perturbed = bars.copy()
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.5, 2.0, t.sum())
    for column in ("open", "high", "low", "close"):
        perturbed.loc[t, column] *= scale
    perturbed.loc[t, "volume"] = rng.integers(1, 10_000_000, t.sum())
    after = features.compute(perturbed).frame

    columns = [*FEATURES, "mom4"]
    past = ~t.to_numpy()
    np.testing.assert_array_equal(before.loc[past, columns].to_numpy(), after.loc[past, columns].to_numpy())
    assert not np.allclose(before.loc[~past, "sma"], after.loc[~past, "sma"])  # the perturbation did land
