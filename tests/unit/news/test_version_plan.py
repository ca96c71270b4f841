"""Which stored versions of an article a write supersedes (pure: storage.news.plan_versions): every
one older than the version kept, at its own publication time or another, is kept as history first;
a stale arrival or a correction under the same ``updated_at`` supersedes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from storage.news import SupersededVersion, plan_versions

T0 = datetime(2024, 6, 4, 14, 5, tzinfo=UTC)
T1 = datetime(2024, 6, 4, 19, 30, tzinfo=UTC)
MOVED = datetime(2024, 6, 4, 14, 4, tzinfo=UTC)


def batch(published: datetime, updated: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": ["alpaca"],
            "id": ["1"],
            "published_at": [pd.Timestamp(published)],
            "updated_at": [pd.Timestamp(updated)],
        }
    )


def test_an_update_at_the_same_publication_time_supersedes_the_stored_version() -> None:
    plan = plan_versions(batch(T0, T1), [("alpaca", "1", T0, T0)])
    assert plan.keep.tolist() == [True] and plan.moved == []
    assert plan.superseded == [SupersededVersion("alpaca", "1", T0, T0, T1)]


def test_an_update_that_moved_the_publication_time_supersedes_the_version_it_moves() -> None:
    plan = plan_versions(batch(MOVED, T1), [("alpaca", "1", T0, T0)])
    assert plan.moved == [("alpaca", "1", T0)]
    assert plan.superseded == [SupersededVersion("alpaca", "1", T0, T0, T1)]


def test_a_stale_version_a_rerun_and_a_correction_supersede_nothing() -> None:
    assert plan_versions(batch(T0, T0), [("alpaca", "1", T0, T1)]).superseded == []  # stale, same time
    assert plan_versions(batch(MOVED, T0), [("alpaca", "1", T0, T1)]).superseded == []  # stale, moved
    assert plan_versions(batch(T0, T1), [("alpaca", "1", T0, T1)]).superseded == []  # rerun or correction


def test_a_new_article_supersedes_nothing() -> None:
    plan = plan_versions(batch(T0, T0), [("alpaca", "2", T0, T0)])
    assert plan.keep.tolist() == [True] and plan.superseded == []


def test_a_newer_stored_version_at_the_same_publication_time_makes_the_batch_stale() -> None:
    """A tiered version (storage.news_tiers) is no row the upsert's guard sees: the plan refuses
    the stale arrival itself, at the same publication time as at another."""
    assert plan_versions(batch(T0, T0), [("alpaca", "1", T0, T1)]).keep.tolist() == [False]
    assert plan_versions(batch(MOVED, T0), [("alpaca", "1", T0, T1)]).keep.tolist() == [False]
