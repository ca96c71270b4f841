"""The basis of stored features: each bar's level-valued features in that bar's own (as-traded) units.

Features are computed from backward-adjusted bars, so that a window spanning a split or a dividend
compares like with like (a 2-for-1 split is no -50 % return). But backward adjustment puts every
bar in the units of the newest stored action: a bar's SMA or ATR would read 4x smaller once a later
4-for-1 split is stored, and SMA over the raw close would reveal the split before it happened.

So, before they are stored, each bar's level-valued features are put back into the units that bar
traded in: price levels divided by the bar's cumulative price factor, volume levels (OBV)
multiplied by its split factor (volumes were divided by it). The window's earlier bars then stand
adjusted by exactly the actions between them and the bar, as a computation on the bar's own day
would have had them: a value at bar t depends on actions with ex date <= t only. Every level
feature is linear in the adjusted prices (or volumes) at a fixed factor, so the conversion is
exact up to rounding (exact for power-of-two splits). Scale-free features (returns, volatility,
RSI, %B, volume z-score, distances to high and low, the gap) are the same in every basis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from storage.feature_tables import FEATURES

PRICE_LEVELS: tuple[str, ...] = (
    "sma",
    "ema",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr",
    "vwap",
)
VOLUME_LEVELS: tuple[str, ...] = ("obv",)
SCALE_FREE: tuple[str, ...] = tuple(f for f in FEATURES if f not in PRICE_LEVELS + VOLUME_LEVELS)


def as_traded(features: pd.DataFrame, split_factor: np.ndarray, price_factor: np.ndarray) -> pd.DataFrame:
    """``features`` (rows of adjusted bars) with the standard level features in each row's own basis.

    ``split_factor`` and ``price_factor`` are the factors each row's bar was adjusted with
    (:func:`storage.corporate_actions.bar_factors`), in row order. Other columns are left as they are."""
    if len(split_factor) != len(features) or len(price_factor) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(split_factor)}/{len(price_factor)} factors")
    converted = features.copy()
    for name in PRICE_LEVELS:
        converted[name] = features[name].to_numpy(dtype=np.float64) / price_factor
    for name in VOLUME_LEVELS:
        converted[name] = features[name].to_numpy(dtype=np.float64) * split_factor
    return converted
