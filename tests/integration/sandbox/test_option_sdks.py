"""The official SDKs read the sandbox's option chains: Polygon's snapshot and contracts (massive),
Alpaca's option snapshots (alpaca-py), the same contracts and quotes from both vendors."""

from __future__ import annotations

from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.requests import OptionChainRequest
from massive import RESTClient


def test_polygon_and_alpaca_serve_the_same_chain(no_faults: str) -> None:
    polygon = RESTClient(api_key="sandbox", base=no_faults, retries=0)
    snapshot = {c.details.ticker: c for c in polygon.list_snapshot_options_chain("AAPL", params={"limit": 250})}
    contracts = list(polygon.list_options_contracts(underlying_ticker="AAPL", limit=1000))
    assert {c.ticker for c in contracts} == set(snapshot) and all(c.underlying_ticker == "AAPL" for c in contracts)

    alpaca = OptionHistoricalDataClient(api_key="key", secret_key="secret", url_override=no_faults)
    chain = alpaca.get_option_chain(OptionChainRequest(underlying_symbol="AAPL"))
    assert {f"O:{symbol}" for symbol in chain} == set(snapshot)
    for symbol, contract in chain.items():
        theirs = snapshot[f"O:{symbol}"]
        assert contract.latest_quote.bid_price == theirs.last_quote.bid
        assert contract.latest_quote.ask_price == theirs.last_quote.ask
        assert contract.implied_volatility == theirs.implied_volatility
        assert contract.greeks.delta == theirs.greeks.delta and contract.greeks.rho is not None
    calls = alpaca.get_option_chain(OptionChainRequest(underlying_symbol="AAPL", type="call"))
    assert calls and all(snapshot[f"O:{s}"].details.contract_type == "call" for s in calls)
