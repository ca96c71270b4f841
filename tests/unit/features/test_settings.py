"""The ``features`` settings section decides the windows, the plugins and so the feature-set version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigurationError
from core.settings import load_settings, parse_overrides
from features import FeatureParams, FeatureSet, feature_params, feature_set_from_settings
from tests.support.features import random_walk_bars

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("isolated")


def test_the_defaults_and_the_shipped_yaml_are_issue_5s_windows() -> None:
    shipped = load_settings(config_path=REPO / "config/data_pipeline_config.yaml", env_file=Path.cwd() / "none.env")
    assert feature_params(load_settings().features) == FeatureParams()
    assert feature_params(shipped.features) == FeatureParams()
    p = FeatureParams()
    assert (p.sma, p.ema, p.rsi, p.macd_fast, p.macd_slow, p.macd_signal, p.bb, p.bb_k, p.atr) == (
        20,
        20,
        14,
        12,
        26,
        9,
        20,
        2.0,
        14,
    )


def test_a_window_setting_changes_the_computed_window_and_the_version() -> None:
    settings = load_settings(overrides=parse_overrides(["features.sma=7", "features.hilo=5"]))
    bars = random_walk_bars(symbols=1, bars=60)
    frame = feature_set_from_settings(settings.features).compute(bars).frame

    assert frame["sma"].isna().sum() == 6  # defined from the 7th bar
    np.testing.assert_allclose(frame["sma"], bars["close"].rolling(7).mean(), rtol=1e-12)
    assert frame["dist_high"].isna().sum() == 4
    default = FeatureSet()
    assert feature_set_from_settings(settings.features).version != default.version
    assert feature_set_from_settings(load_settings().features).version == default.version


def test_plugin_builders_come_from_settings_by_import_path() -> None:
    path = "tests.support.features:CustomFeatureBuilder"
    settings = load_settings(overrides={"features": {"builders": {"custom": path}}})
    features = feature_set_from_settings(settings.features)
    frame = features.compute(random_walk_bars(symbols=1, bars=40)).frame
    assert "range_pct" in frame.columns
    assert features.version != FeatureSet().version


def test_inconsistent_windows_are_a_configuration_error() -> None:
    settings = load_settings(overrides=parse_overrides(["features.macd_fast=30"]))
    with pytest.raises(ConfigurationError, match="macd_fast=30 must be shorter than macd_slow=26"):
        feature_params(settings.features)
    with pytest.raises(ConfigurationError, match="volatility"):
        load_settings(overrides=parse_overrides(["features.volatility=1"]))
