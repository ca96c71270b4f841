"""Standardize bars into the one shape every later step relies on.

Adapters already emit the canonical model, but frames also arrive from replays of the raw zone,
concatenations of several pages or sources, and user code. Validation, scoring and the hot writer
all assume exact dtypes, canonical symbols and timeframe labels, a deterministic order and no
repeated rows; doing that once here keeps those steps free of defensive conversions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import model
from core.errors import DataQualityError, PermanentSourceError

KEY = ["symbol", "timeframe", "ts"]
VALUES = ["open", "high", "low", "close", "volume", "vwap", "trade_count"]


def canonical_timeframes(values: pd.Series) -> pd.Series:
    """Timeframe labels in canonical spelling (``1m``, ``1 minute`` -> ``1min``; ``1d`` -> ``1day``).

    Mapped per distinct label, so the cost does not grow with rows. An unknown label stops the
    batch: a bar whose width is unknown cannot be aligned, stored or aggregated.
    """
    distinct = pd.unique(values.dropna())
    try:
        mapping = {label: model.canonical_timeframe(str(label)) for label in distinct}
    except PermanentSourceError as exc:
        raise DataQualityError(str(exc)) from exc
    if values.isna().any():
        raise DataQualityError("bars without a timeframe: every bar needs one of 1min, 5min, 15min, 1hour, 1day")
    if all(key == value for key, value in mapping.items()):
        return values.astype(model.STR)  # already canonical: no per-row map
    return values.map(mapping).astype(model.STR)


def standardize_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars in the canonical model: columns and dtypes of :data:`model.BARS` in order, canonical
    symbols and timeframes, sorted by (symbol, timeframe, ts), exact duplicates removed.

    An exact duplicate has the same key and the same values; ``source`` is provenance, not a
    value, so the same bar from two vendors is kept once (the first). Rows that share a key but
    differ in a value are kept: they are a conflict that validation reports. Columns outside the
    model are dropped. A value that cannot be read as its dtype raises :class:`DataQualityError`.
    """
    missing = [
        name
        for name in ("symbol", "ts", "timeframe", "open", "high", "low", "close", "volume")
        if name not in bars.columns
    ]
    if missing:
        raise DataQualityError(f"bars lack required column(s) {missing}; expected the columns of model.BARS")
    try:
        out = model.frame(
            model.BARS, {name: bars[name] for name in model.BARS if name in bars.columns}, what="bars to standardize"
        )
    except PermanentSourceError as exc:
        raise DataQualityError(str(exc)) from exc
    if out["symbol"].isna().any() or out["ts"].isna().any():
        raise DataQualityError("bars without a symbol or a timestamp cannot be keyed; drop them at the source")
    out["symbol"] = model.normalize_symbols(out["symbol"]).astype(model.STR)
    out["timeframe"] = canonical_timeframes(out["timeframe"])
    if _one_series_in_time_order(out):  # a vendor page of one symbol: sorted, no two rows share a key
        return out
    out = out.sort_values(KEY, kind="stable", ignore_index=True)
    out = out.drop_duplicates(subset=KEY + VALUES, keep="first", ignore_index=True)
    return out


def _one_series_in_time_order(bars: pd.DataFrame) -> bool:
    """Whether ``bars`` hold one (symbol, timeframe) with strictly increasing timestamps: then they
    are in KEY order already and hold no duplicate (sorting and de-duplicating ~1.5 ms a page)."""
    if bars["symbol"].nunique(dropna=False) != 1 or bars["timeframe"].nunique(dropna=False) != 1:
        return False
    stamps = pd.DatetimeIndex(bars["ts"]).asi8
    return bool(np.all(stamps[1:] > stamps[:-1]))
