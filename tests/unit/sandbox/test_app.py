"""Wire formats, errors, paging, faults and stats of the sandbox app, in process (no server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from starlette.testclient import TestClient

from sandbox import Market, SandboxConfig, create_app

AS_OF = date(2024, 6, 28)
POLY = {"apiKey": "sandbox"}
ALPACA = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


@pytest.fixture
def client(market: Market) -> Iterator[TestClient]:
    with TestClient(create_app(SandboxConfig(seed=42, as_of=AS_OF), market)) as c:
        yield c


def follow_polygon(client: TestClient, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    body = client.get(url, params={**POLY, **params}).json()
    while True:
        results += body.get("results", [])
        if "next_url" not in body:
            return results
        # httpx replaces a URL's query when given params, so authenticate the Bearer way here.
        body = client.get(body["next_url"], headers={"Authorization": "Bearer sandbox"}).json()


def test_polygon_pages_add_up_to_one_big_page(client: TestClient) -> None:
    url = "/v2/aggs/ticker/AAPL/range/5/minute/2024-06-03/2024-06-10"
    paged = follow_polygon(client, url, {"limit": 100})
    whole = client.get(url, params={**POLY, "limit": 50000}).json()["results"]
    assert paged == whole and len(whole) == 6 * 78
    backwards = follow_polygon(client, url, {"limit": 100, "sort": "desc"})
    assert backwards == whole[::-1]


def test_polygon_raw_and_adjusted_differ_only_before_a_split(client: TestClient, market: Market) -> None:
    sym = next(f"S{i}" for i in range(400) if any(e.ex_date.year == 2023 for e in market.splits(f"S{i}")))
    event = next(e for e in market.splits(sym) if e.ex_date.year == 2023)
    url = f"/v2/aggs/ticker/{sym}/range/1/day/2023-01-01/2023-12-31"
    adjusted = client.get(url, params={**POLY, "adjusted": "true"}).json()["results"]
    raw = client.get(url, params={**POLY, "adjusted": "false"}).json()["results"]
    ratio = event.split_to / event.split_from
    first = raw[0]
    assert adjusted[0]["c"] == pytest.approx(first["c"] / ratio, abs=1e-4)
    assert adjusted[-1] == raw[-1]


def test_the_same_minute_is_the_same_bar_for_every_vendor(client: TestClient) -> None:
    poly = client.get("/v2/aggs/ticker/BRK.B/range/1/minute/2024-06-04/2024-06-04", params={**POLY, "limit": 3}).json()[
        "results"
    ]
    alp = client.get(
        "/v2/stocks/BRK.B/bars",
        headers=ALPACA,
        params={"timeframe": "1Min", "start": "2024-06-04", "end": "2024-06-04", "limit": 3, "adjustment": "split"},
    ).json()
    yahoo = client.get(
        "/v8/finance/chart/BRK-B",
        params={"period1": poly[0]["t"] // 1000, "period2": poly[0]["t"] // 1000 + 179, "interval": "1m"},
    ).json()
    quote = yahoo["chart"]["result"][0]["indicators"]["quote"][0]
    assert [(b["o"], b["c"], b["v"]) for b in poly] == [(b["o"], b["c"], b["v"]) for b in alp["bars"]]
    assert [b["o"] for b in poly] == quote["open"] and [b["v"] for b in poly] == quote["volume"]


def test_alpaca_multi_symbol_paging_covers_everything_once(client: TestClient) -> None:
    params = {
        "symbols": "MSFT,AAPL,ZZZX",
        "timeframe": "15Min",
        "start": "2024-06-03",
        "end": "2024-06-05",
        "limit": 50,
    }
    seen: dict[str, list[str]] = {}
    token = None
    while True:
        body = client.get(
            "/v2/stocks/bars", headers=ALPACA, params={**params, **({"page_token": token} if token else {})}
        ).json()
        for sym, bars in body["bars"].items():
            seen.setdefault(sym, []).extend(b["t"] for b in bars)
        token = body["next_page_token"]
        if token is None:
            break
    assert set(seen) == {"AAPL", "MSFT"}
    assert all(len(ts) == len(set(ts)) == 3 * 26 for ts in seen.values())


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v2/aggs/ticker/AAPL/range/1/fortnight/2024-06-03/2024-06-07", POLY, 400),
        ("/v2/aggs/ticker/AAPL/range/1/day/yesterday/2024-06-07", POLY, 400),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-06-03/2024-06-07", {**POLY, "limit": "50001"}, 400),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-06-03/2024-06-07", {}, 401),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-06-03/2024-06-07", {"apiKey": "invalid-x"}, 401),
        ("/v8/finance/chart/AAPL", {"interval": "7m"}, 400),
        ("/v8/finance/chart/AAPL", {"interval": "1m", "period1": 1717000000, "period2": 1719000000}, 422),
        ("/v8/finance/chart/ZZZQ", {}, 404),
        ("/r/zzzsecret/new.json", {}, 404),
    ],
)
def test_bad_requests_get_the_vendor_error(client: TestClient, path: str, params: dict, status: int) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status
    body = response.json()
    assert ("error" in body) or ("chart" in body and body["chart"]["error"]) or ("message" in body)


@pytest.mark.parametrize(
    ("params", "headers", "status", "code"),
    [
        ({"symbols": "AAPL", "timeframe": "1Fortnight"}, ALPACA, 422, 42210000),
        ({"symbols": "AAPL", "timeframe": "1Day", "limit": "10001"}, ALPACA, 422, 42210000),
        ({"symbols": "AAPL", "timeframe": "1Day", "adjustment": "some"}, ALPACA, 422, 42210000),
        ({"symbols": "AAPL", "timeframe": "1Day"}, {}, 401, 40110000),
        ({"symbols": "AAPL", "timeframe": "1Day"}, {**ALPACA, "APCA-API-KEY-ID": "invalid"}, 401, 40110000),
    ],
)
def test_alpaca_errors(client: TestClient, params: dict, headers: dict, status: int, code: int) -> None:
    response = client.get("/v2/stocks/bars", params=params, headers=headers)
    assert response.status_code == status and response.json()["code"] == code


def test_unknown_symbols_get_the_vendor_empty_answer(client: TestClient) -> None:
    poly = client.get("/v2/aggs/ticker/ZZZQ/range/1/day/2024-06-03/2024-06-07", params=POLY).json()
    assert poly["resultsCount"] == 0 and "results" not in poly and poly["status"] == "OK"
    single = client.get("/v2/stocks/ZZZQ/bars", headers=ALPACA, params={"timeframe": "1Day", "start": "2024-06-03"})
    assert single.json()["bars"] is None


def test_yahoo_chart_has_adjclose_and_events(client: TestClient, market: Market) -> None:
    payer = next(s for s in ("KO", "PG", "JNJ", "XOM", "WMT") if market.dividends(s))
    body = client.get(
        f"/v8/finance/chart/{payer}",
        params={"period1": 946_000_000, "period2": 1_719_600_000, "interval": "1d", "events": "div,splits"},
    ).json()
    result = body["chart"]["result"][0]
    quote, adj = result["indicators"]["quote"][0], result["indicators"]["adjclose"][0]["adjclose"]
    assert len(result["timestamp"]) == len(quote["close"]) == len(adj)
    assert result["events"]["dividends"] and adj[0] < quote["close"][0]  # dividends lower the past
    assert adj[-1] == quote["close"][-1]


def test_reddit_paging_never_repeats_a_post(client: TestClient) -> None:
    first = client.get("/r/stocks/new.json", params={"limit": 100}).json()["data"]
    second = client.get("/r/stocks/new.json", params={"limit": 100, "after": first["after"]}).json()["data"]
    ids = [c["data"]["id"] for c in first["children"] + second["children"]]
    assert len(ids) == 200 == len(set(ids))
    created = [c["data"]["created_utc"] for c in first["children"] + second["children"]]
    assert created == sorted(created, reverse=True)


def run_storm(client: TestClient) -> list[int]:
    statuses = []
    for day in range(3, 8):
        for sym in ("AAPL", "MSFT", "TSLA"):
            r = client.get(f"/v2/aggs/ticker/{sym}/range/1/hour/2024-06-0{day}/2024-06-0{day}", params=POLY)
            statuses.append(r.status_code)
    return statuses


def test_faults_are_seeded_and_reconcile_with_stats(market: Market) -> None:
    storm = {
        "seed": 5,
        "rates": {"rate_limit": 0.15, "server_error": 0.15, "truncated": 0.1, "missing_bars": 0.2, "duplicates": 0.2},
        "retry_after_seconds": 2,
    }
    runs = []
    for _ in range(2):
        with TestClient(create_app(SandboxConfig(seed=42, as_of=AS_OF), market)) as c:
            assert c.post("/_sandbox/faults", json=storm).status_code == 200
            runs.append(run_storm(c))
            stats = c.get("/_sandbox/stats").json()
    assert runs[0] == runs[1] and {429, 200} <= set(runs[0]) and any(s >= 500 for s in runs[0])
    agg = stats["endpoints"]["polygon.aggs"]
    assert agg["requests"] == 15 == stats["vendors"]["polygon"]["total"]
    ok_requests = agg.get("status_200", 0) - agg.get("fault_truncated", 0)
    assert agg.get("records_served", 0) + agg.get("records_dropped", 0) == 7 * ok_requests


def test_retry_after_and_kill_switch(client: TestClient) -> None:
    client.post("/_sandbox/faults", json={"rates": {"rate_limit": 1.0}, "retry_after_seconds": 3})
    limited = client.get("/v2/aggs/ticker/AAPL/range/1/day/2024-06-03/2024-06-07", params=POLY)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    client.post("/_sandbox/faults", json={"killed_symbols": ["TSLA"]})
    assert client.get("/v2/aggs/ticker/TSLA/range/1/day/2024-06-03/2024-06-07", params=POLY).status_code == 503
    assert client.get("/v2/aggs/ticker/AAPL/range/1/day/2024-06-03/2024-06-07", params=POLY).status_code == 200
    assert client.delete("/_sandbox/faults").json()["killed_symbols"] == []


def test_fault_config_is_validated(client: TestClient) -> None:
    assert client.post("/_sandbox/faults", json={"rates": {"gremlins": 0.5}}).status_code == 400
    assert client.post("/_sandbox/faults", json={"rates": {"rate_limit": 0.7, "server_error": 0.7}}).status_code == 400
    assert client.post("/_sandbox/faults", json={"sed": 1}).status_code == 400


def test_health_reports_the_market(client: TestClient) -> None:
    body = client.get("/_sandbox/health").json()
    assert body["status"] == "ok" and body["seed"] == 42 and body["last_session"] == "2024-06-28"
