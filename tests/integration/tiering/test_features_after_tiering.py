"""Features of recent bars do not change when older bars move to the lake: a refresh reads a
symbol's history through the StorageRouter (hot store and lake), so every warm-up still starts at
the symbol's first bar."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import psycopg
from pandas.testing import assert_frame_equal

from core.settings import Settings
from features import FEATURES, FeatureSet
from features.refresh import HISTORY_START, refresh_features
from storage.feature_tables import read_features
from storage.hot import read_bars, upsert_bars
from storage.lake import Lake
from storage.router import StorageRouter
from storage.tiering import tier_chunks
from tests.support.tiering import make_bars

RECENT = datetime(1996, 5, 1, tzinfo=UTC)  # bars before it are tiered; features from it on are compared
END = datetime(1997, 1, 1, tzinfo=UTC)


def test_tiering_old_bars_leaves_the_features_of_recent_bars_unchanged(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(2))
    bars = make_bars(names, "1996-01-02", 160, "1day", seed=21)
    upsert_bars(conn, bars)
    feature_set = FeatureSet()
    refresh_features(conn, feature_set, names, "1day", "1996-01-01", END)
    before = read_features(conn, names, RECENT, END, "1day")
    assert len(before) == (bars["ts"] >= RECENT).sum() > 100 and before["ema"].notna().all()

    moved = tier_chunks(
        conn, lake, stack, dataset=["bars_daily"], older_than=RECENT, newer_than=datetime(1995, 10, 1, tzinfo=UTC)
    ).rows
    hot_only = read_bars(conn, names, HISTORY_START, END, "1day")
    assert moved > 0 and hot_only["ts"].min() > datetime(1996, 3, 1, tzinfo=UTC)

    again = refresh_features(conn, feature_set, names, "1day", RECENT, END, history=StorageRouter(conn, lake, stack))

    assert (again.bars, again.inserted, again.updated) == (len(before), 0, 0)
    assert_frame_equal(read_features(conn, names, RECENT, END, "1day"), before)
    # the hot store alone would have restarted the warm-ups at its first bar: different values
    from_hot = feature_set.compute(hot_only).frame
    from_hot = from_hot[from_hot["ts"] >= RECENT].reset_index(drop=True)
    assert not np.allclose(from_hot[list(FEATURES)].to_numpy(), before[list(FEATURES)].to_numpy(), equal_nan=True)
