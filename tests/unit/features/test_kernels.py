"""Kernel details: the series logarithm of price ratios, and the steady passes agreeing with the warm-up loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import FEATURES, FeatureSet
from features.kernels import LOG_SERIES_MAX, FeatureParams, _log_ratio
from tests.support.features import random_walk_bars


def test_the_log_of_a_price_ratio_is_within_two_ulps_of_libm() -> None:
    rng = np.random.default_rng(3)
    small = 1.0 + rng.uniform(-LOG_SERIES_MAX, LOG_SERIES_MAX, 20_000)
    edges = np.nextafter(1.0 + np.array([LOG_SERIES_MAX, -LOG_SERIES_MAX]), 1.0)
    large = np.array([0.5, 0.9, 1.1, 1.5, 3.0, 1e-3, 1e3])
    q = np.concatenate([small, edges, large, [1.0]])

    ours = np.array([_log_ratio(x) for x in q])

    expected = np.log(q)
    assert np.all(np.abs(ours - expected) <= 2 * np.spacing(np.abs(expected)) + 1e-300)
    assert _log_ratio(1.0) == 0.0


def test_bars_in_the_steady_passes_equal_bars_computed_from_a_state_just_before_them() -> None:
    """Bars fed one at a time after the warm-up go through the loop that keeps its windows in the
    state's rings (their return measured from the state's previous close); in one call the same bars
    go through the steady passes, which read the windows from the arrays. The bits must agree."""
    bars = random_walk_bars(symbols=1, bars=80, seed=9)
    features = FeatureSet()
    full = features.compute(bars).frame
    result = features.compute(bars.iloc[:40])
    parts = [result.frame]
    for k in range(40, 80):
        result = features.compute_incremental(result.state, bars.iloc[k : k + 1])
        parts.append(result.frame)
    one_by_one = np.concatenate([p[list(FEATURES)].to_numpy() for p in parts])
    np.testing.assert_array_equal(one_by_one, full[list(FEATURES)].to_numpy())


def _one_bar_at_a_time(features: FeatureSet, bars: pd.DataFrame, first: int) -> np.ndarray:
    result = features.compute(bars.iloc[:first])
    parts = [result.frame]
    for k in range(first, len(bars)):
        result = features.compute_incremental(result.state, bars.iloc[k : k + 1])
        parts.append(result.frame)
    return np.concatenate([p[list(FEATURES)].to_numpy() for p in parts])


@pytest.mark.parametrize("hilo", [1, 2, 5, 20])
@pytest.mark.parametrize("shape", ["falling", "flat", "zigzag", "random"])
def test_rolling_high_and_low_whatever_the_shape_of_the_prices(hilo: int, shape: str) -> None:
    """The steady passes take the rolling extremes block by block (van Herk / Gil-Werman), the
    warm-up loop from its rings: both must equal pandas' rolling max/min, on prices whose extreme
    leaves the window on every bar (falling highs, rising lows), ties everywhere, and zigzags."""
    bars = random_walk_bars(symbols=1, bars=120, seed=5)
    n = len(bars)
    if shape == "falling":
        bars["high"] = np.linspace(200.0, 100.0, n)
        bars["low"] = np.linspace(50.0, 90.0, n)
    elif shape == "flat":
        bars["high"], bars["low"] = 120.0, 60.0
    elif shape == "zigzag":
        bars["high"] = 150.0 + 10.0 * (np.arange(n) % 7)
        bars["low"] = 40.0 - 5.0 * (np.arange(n) % 5)
    if shape != "random":
        bars["open"] = bars["close"] = (bars["high"] + bars["low"]) / 2
    features = FeatureSet(FeatureParams(hilo=hilo))

    full = features.compute(bars).frame
    highest = bars["high"].rolling(hilo).max().to_numpy()
    lowest = bars["low"].rolling(hilo).min().to_numpy()

    np.testing.assert_array_equal(full["dist_high"].to_numpy(), bars["close"].to_numpy() / highest - 1.0)
    np.testing.assert_array_equal(full["dist_low"].to_numpy(), bars["close"].to_numpy() / lowest - 1.0)
    np.testing.assert_array_equal(_one_bar_at_a_time(features, bars, 60), full[list(FEATURES)].to_numpy())
