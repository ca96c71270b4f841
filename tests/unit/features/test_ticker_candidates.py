"""Which words of a search text may be tickers, and how the lifted stories are ranked (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from features.news_search import TICKER_BOOST, rank_with_tickers, ticker_candidates
from storage.story_vectors import StoryHit


def test_capitals_and_cashtags_are_candidates_once_each_in_order() -> None:
    text = "AAPL beats, $F jumps; a deal with BRK.B (MSFT) as AAPL said: $a S0027 aapl A I 2024 Apple"
    assert ticker_candidates(text) == ("AAPL", "F", "BRK.B", "MSFT", "S0027")


def test_a_lone_capital_needs_its_cashtag_and_numbers_or_long_words_are_not_tickers() -> None:
    assert ticker_candidates("A rally as I expected") == ()
    assert ticker_candidates("$A and $T") == ("A", "T")
    assert ticker_candidates("up 12% in 2024, 0.5") == ()  # no letter
    assert ticker_candidates("INTERNATIONAL") == ()  # longer than a symbol
    assert ticker_candidates("") == ()


def _hit(story_id: int, similarity: float, *symbols: str) -> StoryHit:
    return StoryHit(story_id, datetime(2031, 1, 1, tzinfo=UTC), 1 - similarity, f"story {story_id}", symbols, None)


def test_stories_about_a_named_ticker_rank_as_if_the_boost_nearer_each_once() -> None:
    plain = [_hit(1, 0.90, "MSFT"), _hit(2, 0.86, "AAPL"), _hit(3, 0.70, "IBM")]
    about = [_hit(2, 0.86, "AAPL"), _hit(4, 0.79, "AAPL", "MSFT")]
    ranked = rank_with_tickers(plain, about, ["AAPL"], k=10)
    assert [h.story_id for h in ranked] == [2, 1, 4, 3]  # 0.96, 0.90, 0.89, 0.70
    assert [h.similarity for h in ranked][:1] == [0.86]  # the similarity itself is not changed
    assert [h.story_id for h in rank_with_tickers(plain, about, ["AAPL"], k=2)] == [2, 1]
    assert [h.story_id for h in rank_with_tickers(plain, [], ["TSLA"], k=10)] == [1, 2, 3]
    assert TICKER_BOOST == 0.1


def test_ties_go_to_the_lower_story_id() -> None:
    tied = [_hit(9, 0.75, "AAPL"), _hit(5, 0.75, "AAPL"), _hit(7, 0.75, "MSFT")]
    assert [h.story_id for h in rank_with_tickers(tied, [], ["AAPL"], k=3)] == [5, 9, 7]
    assert [h.story_id for h in rank_with_tickers(tied, [], [], k=3)] == [5, 7, 9]
