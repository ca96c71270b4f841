"""Kernel details: the series logarithm of price ratios, and the steady loop agreeing with the warm-up loop."""

from __future__ import annotations

import numpy as np

from tasks.features import FEATURES, FeatureSet
from tasks.features.kernels import LOG_SERIES_MAX, _log_ratio
from tests.unit.features.helpers import random_walk_bars


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


def test_bars_in_the_steady_loop_equal_bars_computed_from_a_state_just_before_them() -> None:
    """Bars fed one at a time after the warm-up each start the steady loop from the state (their
    return measured from the state's previous close), yet must give the bits of one pass."""
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
