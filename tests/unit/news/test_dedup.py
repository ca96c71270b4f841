"""Story dedup (pure): canonical URLs, MinHash signatures, story assignment inside a time window."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from core.errors import ConfigurationError
from quality.dedup import (
    DedupConfig,
    Permutations,
    StoryIndex,
    canonical_url,
    pairwise_scores,
    shingle_hashes,
    signature_bytes,
    signature_from_bytes,
    story_id_of,
    text_tokens,
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


def test_batch_signatures_fold_the_mersenne_modulus_as_the_division_does() -> None:
    # a = 1, b = 0: the permuted value is the hash itself, so the hashes reach the fold's edges
    # (x = 2^61 - 1, 2^61 + 6 after folding, 2^64 - 1) where a wrapped value must come out as x % (2^61 - 1)
    perms = Permutations(np.ones(4, dtype=np.uint64), np.zeros(4, dtype=np.uint64))
    edges = [(1 << 61) - 1, (1 << 61) - 2, 1 << 61, (1 << 64) - 1, (1 << 64) - 2, (7 << 61) + (1 << 61) - 2]
    texts = [np.array([h], dtype=np.uint64) for h in edges] + [np.array(edges, dtype=np.uint64), np.zeros(0, np.uint64)]
    batch = perms.signatures(texts)
    for hashes, signature in zip(texts, batch, strict=True):
        expected = [min(((h % ((1 << 61) - 1)) & 0xFFFFFFFF) for h in hashes.tolist())] * 4 if hashes.size else None
        assert np.array_equal(signature, perms.signature(hashes))
        if expected is not None:
            assert signature.tolist() == expected


@pytest.mark.parametrize("words", [0, 1, 2, 3, 4, 7])
def test_shingles_are_the_crc32_of_each_k_word_window(words: int) -> None:
    tokens = [f"w{i}" for i in range(words)]
    windows = {" ".join(tokens[i : i + 3]) for i in range(max(1, words - 2))} if tokens else set()
    assert sorted(shingle_hashes(tokens, 3).tolist()) == sorted(zlib.crc32(w.encode()) for w in windows)


def test_only_the_first_lead_words_of_the_lead_are_tokens() -> None:
    assert text_tokens("Update: ACME beats", "one two three four", 2) == ["acme", "beats", "one", "two"]
    assert text_tokens("ACME", "one two", 0) == ["acme"]


def test_assigning_a_batch_at_once_equals_assigning_item_by_item() -> None:
    one, many = StoryIndex(DedupConfig()), StoryIndex(DedupConfig())
    texts = [
        ("ACME shares surge after earnings beat", LEAD, ["ACME"], None),
        ("ACME stock soars following earnings beat - report", LEAD, ["ACME"], None),
        ("", "", [], "https://example.com/x"),
        ("Globex cuts guidance", LEAD[:40], ["GBX"], "https://example.com/x"),
        ("ACME shares surge after earnings beat", LEAD, ["OTHR"], None),
    ]
    signatures = one.signatures((h, lead) for h, lead, _, _ in texts)
    rows = [
        ("v", str(n), n * HOUR, url, sig, syms)
        for n, ((_, _, syms, url), sig) in enumerate(zip(texts, signatures, strict=True))
    ]
    expected = [one.assign(*row) for row in rows]
    assert many.assign_many(*(list(column) for column in zip(*rows, strict=True))) == expected
    assert expected[1] == (expected[0][0], False) and expected[3] == (expected[2][0], False) and expected[4][1]
