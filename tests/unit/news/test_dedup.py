"""Story dedup (pure): canonical URLs, MinHash signatures, story assignment inside a time window."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigurationError
from quality.dedup import (
    DedupConfig,
    StoryIndex,
    canonical_url,
    pairwise_scores,
    signature_bytes,
    signature_from_bytes,
    story_id_of,
)

HOUR = 3_600 * 10**9
LEAD = (
    "The board approved a $12.5 billion buyback and a dividend of $0.42 per share. Dan Ives of Wedbush kept a rating."
)


@pytest.mark.parametrize(
    "url",
    [
        "https://www.example.com/news/2024/acme-beats-123",
        "https://m.example.com/news/2024/acme-beats-123/",
        "https://amp.example.com/news/2024/acme-beats-123/amp",
        "http://WWW.Example.com/news/2024/acme-beats-123?utm_source=x&utm_medium=y#comments",
        "https://example.com/news/2024/acme-beats-123?fbclid=abc&ref=feed",
    ],
)
def test_tracking_parameters_and_mobile_hosts_share_one_canonical_url(url: str) -> None:
    assert canonical_url(url) == "https://example.com/news/2024/acme-beats-123"


def test_a_meaningful_query_parameter_is_kept_and_junk_is_none() -> None:
    assert canonical_url("https://example.com/a?id=7&utm_source=x") == "https://example.com/a?id=7"
    assert canonical_url("not a url") is None and canonical_url(None) is None


def test_reworded_copies_join_one_story_and_other_news_founds_its_own() -> None:
    index = StoryIndex(DedupConfig())
    sig = index.signature
    first, founded = index.assign(
        "polygon", "a1", 0, None, sig("ACME shares surge after earnings beat", LEAD), ["ACME"]
    )
    copy, copy_founded = index.assign(
        "alpaca", "9", HOUR, None, sig("ACME stock soars following earnings beat - report", LEAD), ["ACME"]
    )
    other, other_founded = index.assign(
        "alpaca",
        "10",
        HOUR,
        None,
        sig("ACME files quarterly report", "Unit shipments grew 9% to 34.6 million."),
        ["ACME"],
    )
    assert founded and first == story_id_of("polygon", "a1")
    assert copy == first and not copy_founded
    assert other != first and other_founded


def test_the_same_text_outside_the_window_or_about_another_symbol_is_another_story() -> None:
    index = StoryIndex(DedupConfig(window_hours=72))
    signature = index.signature("ACME shares surge after earnings beat", LEAD)
    first, _ = index.assign("polygon", "a1", 0, None, signature, ["ACME"])
    later, _ = index.assign("polygon", "a2", 100 * HOUR, None, signature, ["ACME"])
    elsewhere, _ = index.assign("polygon", "a3", HOUR, None, signature, ["OTHR"])
    assert later != first and elsewhere != first


def test_a_canonical_url_match_joins_whatever_the_text() -> None:
    index = StoryIndex(DedupConfig())
    url = canonical_url("https://www.example.com/x")
    first, _ = index.assign("polygon", "a1", 0, url, index.signature("one headline", "one lead"), [])
    second, _ = index.assign(
        "alpaca", "1", HOUR, canonical_url("https://m.example.com/x?utm_source=a"), index.signature("x", ""), []
    )
    assert second == first


def test_a_known_item_keeps_its_story_on_rerun() -> None:
    index = StoryIndex(DedupConfig())
    signature = index.signature("ACME files quarterly report", LEAD)
    index.add("polygon", "a1", 42, 0, None, signature, ["ACME"])
    assert index.assign("polygon", "a1", 0, None, signature, ["ACME"]) == (42, False)


def test_signatures_round_trip_through_bytes() -> None:
    index = StoryIndex(DedupConfig(num_perm=64))
    signature = index.signature("headline", LEAD)
    assert signature.dtype == np.uint32 and signature.shape == (64,)
    assert np.array_equal(signature_from_bytes(signature_bytes(signature), 64), signature)
    assert signature_from_bytes(b"short", 64).size == 0


def test_pairwise_scores_count_pairs_of_items_in_one_story() -> None:
    truth = [("a", "s1"), ("b", "s1"), ("c", "s1"), ("d", "s2")]
    found = [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")]
    precision, recall = pairwise_scores(truth, found)
    assert precision == pytest.approx(1 / 2) and recall == pytest.approx(1 / 3)
    assert pairwise_scores([("a", "1")], [("a", "2")]) == (1.0, 1.0)


def test_a_batch_of_signatures_equals_each_text_signed_alone() -> None:
    index = StoryIndex(DedupConfig())
    texts = [("ACME beats estimates", LEAD), ("", ""), ("Short", ""), ("Globex cuts guidance", LEAD[:40])]
    batch = index.signatures(texts)
    assert len(batch) == len(texts)
    for (headline, lead), signature in zip(texts, batch, strict=True):
        assert np.array_equal(signature, index.signature(headline, lead))


def test_banding_that_does_not_fit_the_permutations_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="14 bands x 5 rows"):
        StoryIndex(DedupConfig(lsh_bands=14, lsh_rows=5))
