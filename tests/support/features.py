"""Small synthetic bars for the feature tests: random walks, intraday sessions, real S&P 500 data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import FeatureBuilder


def random_walk_bars(
    symbols: int = 3, bars: int = 600, *, seed: int = 1, timeframe: str = "1day", start: str = "2020-01-02"
) -> pd.DataFrame:
    """OHLCV random walks, sorted by (symbol, ts). Intraday timeframes get 390 one-minute-spaced
    bars per weekday session from 14:30 UTC, so sessions (and the opening gap) are real."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(symbols):
        n = bars
        close = rng.uniform(5, 400) * np.exp(np.cumsum(rng.normal(0.0, 0.012, n)))
        open_ = close * np.exp(rng.normal(0.0, 0.004, n))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, n)))
        volume = rng.integers(100, 2_000_000, n)
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"S{k}",
                    "timeframe": timeframe,
                    "ts": _timestamps(n, timeframe, start),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _timestamps(n: int, timeframe: str, start: str) -> pd.DatetimeIndex:
    if timeframe == "1day":
        return pd.bdate_range(start, periods=n, tz="UTC")
    days = pd.bdate_range(start, periods=n // 390 + 1, tz="UTC") + pd.Timedelta(hours=14, minutes=30)
    minutes = pd.to_timedelta(np.arange(390), unit="min")
    naive = days.tz_convert(None).to_numpy()
    return pd.DatetimeIndex((naive[:, None] + minutes.to_numpy()[None, :]).ravel()[:n]).tz_localize("UTC")


def sp500_bars() -> pd.DataFrame:
    """Real S&P 500 daily OHLCV (1999-2018) from the arch package, as one symbol's bars."""
    from arch.data import sp500

    raw = sp500.load()
    return pd.DataFrame(
        {
            "symbol": "SPX",
            "timeframe": "1day",
            "ts": pd.DatetimeIndex(raw.index).tz_localize("UTC"),
            "open": raw["Open"].to_numpy(float),
            "high": raw["High"].to_numpy(float),
            "low": raw["Low"].to_numpy(float),
            "close": raw["Close"].to_numpy(float),
            "volume": raw["Volume"].to_numpy(np.int64),
        }
    )


def assert_same_warmup_and_close(
    ours: np.ndarray, reference: np.ndarray, *, rtol: float = 1e-9, atol: float = 0.0
) -> None:
    """NaN exactly where the reference is NaN, and equal within ``rtol`` elsewhere."""
    ours, reference = np.asarray(ours, float), np.asarray(reference, float)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    defined = ~np.isnan(reference)
    assert defined.any()
    np.testing.assert_allclose(ours[defined], reference[defined], rtol=rtol, atol=atol)


class CustomFeatureBuilder(FeatureBuilder):
    """The seed's example, verbatim in shape."""

    def calculate_features(self, data):
        features = pd.DataFrame(index=data.index)
        features["range_pct"] = (data["high"] - data["low"]) / data["close"]
        features["rsi_centered"] = data["rsi"] - 50
        return features
