"""Features: numba kernels over a multi-symbol layout, the standard set and the seed's plugin API."""

from features.builder import (
    FeatureBuilder,
    FeatureResult,
    FeatureSet,
    FeatureState,
    StandardFeatures,
    discover_feature_builders,
    feature_params,
    feature_set_from_settings,
)
from features.kernels import FeatureParams, periods_per_year
from features.layout import BarLayout
from storage.feature_tables import FEATURES

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
