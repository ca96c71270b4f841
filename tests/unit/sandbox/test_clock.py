"""The sandbox's clock: nothing served after its now, today's daily bar forming until the close."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from email.utils import parsedate_to_datetime

import pytest
from starlette.testclient import TestClient

from sandbox import Market, SandboxConfig, create_app
from sandbox.clock import MarketClock, end_of_day_ns, parse_now, to_ns
from sandbox.market import NS_PER_MINUTE

DAY = date(2024, 6, 3)
AT_1411 = "2024-06-03T14:11:30-04:00"
POLY = {"apiKey": "sandbox"}
ALPACA = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}


def market_at(instant: str | None) -> Market:
    return Market(42, as_of=DAY, clock=MarketClock(to_ns(parse_now(instant)) if instant else None))


def day_range() -> tuple[int, int]:
    return to_ns(parse_now("2024-06-03T00:00")), end_of_day_ns(DAY)


def test_a_pinned_date_serves_that_whole_day_as_before() -> None:
    market = Market(42, as_of=DAY)
    assert len(market.bars("AAPL", *day_range())) == 390
    assert market.clock.now_ns() == end_of_day_ns(DAY)


def test_intraday_bars_are_served_once_their_window_has_ended() -> None:
    market = market_at(AT_1411)
    minutes = market.bars("AAPL", *day_range())
    assert len(minutes) == 281  # 09:30 .. 14:10
    assert int(minutes.t_ns[-1]) + NS_PER_MINUTE <= market.now_ns()
    assert int(minutes.t_ns[-1]) == to_ns(parse_now("2024-06-03T14:10:00-04:00"))
    hours = market.bars("AAPL", *day_range(), unit="hour")
    assert int(hours.t_ns[-1]) == to_ns(parse_now("2024-06-03T13:00:00-04:00"))  # 14:00-15:00 still open


def test_todays_daily_bar_forms_from_the_minutes_that_have_ended_and_is_final_after_the_close() -> None:
    start = to_ns(parse_now("2024-05-28T00:00"))
    forming = market_at(AT_1411)
    partial = forming.bars("AAPL", start, end_of_day_ns(DAY), unit="day")
    minutes = forming.bars("AAPL", *day_range())
    final = market_at("2024-06-03T16:30").bars("AAPL", start, end_of_day_ns(DAY), unit="day")
    assert len(partial) == len(final) == 5
    assert partial.close[-1] == minutes.close[-1]
    assert partial.volume[-1] == minutes.volume.sum() < final.volume[-1]
    assert partial.high[-1] == minutes.high.max()
    assert (partial.close[:-1] == final.close[:-1]).all()  # closed days do not change
    before_open = market_at("2024-06-03T09:00").bars("AAPL", start, end_of_day_ns(DAY), unit="day")
    assert len(before_open) == 4


def test_ticks_stop_at_now() -> None:
    market = market_at(AT_1411)
    with TestClient(create_app(SandboxConfig(seed=42, as_of=DAY), market)) as client:
        body = client.get(
            "/v3/trades/AAPL",
            params={**POLY, "timestamp.gte": "2024-06-03", "timestamp.lte": "2024-06-03", "order": "desc", "limit": 5},
        ).json()
        newest = body["results"][0]["sip_timestamp"]
        assert newest <= market.now_ns()
        alpaca = client.get(
            "/v2/stocks/AAPL/trades",
            params={"start": "2024-06-03T00:00:00Z", "end": "2024-06-04T00:00:00Z", "sort": "desc", "limit": 1},
            headers=ALPACA,
        ).json()
        assert alpaca["trades"][0]["t"] <= "2024-06-03T18:11:30Z"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SandboxConfig(seed=42, as_of=DAY))) as c:
        yield c


def test_the_clock_is_pinned_over_the_control_api_and_sent_as_the_date_header(client: TestClient) -> None:
    url = "/v2/aggs/ticker/AAPL/range/1/minute/2024-06-03/2024-06-03"
    assert client.get(url, params=POLY).json()["resultsCount"] == 390
    pinned = client.post("/_sandbox/clock", json={"now": AT_1411})
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    response = client.get(url, params=POLY)
    assert response.json()["resultsCount"] == 281
    assert parsedate_to_datetime(response.headers["date"]) == parse_now(AT_1411).replace(microsecond=0)
    daily = client.get("/v8/finance/chart/AAPL", params={"interval": "1d", "period1": 1717200000}).json()
    assert len(daily["chart"]["result"][0]["timestamp"]) == 1  # the forming bar of 2024-06-03
    client.delete("/_sandbox/clock")
    assert client.get(url, params=POLY).json()["resultsCount"] == 390


@pytest.mark.parametrize(
    ("body", "needle"),
    [({"now": "2024-06-05T10:00"}, "after the market's last day 2024-06-03"), ({"now": "soon"}, "'soon'")],
)
def test_a_bad_pin_is_refused_with_the_value(client: TestClient, body: dict[str, str], needle: str) -> None:
    response = client.post("/_sandbox/clock", json=body)
    assert response.status_code == 400
    assert needle in response.json()["error"]


def test_news_published_after_now_is_not_served_yet() -> None:
    params = {**POLY, "ticker": "NVDA", "published_utc.gte": "2024-06-03", "order": "asc", "limit": 1000}
    with TestClient(create_app(SandboxConfig(seed=42, as_of=DAY), market_at(None))) as client:
        whole_day = client.get("/v2/reference/news", params=params).json()["results"]
    with TestClient(create_app(SandboxConfig(seed=42, as_of=DAY), market_at("2024-06-03T09:00"))) as client:
        morning = client.get("/v2/reference/news", params=params).json()["results"]
    # the story of 19:56 New York, in Polygon's copy a few minutes later (sandbox.news.vendor_copies)
    assert len(whole_day) == 1 and whole_day[0]["published_utc"] > "2024-06-03T23:56"
    assert morning == []


def test_a_frozen_block_reads_one_instant_then_the_wall_clock_again() -> None:
    ticks = iter(range(1_000, 10_000, 100))
    clock = MarketClock(wall_ns=lambda: next(ticks))

    with clock.frozen() as served:
        readings = [clock.now_ns() for _ in range(3)]
    after = clock.now_ns()

    assert readings == [served] * 3
    assert after > served
