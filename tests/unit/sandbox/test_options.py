"""The sandbox's option chains: quotes with defects at their rates, a model a client can invert,
and Polygon's contracts reference endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import numpy as np
import pytest
from starlette.testclient import TestClient

from sandbox import Market, SandboxConfig, create_app
from sandbox.options import (
    QUOTE_BELOW_INTRINSIC,
    QUOTE_CROSSED,
    QUOTE_OK,
    QUOTE_STALE,
    QUOTE_ZERO_BID,
    RISK_FREE,
    expiry_ns,
)

AS_OF = date(2024, 6, 28)
SYMBOLS = ("AAPL", "MSFT", "KO", "TSLA", "IBM")


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


@pytest.fixture
def client(market: Market) -> Iterator[TestClient]:
    with TestClient(create_app(SandboxConfig(seed=42, as_of=AS_OF), market)) as c:
        yield c


def test_every_defect_appears_at_a_realistic_rate(market: Market) -> None:
    chains = [market.option_chain(s) for s in SYMBOLS]
    defect = np.concatenate([c.defect for c in chains])
    share = {k: float(np.mean(defect == k)) for k in (QUOTE_CROSSED, QUOTE_STALE, QUOTE_BELOW_INTRINSIC)}
    assert 0.002 < share[QUOTE_CROSSED] < 0.03 and 0.01 < share[QUOTE_STALE] < 0.06
    assert 0.005 < share[QUOTE_BELOW_INTRINSIC] < 0.08 and np.mean(defect == QUOTE_OK) > 0.5
    for c in chains:
        assert np.all(c.bid[c.defect == QUOTE_CROSSED] > c.ask[c.defect == QUOTE_CROSSED])
        assert np.all(c.bid[c.defect == QUOTE_ZERO_BID] == 0)
        assert np.all(c.quote_ns[c.defect == QUOTE_STALE] < c.snapshot_ns - 86_400 * 10**9 + 1)
        clean = c.defect == QUOTE_OK
        assert np.all(c.bid[clean] <= c.ask[clean]) and np.all(c.quote_ns[clean] == c.snapshot_ns)


def test_below_intrinsic_quotes_are_below_the_discounted_lower_bound(market: Market) -> None:
    for c in (market.option_chain(s) for s in SYMBOLS):
        years = (np.array([expiry_ns(d) for d in c.expiration.astype(object)]) - c.snapshot_ns) / (365 * 86_400e9)
        carry, disc = np.exp(-c.dividend_yield * years), np.exp(-RISK_FREE * years)
        lower = np.where(c.is_call, c.spot * carry - c.strike * disc, c.strike * disc - c.spot * carry)
        below = c.defect == QUOTE_BELOW_INTRINSIC
        assert np.all((c.bid[below] + c.ask[below]) / 2 < lower[below])


def test_the_contracts_endpoint_lists_the_chain_with_polygons_fields(client: TestClient, market: Market) -> None:
    chain = market.option_chain("AAPL")
    params = {"apiKey": "sandbox", "underlying_ticker": "AAPL", "limit": 1000, "contract_type": "put"}
    body = client.get("/v3/reference/options/contracts", params=params).json()
    results = body["results"]
    assert len(results) == int((~chain.is_call).sum()) and all(r["contract_type"] == "put" for r in results)
    first = results[0]
    assert set(first) >= {"ticker", "underlying_ticker", "expiration_date", "strike_price", "shares_per_contract"}
    assert first["ticker"].startswith("O:AAPL") and first["underlying_ticker"] == "AAPL"
    expired = client.get("/v3/reference/options/contracts", params={**params, "expired": "true"}).json()
    assert expired["results"] == []
    missing = client.get("/v3/reference/options/contracts", params={"apiKey": "sandbox"})
    assert missing.status_code == 400 and "underlying_ticker" in missing.json()["error"]
