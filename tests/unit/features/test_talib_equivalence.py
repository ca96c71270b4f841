"""The kernels equal TA-Lib (within 1e-9 relative, same warm-up) for every indicator TA-Lib has."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib  # a test dependency (pyproject's test extra): missing, the module fails to import

from features import FeatureParams, FeatureSet
from tests.support.features import assert_same_warmup_and_close, random_walk_bars, sp500_bars


@pytest.fixture(scope="module", params=["random_walks", "sp500", "short_windows"])
def computed(request) -> tuple[pd.DataFrame, FeatureParams]:
    if request.param == "short_windows":
        params = FeatureParams(sma=5, ema=7, rsi=6, macd_fast=5, macd_slow=13, macd_signal=4, bb=10, bb_k=1.5, atr=9)
        bars = random_walk_bars(symbols=2, bars=300, seed=5)
    else:
        params = FeatureParams()
        bars = random_walk_bars(symbols=3, bars=800) if request.param == "random_walks" else sp500_bars()
    return FeatureSet(params).compute(bars).frame, params


def _per_symbol(frame: pd.DataFrame):
    for _, part in frame.groupby("symbol", sort=False):
        yield (
            part,
            part["open"].to_numpy(float),
            part["high"].to_numpy(float),
            part["low"].to_numpy(float),
            part["close"].to_numpy(float),
            part["volume"].to_numpy(float),
        )


def test_sma_ema_rsi(computed) -> None:
    frame, p = computed
    for part, _, _, _, c, _ in _per_symbol(frame):
        assert_same_warmup_and_close(part["sma"], talib.SMA(c, p.sma))
        assert_same_warmup_and_close(part["ema"], talib.EMA(c, p.ema))
        assert_same_warmup_and_close(part["rsi"], talib.RSI(c, p.rsi))


def test_macd(computed) -> None:
    frame, p = computed
    for part, _, _, _, c, _ in _per_symbol(frame):
        line, signal, hist = talib.MACD(c, p.macd_fast, p.macd_slow, p.macd_signal)
        assert_same_warmup_and_close(part["macd"], line)
        assert_same_warmup_and_close(part["macd_signal"], signal)
        assert_same_warmup_and_close(part["macd_hist"], hist, atol=1e-12 * np.abs(c).max())


def test_bollinger_bands(computed) -> None:
    frame, p = computed
    for part, _, _, _, c, _ in _per_symbol(frame):
        upper, middle, lower = talib.BBANDS(c, p.bb, p.bb_k, p.bb_k, 0)
        assert_same_warmup_and_close(part["bb_upper"], upper)
        assert_same_warmup_and_close(part["bb_middle"], middle)
        assert_same_warmup_and_close(part["bb_lower"], lower)


def test_atr_and_obv(computed) -> None:
    frame, p = computed
    for part, _, h, lo, c, v in _per_symbol(frame):
        assert_same_warmup_and_close(part["atr"], talib.ATR(h, lo, c, p.atr))
        assert_same_warmup_and_close(part["obv"], talib.OBV(c, v))
