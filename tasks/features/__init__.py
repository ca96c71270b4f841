"""Features: numba kernels over a multi-symbol layout, the standard set and the seed's plugin API."""

from tasks.features.builder import (
    FeatureBuilder,
    FeatureResult,
    FeatureSet,
    FeatureState,
    StandardFeatures,
    discover_feature_builders,
    feature_params,
    feature_set_from_settings,
)
from tasks.features.kernels import FEATURES, FeatureParams, periods_per_year
from tasks.features.layout import BarLayout

__all__ = [
    "FEATURES",
    "BarLayout",
    "FeatureBuilder",
    "FeatureParams",
    "FeatureResult",
    "FeatureSet",
    "FeatureState",
    "StandardFeatures",
    "discover_feature_builders",
    "feature_params",
    "feature_set_from_settings",
    "periods_per_year",
]
