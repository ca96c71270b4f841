"""Refreshing the feature store: features of stored bars, computed and written to the hot store.

The tables, their reads and the export to the lake are the storage side's
(:mod:`storage.feature_tables`); this module computes what goes into them.

Features are computed from split- and dividend-adjusted bars (``adjustment="all"``), so a split
does not show up as a -50 % return, and from the first stored bar of each symbol, so a value does
not depend on where a run's range starts (an EMA or OBV over a shorter history would differ): any
two runs over the same bars write the same values, which is what makes reruns no-ops. "Stored"
includes the lake: given a :class:`~storage.router.StorageRouter` as ``history``, a refresh
reads the bars already tiered too, so tiering old bars does not change the features of the recent
ones (the hot store alone would restart every warm-up at its first bar).

Stored values are point-in-time: each bar's level-valued features (SMA, ATR, OBV, ...) are put
back into the units that bar traded in (:mod:`features.basis`), so a split or dividend stored
later does not change them. The bars are read raw and adjusted here with the same factors that
convert the results back, so an action stored during a run cannot mix two bases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pandas as pd
import psycopg

from core.model import canonical_timeframe, to_utc
from features.basis import as_traded
from features.builder import BAR_INPUTS, FeatureSet
from storage.corporate_actions import apply_adjustment, bar_factors, read_adjustment_factors
from storage.feature_tables import write_features
from storage.hot import Adjustment, UpsertResult, read_bars

HISTORY_START = pd.Timestamp("1970-01-01", tz="UTC")  # features are computed from a symbol's first bar


class BarHistory(Protocol):
    """Where a refresh reads bars from (a :class:`~storage.router.StorageRouter`: hot and lake)."""

    def read_bars(
        self,
        symbols: Sequence[str],
        start: object,
        end: object,
        timeframe: str = "1day",
        *,
        adjusted: bool | str = False,
    ) -> pd.DataFrame: ...

    def adjustment_factors(self, symbols: Sequence[str]) -> pd.DataFrame: ...


@dataclass(frozen=True)
class FeatureRefresh:
    """What one refresh of a symbol batch did."""

    symbols: int
    bars: int  # bars in the requested range (= feature rows written or confirmed)
    feature_set: str
    inserted: int
    updated: int
    unchanged: int


def refresh_features(
    conn: psycopg.Connection,
    feature_set: FeatureSet,
    symbols: Sequence[str],
    timeframe: str,
    start: object,
    end: object,
    *,
    adjustment: Adjustment = "all",
    history: BarHistory | None = None,
) -> FeatureRefresh:
    """Compute and store the features of ``symbols``' bars with ``start <= ts < end``.

    Bars are read from each symbol's first stored bar (see the module docstring), through
    ``history`` when given (hot store and lake), else from the hot store on ``conn``; only rows
    inside the range are written, their level features in each bar's own basis."""
    lo = to_utc(start)
    if history is None:
        raw = read_bars(conn, symbols, HISTORY_START, end, timeframe)
        factors = read_adjustment_factors(conn, symbols)
    else:
        raw = history.read_bars(symbols, HISTORY_START, end, timeframe)
        factors = history.adjustment_factors(symbols)
    computed = point_in_time_features(feature_set, raw, factors, timeframe, adjustment)
    in_range = computed[computed["ts"] >= lo].drop(columns=list(BAR_INPUTS)).reset_index(drop=True)
    result = write_features(conn, in_range, feature_set.version) if len(in_range) else UpsertResult()
    return FeatureRefresh(
        len(symbols), len(in_range), feature_set.version, result.inserted, result.updated, result.unchanged
    )


def point_in_time_features(
    feature_set: FeatureSet, raw: pd.DataFrame, factors: pd.DataFrame, timeframe: str, adjustment: Adjustment = "all"
) -> pd.DataFrame:
    """The features of raw bars as they are stored: computed from the bars adjusted by ``factors``
    (:func:`storage.corporate_actions.adjustment_factors`' steps), each bar's level features then
    put back into that bar's own basis, so a value at bar t depends on no action ex after t."""
    computed = feature_set.compute(apply_adjustment(raw, factors, adjustment), canonical_timeframe(timeframe)).frame
    return as_traded(computed, *bar_factors(computed, factors, adjustment))
