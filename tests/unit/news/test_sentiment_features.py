"""News sentiment features (pure): trailing windows that end at each bar's close, never after it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import RequestError
from features.news_sentiment import (
    HOUR_NS,
    NEVER_NS,
    bar_close_ns,
    feature_names,
    sentiment_features,
    symbol_feature_frame,
)

CLOSE = 1_717_531_200 * 10**9  # 2024-06-04 20:00 UTC, the 16:00 New York close


def test_an_item_published_after_the_close_never_reaches_that_bar() -> None:
    closes = np.array([CLOSE, CLOSE + 24 * HOUR_NS])
    items = np.array([CLOSE - HOUR_NS, CLOSE, CLOSE + 1])
    scores = np.array([0.5, 0.1, -0.9])
    out = sentiment_features(closes, items, scores)
    assert list(out["news_count_24h"]) == [2, 1] and list(out["news_count_72h"]) == [2, 3]
    assert out["news_sentiment_mean_24h"][0] == pytest.approx(0.3)
    assert out["news_sentiment_mean_24h"][1] == pytest.approx(-0.9)


def test_windows_forget_old_items_and_no_news_is_not_neutral() -> None:
    closes = np.array([CLOSE, CLOSE + 48 * HOUR_NS, CLOSE + 200 * HOUR_NS])
    out = sentiment_features(closes, np.array([CLOSE - HOUR_NS]), np.array([0.8]))
    assert list(out["news_count_24h"]) == [1, 0, 0] and list(out["news_count_72h"]) == [1, 1, 0]
    assert np.isnan(out["news_sentiment_mean_24h"][1]) and np.isnan(out["news_sentiment_decayed"][2])


def test_the_decayed_mean_weights_recent_items_more() -> None:
    items = np.array([CLOSE - 48 * HOUR_NS, CLOSE - HOUR_NS])
    out = sentiment_features(np.array([CLOSE]), items, np.array([-1.0, 1.0]), half_life_hours=12)
    assert out["news_sentiment_mean_72h"][0] == pytest.approx(0.0)
    w_old, w_new = 0.5 ** (48 / 12), 0.5 ** (1 / 12)
    assert out["news_sentiment_decayed"][0] == pytest.approx((w_new - w_old) / (w_new + w_old))


def test_items_without_sentiment_are_not_counted() -> None:
    out = sentiment_features(np.array([CLOSE]), np.array([CLOSE - 1, CLOSE - 2]), np.array([np.nan, 0.4]))
    assert out["news_count_24h"][0] == 1 and out["news_sentiment_mean_24h"][0] == pytest.approx(0.4)


def test_a_daily_bar_closes_at_the_session_close_and_a_minute_bar_after_its_minute() -> None:
    daily = pd.Series(pd.to_datetime(["2024-06-04T04:00:00Z", "2024-07-03T04:00:00Z"]))  # midnights, New York
    closes = bar_close_ns(daily, "1day")
    assert list(pd.to_datetime(closes, utc=True)) == [
        pd.Timestamp("2024-06-04T20:00:00Z"),
        pd.Timestamp("2024-07-03T17:00:00Z"),  # a half day
    ]
    minute = pd.Series(pd.to_datetime(["2024-06-04T13:30:00Z"]))
    assert bar_close_ns(minute, "1min")[0] == pd.Timestamp("2024-06-04T13:31:00Z").value


@pytest.mark.parametrize(("timeframe", "close"), [("30min", "14:30"), ("2hour", "16:00"), ("1h", "15:00")])
def test_an_intraday_bar_closes_after_its_width_whatever_the_timeframe(timeframe: str, close: str) -> None:
    ten = pd.Series(pd.to_datetime(["2024-03-11T14:00:00Z"]))  # 10:00 New York
    assert bar_close_ns(ten, timeframe)[0] == pd.Timestamp(f"2024-03-11T{close}:00Z").value


@pytest.mark.parametrize("timeframe", ["5s", "15s", "1week", "2day", "1month"])
def test_a_timeframe_without_a_known_close_is_refused(timeframe: str) -> None:
    # taken as daily, a 10:00 bar of these saw the news until the next day's 10:00 (the review)
    ten = pd.Series(pd.to_datetime(["2024-03-11T14:00:00Z"]))
    with pytest.raises(RequestError, match="cannot tell when"):
        bar_close_ns(ten, timeframe)


def test_the_long_frame_has_every_feature_of_every_bar() -> None:
    bars = pd.DataFrame(
        {
            "symbol": ["A", "A", "B"],
            "ts": pd.to_datetime(["2024-06-03T04:00Z", "2024-06-04T04:00Z", "2024-06-04T04:00Z"]),
        }
    )
    items = pd.DataFrame({"symbol": ["A"], "published_at": pd.to_datetime(["2024-06-03T21:00Z"]), "sentiment": [0.5]})
    long = symbol_feature_frame(bars, items, "1day")
    assert len(long) == 3 * len(feature_names())
    counts = long[long["name"] == "news_count_24h"].set_index(["symbol", "ts"])["value"]
    assert list(counts) == [0.0, 1.0, 0.0]  # after A's first close, before its second


def test_an_updated_item_counts_as_the_version_known_at_each_close() -> None:
    """Published an hour before the first close, updated between the closes: the first close sees
    the first version's score, the second the update's, never both; a version known only after a
    close (an item first seen updated) does not count for it."""
    published, updated = CLOSE - HOUR_NS, CLOSE + HOUR_NS
    closes = np.array([CLOSE, updated - 1, updated, CLOSE + 2 * HOUR_NS])
    out = sentiment_features(
        closes,
        np.array([published, published, published]),
        np.array([0.6, -0.4, 0.9]),
        known_ns=np.array([published, updated, updated + HOUR_NS // 2]),
        superseded_ns=np.array([updated, NEVER_NS, NEVER_NS]),
    )
    assert list(out["news_count_24h"]) == [1, 1, 1, 2]
    assert list(out["news_sentiment_mean_24h"][:3]) == pytest.approx([0.6, 0.6, -0.4])
    assert out["news_sentiment_mean_24h"][3] == pytest.approx(0.25)


def test_the_long_frame_counts_each_version_while_it_is_the_known_one() -> None:
    bars = pd.DataFrame({"symbol": ["A", "A"], "ts": pd.to_datetime(["2024-06-04T14:05Z", "2024-06-04T19:30Z"])})
    items = pd.DataFrame(
        {
            "symbol": ["A", "A"],
            "published_at": pd.to_datetime(["2024-06-04T14:00Z", "2024-06-04T14:00Z"]),
            "known_at": pd.to_datetime(["2024-06-04T14:00Z", "2024-06-04T19:00Z"]),
            "superseded_at": pd.to_datetime(["2024-06-04T19:00Z", None], utc=True),
            "sentiment": [0.5, -0.5],
        }
    )
    long = symbol_feature_frame(bars, items, "1min")
    means = long[long["name"] == "news_sentiment_mean_24h"]["value"].tolist()
    assert means == [0.5, -0.5]


def test_item_arrays_of_different_lengths_are_refused() -> None:
    with pytest.raises(RequestError, match="one value per item version"):
        sentiment_features(np.array([CLOSE]), np.array([CLOSE - 1]), np.array([0.1]), known_ns=np.array([1, 2]))
