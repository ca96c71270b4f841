"""Features TA-Lib does not have equal a plain pandas reference; the documented edge rules hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import FeatureParams, FeatureSet, periods_per_year
from tests.support.features import assert_same_warmup_and_close, random_walk_bars, sp500_bars

P = FeatureParams()


@pytest.fixture(scope="module", params=["1day", "1min", "sp500"])
def computed(request) -> pd.DataFrame:
    if request.param == "sp500":
        return FeatureSet().compute(sp500_bars()).frame
    return FeatureSet().compute(random_walk_bars(symbols=2, bars=1000, timeframe=request.param)).frame


def _groups(frame: pd.DataFrame):
    return [part.reset_index(drop=True) for _, part in frame.groupby("symbol", sort=False)]


def test_returns_and_volatility(computed) -> None:
    for part in _groups(computed):
        c = part["close"]
        log_ret = np.log(c).diff()
        assert_same_warmup_and_close(part["ret"], c.pct_change(), atol=1e-15)
        assert_same_warmup_and_close(part["log_ret"], log_ret, atol=1e-15)
        expected = log_ret.rolling(P.volatility).std() * np.sqrt(periods_per_year(part["timeframe"][0]))
        assert_same_warmup_and_close(part["volatility"], expected)


def test_percent_b(computed) -> None:
    for part in _groups(computed):
        c = part["close"]
        mean, sd = c.rolling(P.bb).mean(), c.rolling(P.bb).std(ddof=0)
        lower, upper = mean - P.bb_k * sd, mean + P.bb_k * sd
        assert_same_warmup_and_close(part["bb_pctb"], (c - lower) / (upper - lower), rtol=1e-7, atol=1e-9)


def test_volume_zscore(computed) -> None:
    for part in _groups(computed):
        v = part["volume"].astype(float)
        expected = (v - v.rolling(P.volume_z).mean()) / v.rolling(P.volume_z).std()
        assert_same_warmup_and_close(part["volume_z"], expected, atol=1e-9)


def test_distance_to_rolling_high_and_low(computed) -> None:
    for part in _groups(computed):
        c = part["close"]
        assert_same_warmup_and_close(part["dist_high"], c / part["high"].rolling(P.hilo).max() - 1, atol=1e-15)
        assert_same_warmup_and_close(part["dist_low"], c / part["low"].rolling(P.hilo).min() - 1, atol=1e-15)


def test_opening_gap_and_session_vwap(computed) -> None:
    for part in _groups(computed):
        session = part["ts"].dt.tz_convert("America/New_York").dt.date
        first = session.ne(session.shift())
        gap_at_open = (part["open"] / part["close"].shift() - 1).where(first)
        expected_gap = gap_at_open.groupby(session).transform("first")
        assert_same_warmup_and_close(part["gap_pct"], expected_gap, atol=1e-15)
        if part["timeframe"][0] == "1day":
            assert part["vwap"].isna().all()
        else:
            typical = (part["high"] + part["low"] + part["close"]) / 3
            pv = (typical * part["volume"]).groupby(session).cumsum()
            expected_vwap = pv / part["volume"].groupby(session).cumsum()
            assert first.sum() > 1  # the data spans several sessions
            assert_same_warmup_and_close(part["vwap"], expected_vwap)


def _flat_bars(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": "FLAT",
            "timeframe": "1day",
            "ts": pd.bdate_range("2021-01-04", periods=n, tz="UTC"),
            "open": 10.0,
            "high": 10.0,
            "low": 10.0,
            "close": 10.0,
            "volume": 500,
        }
    )


def test_a_flat_symbol_has_neutral_rsi_and_undefined_scores() -> None:
    frame = FeatureSet().compute(_flat_bars()).frame
    warm = frame.iloc[P.warmup_bars :]
    assert (warm["rsi"] == 50.0).all()
    assert warm["bb_pctb"].isna().all()
    assert warm["volume_z"].isna().all()
    assert (warm["volatility"] == 0.0).all()
    assert (warm["dist_high"] == 0.0).all()


def test_a_gap_in_bars_measures_the_return_from_the_last_bar_present() -> None:
    bars = random_walk_bars(symbols=1, bars=60).drop(index=range(30, 35)).reset_index(drop=True)
    frame = FeatureSet().compute(bars).frame
    assert frame.loc[30, "ret"] == pytest.approx(bars.loc[30, "close"] / bars.loc[29, "close"] - 1, rel=1e-15)
    assert frame.loc[30, "gap_pct"] == pytest.approx(bars.loc[30, "open"] / bars.loc[29, "close"] - 1, rel=1e-15)
