"""Alpaca's news stream parser: an `n` message is the row the REST parser makes of the same article;
a bad message or frame is dead with its raw text and its reason, the others are kept."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from core.errors import RequestError
from sources.alpaca.news_stream import PROTOCOL, subscription_messages
from sources.alpaca.parsing import parse_news
from sources.stream import protocol_for
from streaming.service import StreamPlan

ARTICLE = {
    "id": 24918784,
    "headline": "AAPL rallies as analysts upgrade the stock to buy",
    "summary": "Shares rose.",
    "author": "Benzinga Newsdesk",
    "created_at": "2024-06-03T14:05:37Z",
    "updated_at": "2024-06-03T15:00:01Z",
    "url": "https://www.benzinga.com/news/24/06/24918784/aapl",
    "content": "<p>Shares rose.</p>",
    "symbols": ["AAPL", "BRK.B"],
    "source": "benzinga",
}


def frame(*messages: object) -> bytes:
    return orjson.dumps(list(messages))


def test_an_n_message_is_the_row_rest_makes_of_the_article() -> None:
    batch = PROTOCOL.parse_frames([frame({"T": "n", **ARTICLE})], [1])
    rest = parse_news({"news": [{**ARTICLE, "images": []}]})
    pd.testing.assert_frame_equal(batch.news, rest)
    assert batch.news["id"].tolist() == ["24918784"] and batch.news["symbols"].tolist() == ["AAPL,BRK.B"]
    assert batch.news["updated_ts"].iloc[0] == pd.Timestamp("2024-06-03T15:00:01Z")
    assert batch.rows == 1 and batch.trades.empty and not batch.dead


def test_a_bad_message_is_dead_alone_and_a_cut_frame_whole() -> None:
    no_id = {"T": "n", **{k: v for k, v in ARTICLE.items() if k != "id"}}
    bad_time = {"T": "n", **ARTICLE, "id": 2, "created_at": "yesterday"}
    good = {"T": "n", **ARTICLE, "id": 3}
    cut = frame({"T": "n", **ARTICLE, "id": 4})[:40]
    batch = PROTOCOL.parse_frames([frame(no_id, bad_time, good, {"T": "success", "msg": "authenticated"}), cut], [1, 2])
    assert batch.news["id"].tolist() == ["3"]
    reasons = {d.raw: d.reason for d in batch.dead}
    assert len(reasons) == 3
    assert reasons[orjson.dumps(no_id)] == "malformed news article: lacks ['id']"
    assert "cannot be read as datetime" in reasons[orjson.dumps(bad_time)]
    assert reasons[cut].startswith("not JSON")
    assert [e.kind for e in batch.events] == ["authenticated"]


def test_news_subscribes_on_its_own_endpoint_and_alone() -> None:
    assert orjson.loads(subscription_messages("subscribe", ["news"], ["*"])[0]) == {
        "action": "subscribe",
        "news": ["*"],
    }
    assert protocol_for("alpaca", ["news"]).path == "/v1beta1/news"
    assert protocol_for("alpaca", ["trades"]).path == "/v2/{feed}"
    with pytest.raises(RequestError, match="own"):
        StreamPlan.of("alpaca", "AAPL", "news,trades")
    with pytest.raises(RequestError, match="polygon has no news stream"):
        StreamPlan.of("polygon", "AAPL", "news")
    assert StreamPlan.of("alpaca", "*", "news").symbols == ("*",)
