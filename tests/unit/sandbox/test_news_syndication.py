"""Syndicated news in the sandbox: one story served by several vendors under different ids, URLs
and wordings, updates, spam and off-topic posts, and the truth the control API tells about them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date

import pytest
from starlette.testclient import TestClient

from sandbox import Market, SandboxConfig, create_app
from sandbox.news import subreddit_posts, vendor_copies

AS_OF = date(2024, 6, 28)
POLY = {"apiKey": "sandbox"}
ALPACA = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}
SYMBOLS = "AAPL,MSFT,TSLA,NVDA"
WINDOW = {"start": "2024-04-01T00:00:00Z", "end": "2024-06-28T23:59:59Z"}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SandboxConfig(seed=42, as_of=AS_OF), Market(42, as_of=AS_OF))) as c:
        yield c


def _polygon_ids(client: TestClient) -> set[str]:
    params = {**POLY, "ticker.any_of": SYMBOLS, "published_utc.gte": WINDOW["start"], "limit": 1000}
    params["published_utc.lte"] = WINDOW["end"]
    ids: set[str] = set()
    for sym in SYMBOLS.split(","):
        params.pop("ticker.any_of", None)
        body = client.get("/v2/reference/news", params={**params, "ticker": sym}).json()
        assert "next_url" not in body
        ids |= {r["id"] for r in body["results"]}
    return ids


def _alpaca_ids(client: TestClient) -> set[str]:
    ids: set[str] = set()
    token = None
    while True:
        params = {"symbols": SYMBOLS, **WINDOW, "limit": 50, **({"page_token": token} if token else {})}
        body = client.get("/v1beta1/news", params=params, headers=ALPACA).json()
        ids |= {str(r["id"]) for r in body["news"]}
        token = body["next_page_token"]
        if not token:
            return ids


def test_the_truth_names_every_served_item_and_groups_copies_into_stories(client: TestClient) -> None:
    truth = client.get("/_sandbox/news/truth", params={"symbols": SYMBOLS, **WINDOW}).json()["news"]
    served = {("polygon", i) for i in _polygon_ids(client)} | {("alpaca", i) for i in _alpaca_ids(client)}
    assert {(t["source"], t["id"]) for t in truth} == served
    stories: dict[str, list[dict]] = defaultdict(list)
    for t in truth:
        stories[t["story"]].append(t)
    shared = [copies for copies in stories.values() if {c["source"] for c in copies} == {"polygon", "alpaca"}]
    assert len(shared) > 10  # syndicated across vendors
    assert any(len({c["id"] for c in copies}) == len(copies) > 1 for copies in shared)
    assert any(len({c["headline"] for c in copies}) > 1 for copies in shared)  # reworded
    assert all(len({c["polarity"] for c in copies}) == 1 for copies in stories.values())


def test_copies_carry_tracking_parameters_mobile_hosts_and_other_sites() -> None:
    market = Market(42, as_of=AS_OF)
    urls = [c.url for sym in ("AAPL", "MSFT", "TSLA") for c in vendor_copies("polygon", sym, market.news(sym), 2**62)]
    assert any("utm_source=" in u for u in urls)
    assert any(u.startswith("https://m.") for u in urls)
    assert any(u.startswith("https://amp.") for u in urls)
    assert any("/markets/" in u for u in urls)  # republished under the syndicating site's own address


def test_an_update_is_served_only_once_the_clock_passes_it() -> None:
    market = Market(42, as_of=AS_OF)
    table = market.news("TSLA")
    late = vendor_copies("alpaca", "TSLA", table, 2**62)
    updated = [c for c in late if c.updated_ns > c.t_ns]
    assert updated and all(c.headline.startswith("UPDATE: ") for c in updated)
    first = updated[0]
    early = {c.id: c for c in vendor_copies("alpaca", "TSLA", table, first.updated_ns - 1)}
    assert early[first.id].updated_ns == early[first.id].t_ns and not early[first.id].headline.startswith("UPDATE")


def test_reddit_has_spam_and_off_topic_posts_the_truth_names() -> None:
    posts = subreddit_posts(42, "wallstreetbets", 475_000, 475_400)
    kinds = {p.kind for p in posts}
    assert kinds == {"post", "spam", "off_topic"}
    assert all(p.symbol == "" for p in posts if p.kind == "off_topic")
    assert all(p.symbol and f"${p.symbol}" in p.title for p in posts if p.kind != "off_topic")
