"""A Yahoo late with a same-day split (`/_sandbox/late-splits`), in process (no server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
from starlette.testclient import TestClient

from sandbox import Market, SandboxConfig, create_app
from sandbox.market import SplitEvent

AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


@pytest.fixture(scope="module")
def split(market: Market) -> SplitEvent:
    """A split ex in 2024 before the market's last day, at least a few sessions in."""
    return next(e for i in range(400) for e in market.splits(f"S{i}") if date(2024, 2, 1) <= e.ex_date < AS_OF)


@pytest.fixture
def client(market: Market, split: SplitEvent) -> Iterator[TestClient]:
    """The sandbox at 11:00 New York on the split's ex date."""
    with TestClient(create_app(SandboxConfig(seed=42, as_of=AS_OF), market)) as c:
        assert c.post("/_sandbox/clock", json={"now": f"{split.ex_date}T11:00"}).status_code == 200
        yield c
        c.delete("/_sandbox/clock")


def chart(client: TestClient, split: SplitEvent) -> dict:
    period1 = int(datetime.combine(split.ex_date - timedelta(days=10), time(), UTC).timestamp())
    body = client.get(
        f"/v8/finance/chart/{split.symbol}", params={"period1": period1, "interval": "1d", "events": "div,splits"}
    ).json()
    return body["chart"]["result"][0]


def test_a_late_split_is_listed_but_the_bars_before_it_are_served_unadjusted(
    client: TestClient, split: SplitEvent
) -> None:
    adjusted = chart(client, split)
    assert client.post("/_sandbox/late-splits", json={"symbol": split.symbol}).json() == [{"symbol": split.symbol}]
    late = chart(client, split)
    client.delete("/_sandbox/late-splits")
    served_again = chart(client, split)

    ratio = split.split_to / split.split_from
    ex_open = adjusted["meta"]["currentTradingPeriod"]["regular"]["start"]
    assert [s["date"] for s in late["events"]["splits"].values()] == [ex_open]  # still listed
    before = [i for i, t in enumerate(adjusted["timestamp"]) if t < ex_open]
    assert before and len(before) < len(adjusted["timestamp"])  # bars on both sides of the ex date
    quote, late_quote = adjusted["indicators"]["quote"][0], late["indicators"]["quote"][0]
    for i in before:
        assert late_quote["close"][i] == pytest.approx(quote["close"][i] * ratio)
        assert late_quote["volume"][i] == round(quote["volume"][i] / ratio)
    assert late_quote["open"][-1] == quote["open"][-1]  # the ex date's bar is post-split either way
    assert served_again == adjusted


def test_a_late_split_needs_a_symbol(client: TestClient) -> None:
    response = client.post("/_sandbox/late-splits", json={"ticker": "X"})
    assert response.status_code == 400 and "symbol" in response.json()["error"]
