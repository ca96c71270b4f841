"""The sandbox's vendor network: latency draws, the plan's rate limit, the control API."""

from __future__ import annotations

import statistics
from datetime import date

import pytest
from starlette.testclient import TestClient

from sandbox import Market, SandboxConfig, create_app
from sandbox.latency import LatencyConfig, VendorNetwork

AS_OF = date(2024, 6, 28)
AGGS = "/v2/aggs/ticker/AAPL/range/1/day/2024-06-03/2024-06-07"


def test_latency_draws_follow_the_configured_median_and_tail() -> None:
    network = VendorNetwork(LatencyConfig(median_ms=80, sigma=0.5, tail_fraction=0.05, tail_ms=1000, seed=3))
    delays = [network.delay_seconds("polygon") * 1000 for _ in range(4000)]
    body = [d for d in delays if d < 900]  # the log-normal part (its 99.99th percentile is ~550 ms)
    tail_share = 1 - len(body) / len(delays)
    assert statistics.median(body) == pytest.approx(80, rel=0.08)
    assert tail_share == pytest.approx(0.05, abs=0.015)
    assert statistics.mean(delays) == pytest.approx(network.config.mean_ms(), rel=0.1)


def test_latency_applies_only_to_the_configured_vendors() -> None:
    network = VendorNetwork(LatencyConfig(median_ms=50, vendors=frozenset({"alpaca"})))
    assert network.delay_seconds("polygon") == 0.0
    assert network.delay_seconds("alpaca") > 0.0
    assert VendorNetwork(LatencyConfig()).delay_seconds("polygon") == 0.0  # off by default


def test_the_plan_limit_is_a_token_bucket_of_one_second() -> None:
    now = [100.0]
    network = VendorNetwork(LatencyConfig(requests_per_second=10), clock=lambda: now[0])
    assert [network.admit("polygon") for _ in range(11)] == [True] * 10 + [False]
    now[0] += 0.15  # one and a half requests worth of tokens back
    assert [network.admit("polygon") for _ in range(2)] == [True, False]
    assert network.admit("alpaca")  # each vendor has its own bucket


def test_latency_config_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"unknown latency setting.*'median'"):
        LatencyConfig.from_json({"median": 80})
    with pytest.raises(ValueError, match=r"tail_fraction=1\.5"):
        LatencyConfig(tail_fraction=1.5)
    with pytest.raises(ValueError, match=r"requests_per_second=0"):
        LatencyConfig.from_json({"requests_per_second": 0})


def test_control_api_turns_the_network_on_and_off_and_429s_are_counted() -> None:
    app = create_app(SandboxConfig(seed=42, as_of=AS_OF), Market(42, as_of=AS_OF))
    with TestClient(app) as client:
        configured = client.post("/_sandbox/latency", json={"requests_per_second": 2, "vendors": ["polygon"]})
        assert configured.status_code == 200 and configured.json()["requests_per_second"] == 2
        statuses = [client.get(AGGS, params={"apiKey": "sandbox"}).status_code for _ in range(4)]
        assert statuses[:2] == [200, 200] and 429 in statuses[2:]
        limited = client.get(AGGS, params={"apiKey": "sandbox"})
        assert limited.status_code == 429 and "retry-after" in limited.headers
        endpoints = client.get("/_sandbox/stats").json()["endpoints"]
        assert sum(e.get("fault_plan_limit", 0) for e in endpoints.values()) >= 2
        assert client.post("/_sandbox/latency", json={"median": 1}).status_code == 400
        assert client.delete("/_sandbox/latency").json()["requests_per_second"] is None
        assert [client.get(AGGS, params={"apiKey": "sandbox"}).status_code for _ in range(4)] == [200] * 4
