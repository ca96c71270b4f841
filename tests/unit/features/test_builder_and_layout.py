"""The seed's FeatureBuilder plugin API, registration, versioning and the layout's input rules."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from core.errors import ConfigurationError, DataQualityError
from features import (
    FEATURES,
    BarLayout,
    FeatureBuilder,
    FeatureParams,
    FeatureSet,
    StandardFeatures,
    discover_feature_builders,
)
from tests.support.features import CustomFeatureBuilder, random_walk_bars


def test_plugin_outputs_sit_alongside_the_built_ins() -> None:
    bars = random_walk_bars(symbols=2, bars=100)
    frame = FeatureSet(builders={"custom": CustomFeatureBuilder()}).compute(bars).frame
    assert {*FEATURES, "range_pct", "rsi_centered"} <= set(frame.columns)
    np.testing.assert_allclose(frame["rsi_centered"], frame["rsi"] - 50)
    np.testing.assert_allclose(frame["range_pct"], (frame["high"] - frame["low"]) / frame["close"])


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda data: pd.DataFrame({"sma": data["close"]}), "already exist"),
        (lambda data: pd.DataFrame({"x": data["close"].to_numpy()[:-1]}), "same index"),
        (lambda data: pd.DataFrame({"x": "text"}, index=data.index), "non-numeric"),
    ],
)
def test_a_misbehaving_plugin_is_refused_with_its_name(output, message: str) -> None:
    class Bad(FeatureBuilder):
        def calculate_features(self, data):
            return output(data)

    with pytest.raises(ConfigurationError, match=f"'bad'.*{message}"):
        FeatureSet(builders={"bad": Bad()}).compute(random_walk_bars(symbols=1, bars=30))


def test_builders_load_from_an_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("mp_test_feature_plugins")
    module.CustomFeatureBuilder = CustomFeatureBuilder
    module.NotABuilder = dict
    monkeypatch.setitem(sys.modules, module.__name__, module)
    builders = discover_feature_builders(
        {"custom": "mp_test_feature_plugins:CustomFeatureBuilder"}, use_entry_points=False
    )
    assert isinstance(builders["custom"], CustomFeatureBuilder)
    with pytest.raises(ConfigurationError, match="not a subclass of FeatureBuilder"):
        discover_feature_builders({"x": "mp_test_feature_plugins:NotABuilder"}, use_entry_points=False)
    with pytest.raises(ConfigurationError, match="feature builder 'y'"):
        discover_feature_builders({"y": "mp_test_feature_plugins:Missing"}, use_entry_points=False)


def test_the_version_names_windows_and_plugins() -> None:
    base = FeatureSet().version
    assert FeatureSet().version == base
    assert FeatureSet(FeatureParams(rsi=10)).version != base
    assert FeatureSet(builders={"custom": CustomFeatureBuilder()}).version != base


def test_standard_features_as_a_builder_keep_the_callers_order() -> None:
    bars = random_walk_bars(symbols=2, bars=60)
    shuffled = bars.sample(frac=1.0, random_state=0)
    values = StandardFeatures().calculate_features(shuffled)
    expected = FeatureSet().compute(bars).frame.set_index(bars.index)
    assert values.index.equals(shuffled.index)
    np.testing.assert_array_equal(values.loc[bars.index, "ema"].to_numpy(), expected["ema"].to_numpy())


def test_layout_offsets_and_sessions() -> None:
    bars = random_walk_bars(symbols=3, bars=400, timeframe="1min")
    layout = BarLayout.from_frame(bars)
    np.testing.assert_array_equal(layout.offsets, [0, 400, 800, 1200])
    assert layout.symbols == ("S0", "S1", "S2") and layout.intraday
    assert len(np.unique(layout.session[layout.slice(0)])) == 2  # 390 bars of one session, then the next
    assert not layout.close.flags.writeable


def test_layout_refuses_duplicates_and_missing_prices() -> None:
    bars = random_walk_bars(symbols=1, bars=20)
    with pytest.raises(DataQualityError, match="strictly increasing"):
        BarLayout.from_frame(pd.concat([bars, bars.iloc[[5]]]).sort_values("ts", kind="stable"))
    broken = bars.copy()
    broken.loc[7, "close"] = np.nan
    with pytest.raises(DataQualityError, match="close=nan"):
        BarLayout.from_frame(broken)
    with pytest.raises(DataQualityError, match="one timeframe"):
        BarLayout.from_frame(bars.assign(timeframe=["1day"] * 19 + ["1min"]))


def test_feature_set_sorts_unsorted_bars() -> None:
    bars = random_walk_bars(symbols=2, bars=50)
    ordered = FeatureSet().compute(bars).frame
    shuffled = FeatureSet().compute(bars.sample(frac=1.0, random_state=1)).frame
    pd.testing.assert_frame_equal(ordered, shuffled)
