import pandas as pd
import pytest

from core import model
from core.errors import PermanentSourceError
from sources.alpaca import parse_bars, parse_corporate_actions, parse_news, parse_quotes, parse_trades
from sources.polygon import parse_aggregates
from tests.support.payloads import alpaca_bar, polygon_agg, polygon_aggs


def test_multi_symbol_bars_are_flattened_with_normalized_symbols():
    payload = {
        "bars": {"AAPL": [alpaca_bar(), alpaca_bar(t="2023-01-04T05:00:00Z")], "BRK.B": [alpaca_bar()]},
        "next_page_token": None,
    }
    bars = parse_bars(payload, timeframe="1Day")
    assert list(bars.columns) == list(model.BARS)
    assert list(bars["symbol"]) == ["AAPL", "AAPL", "BRK.B"]
    assert bars.loc[1, "ts"] == pd.Timestamp("2023-01-04T05:00:00Z")
    assert bars["timeframe"].unique().tolist() == ["1day"]


def test_single_symbol_response_uses_its_symbol_field():
    bars = parse_bars({"bars": [alpaca_bar()], "symbol": "MSFT", "next_page_token": None})
    assert bars["symbol"].tolist() == ["MSFT"]


@pytest.mark.parametrize("payload", [{"bars": None, "symbol": "AAPL"}, {"bars": {}, "next_page_token": None}])
def test_empty_results_are_empty_frames(payload):
    assert len(parse_bars(payload)) == 0


def test_alpaca_and_polygon_bars_of_the_same_minute_are_equal_but_for_source():
    minute_ms = 1672756200000
    polygon = parse_aggregates(polygon_aggs([polygon_agg(t=minute_ms)]), timeframe="1min")
    alpaca = parse_bars({"bars": {"AAPL": [alpaca_bar(t="2023-01-03T14:30:00Z")]}}, timeframe="1Min")
    pd.testing.assert_frame_equal(polygon.drop(columns="source"), alpaca.drop(columns="source"))


@pytest.mark.parametrize(
    "payload",
    [
        {"bars": {"AAPL": [alpaca_bar(o="x")]}},
        {"bars": {"AAPL": [{"t": "2023-01-03T05:00:00Z", "o": 1}]}},
        {"bars": {"AAPL": "nope"}},
        {"bars": [alpaca_bar()]},  # a list without "symbol"
        {"bars": {"AAPL": [alpaca_bar(t="not a time")]}},
        {"message": "forbidden."},
        ["not", "an", "object"],
    ],
)
def test_malformed_bars_raise_a_typed_error(payload):
    with pytest.raises(PermanentSourceError):
        parse_bars(payload)


def test_trades_and_quotes():
    trades = parse_trades(
        {
            "trades": {
                "AAPL": [
                    {
                        "t": "2023-01-03T14:30:00.123456Z",
                        "x": "V",
                        "p": 125.0,
                        "s": 10,
                        "c": ["@", "I"],
                        "i": 5,
                        "z": "C",
                    }
                ]
            },
            "next_page_token": None,
        }
    )
    assert (trades.loc[0, "exchange"], trades.loc[0, "conditions"], trades.loc[0, "trade_id"]) == ("V", "@,I", "5")
    assert trades.loc[0, "ts"] == pd.Timestamp("2023-01-03T14:30:00.123456Z")
    quotes = parse_quotes(
        {
            "quotes": {
                "AAPL": [
                    {
                        "t": "2023-01-03T14:30:00Z",
                        "ax": "V",
                        "ap": 10.1,
                        "as": 2,
                        "bx": "Q",
                        "bp": 10.0,
                        "bs": 3,
                        "c": ["R"],
                        "z": "C",
                    }
                ]
            }
        }
    )
    assert (quotes.loc[0, "bid_size"], quotes.loc[0, "ask_price"], quotes.loc[0, "bid_exchange"]) == (3, 10.1, "Q")


def test_news_from_benzinga_fields():
    payload = {
        "news": [
            {
                "id": 24843171,
                "headline": "Apple up",
                "author": "Benzinga Newsdesk",
                "created_at": "2022-01-05T22:00:37Z",
                "updated_at": "2022-01-05T22:00:38Z",
                "summary": "s",
                "content": "",
                "url": "https://x",
                "symbols": ["AAPL", "BRK/B"],
                "source": "benzinga",
            },
        ],
        "next_page_token": None,
    }
    row = parse_news(payload).iloc[0]
    assert (row["id"], row["symbols"], row["publisher"]) == ("24843171", "AAPL,BRK.B", "benzinga")


def test_corporate_actions_splits_and_cash_dividends():
    payload = {
        "corporate_actions": {
            "forward_splits": [
                {
                    "corporate_action_type": "forward_split",
                    "symbol": "NVDA",
                    "new_rate": 10,
                    "old_rate": 1,
                    "process_date": "2024-06-10",
                    "ex_date": "2024-06-10",
                    "record_date": "2024-06-06",
                    "payable_date": "2024-06-07",
                }
            ],
            "cash_dividends": [
                {
                    "corporate_action_type": "cash_dividend",
                    "symbol": "AAPL",
                    "rate": 0.25,
                    "special": False,
                    "foreign": False,
                    "process_date": "2024-05-10",
                    "ex_date": "2024-05-10",
                    "record_date": "2024-05-13",
                    "payable_date": "2024-05-16",
                }
            ],
            "mergers": [{"acquirer_symbol": "X"}],
        },
        "next_page_token": None,
    }
    actions = parse_corporate_actions(payload).set_index("symbol")
    assert actions.loc["NVDA", "action"] == "split" and actions.loc["NVDA", "new_rate"] == 10.0
    assert actions.loc["AAPL", "action"] == "dividend" and actions.loc["AAPL", "amount"] == 0.25


def test_corporate_actions_missing_rates_are_malformed():
    with pytest.raises(PermanentSourceError, match="new_rate"):
        parse_corporate_actions({"corporate_actions": {"forward_splits": [{"symbol": "X", "ex_date": "2024-01-01"}]}})
