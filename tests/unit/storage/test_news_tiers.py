"""The pure parts of the writer's read of tiered news: which version of a key is kept, and which
stored items a batch is deduplicated against when an article is in both tiers."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.news import StoredItem
from storage.news_tiers import dedup_candidates, latest_versions

PUBLISHED = datetime(2011, 3, 5, 15, tzinfo=UTC)


def item(source: str, story: int, updated_hour: int, published: datetime = PUBLISHED) -> StoredItem:
    return StoredItem(source, "a1", story, published, datetime(2011, 3, 5, updated_hour, tzinfo=UTC), None, None, ())


def test_a_key_keeps_its_latest_version_and_the_later_object_on_a_tie() -> None:
    older, newer, tie = item("v", 1, 15), item("v", 2, 18), item("v", 3, 18)

    assert latest_versions([newer, older]) == [newer]
    assert latest_versions([older, newer, tie]) == [tie]


def test_an_article_hot_and_tiered_is_a_candidate_by_its_hot_row_alone() -> None:
    hot = item("v", 7, 18)
    tiered_same_key, tiered_elsewhere = item("v", 1, 15), item("v", 1, 12, datetime(2011, 3, 5, 12, tzinfo=UTC))
    other = item("w", 1, 15)

    assert dedup_candidates([hot], [tiered_elsewhere, tiered_same_key, other]) == [hot, other]
