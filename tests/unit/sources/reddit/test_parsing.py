import pandas as pd
import pytest

from core import model
from core.errors import PermanentSourceError
from sources.reddit import mentions, parse_listing
from tests.support.payloads import reddit_listing, reddit_post


def test_reddit_listing_posts():
    listing = reddit_listing([reddit_post("a1", 1672756200.0, title="Buying $AAPL", score=12)], after="t3_a1")
    posts = parse_listing(listing)
    assert list(posts.columns) == list(model.SOCIAL_POSTS)
    row = posts.iloc[0]
    assert (row["id"], row["score"], row["community"]) == ("a1", 12, "stocks")
    assert row["ts"] == pd.Timestamp("2023-01-03T14:30:00Z")
    assert row["url"] == "https://www.reddit.com/r/stocks/comments/a1/x/"


def test_reddit_listing_ignores_non_post_children():
    listing = reddit_listing([reddit_post("a1", 1.0), {"kind": "more", "data": {"count": 3}}])
    assert parse_listing(listing)["id"].tolist() == ["a1"]


@pytest.mark.parametrize(
    "payload",
    [{"kind": "t3"}, {"kind": "Listing", "data": {"children": "x"}}, reddit_listing([reddit_post("a", "soon")])],
)
def test_malformed_listings_raise_a_typed_error(payload):
    with pytest.raises(PermanentSourceError):
        parse_listing(payload)


def test_mentions_match_words_and_cashtags_not_substrings():
    posts = parse_listing(
        reddit_listing(
            [
                reddit_post("1", 1.0, title="$AAPL to the moon"),
                reddit_post("2", 1.0, title="nothing", selftext="I like AAPL."),
                reddit_post("3", 1.0, title="AAPLE is not a ticker"),
                reddit_post("4", 1.0, title="BRK-B and chill"),
            ]
        )
    )
    assert posts[mentions(posts, "AAPL")]["id"].tolist() == ["1", "2"]
    assert posts[mentions(posts, "BRK.B")]["id"].tolist() == ["4"]
