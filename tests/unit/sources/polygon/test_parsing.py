import pandas as pd
import pytest
from loguru import logger

from core import model
from core.errors import PermanentSourceError
from sources.polygon import (
    parse_aggregates,
    parse_dividends,
    parse_financials,
    parse_news,
    parse_option_chain,
    parse_quotes,
    parse_splits,
    parse_trades,
)
from tests.support.payloads import JAN3_MIDNIGHT_ET_MS, polygon_agg, polygon_aggs


def test_aggregates_become_canonical_bars():
    bars = parse_aggregates(polygon_aggs([polygon_agg()], ticker="BRK.B"), timeframe="1day")
    assert list(bars.columns) == list(model.BARS)
    row = bars.iloc[0]
    assert row["symbol"] == "BRK.B"
    assert row["ts"] == pd.Timestamp("2023-01-03T05:00:00Z")
    assert (row["open"], row["high"], row["low"], row["close"]) == (10.0, 12.0, 9.0, 11.0)
    assert row["volume"] == 1000 and bars["volume"].dtype == "int64"
    assert row["trade_count"] == 42 and row["vwap"] == 10.5
    assert row["source"] == "polygon" and row["timeframe"] == "1day"


def test_minute_aggregates_keep_their_window_start():
    t = JAN3_MIDNIGHT_ET_MS + (9 * 60 + 30) * 60_000  # 09:30 New York
    bars = parse_aggregates(polygon_aggs([polygon_agg(t=t)]), timeframe="1min")
    assert bars.loc[0, "ts"] == pd.Timestamp("2023-01-03T14:30:00Z")


def test_grouped_daily_rows_carry_their_own_ticker():
    payload = polygon_aggs([polygon_agg(T="BRK-B"), polygon_agg(T="msft")])
    assert list(parse_aggregates(payload)["symbol"]) == ["BRK.B", "MSFT"]


def test_no_results_is_an_empty_frame_not_an_error():
    bars = parse_aggregates(polygon_aggs(None))
    assert len(bars) == 0 and list(bars.columns) == list(model.BARS)


def test_optional_fields_may_be_absent():
    bar = polygon_agg()
    del bar["vw"], bar["n"]
    bars = parse_aggregates(polygon_aggs([bar]))
    assert pd.isna(bars.loc[0, "vwap"]) and pd.isna(bars.loc[0, "trade_count"])


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"results": "nope", "ticker": "AAPL"},
        polygon_aggs([polygon_agg(o="ten")]),
        polygon_aggs([{"t": JAN3_MIDNIGHT_ET_MS, "o": 1, "h": 1, "l": 1, "c": 1}]),  # no volume
        polygon_aggs([polygon_agg(t="yesterday")]),
        polygon_aggs([polygon_agg(c=None)]),
        {"status": "ERROR", "error": "Unknown API Key"},
    ],
    ids=["not-an-object", "results-not-list", "text-price", "no-volume", "bad-time", "null-close", "status-error"],
)
def test_malformed_aggregates_raise_a_typed_error(payload):
    with pytest.raises(PermanentSourceError):
        parse_aggregates(payload)


def test_trades_use_the_sip_timestamp_in_nanoseconds():
    payload = {
        "results": [
            {
                "conditions": [12, 37],
                "exchange": 11,
                "id": "52983525034527",
                "participant_timestamp": 1,
                "price": 171.55,
                "sequence_number": 1,
                "sip_timestamp": 1672756200123456789,
                "size": 100,
                "tape": 3,
            },
        ],
        "status": "OK",
    }
    trades = parse_trades(payload, symbol="aapl")
    row = trades.iloc[0]
    assert row["ts"] == pd.Timestamp("2023-01-03T14:30:00.123456789Z")
    assert (row["symbol"], row["price"], row["size"]) == ("AAPL", 171.55, 100)
    assert (row["exchange"], row["trade_id"], row["conditions"], row["tape"]) == ("11", "52983525034527", "12,37", "3")


def test_quotes_parse_both_sides():
    payload = {
        "results": [
            {
                "ask_exchange": 12,
                "ask_price": 10.02,
                "ask_size": 3,
                "bid_exchange": 11,
                "bid_price": 10.0,
                "bid_size": 5,
                "sip_timestamp": 1672756200000000000,
                "sequence_number": 9,
                "tape": 3,
            },
        ]
    }
    quotes = parse_quotes(payload, symbol="AAPL")
    assert list(quotes.columns) == list(model.QUOTES)
    assert (quotes.loc[0, "bid_price"], quotes.loc[0, "ask_size"], quotes.loc[0, "ask_exchange"]) == (10.0, 3, "12")


def test_quotes_without_prices_are_malformed():
    with pytest.raises(PermanentSourceError, match="bid_price"):
        parse_quotes({"results": [{"sip_timestamp": 1, "ask_price": 1.0}]}, symbol="AAPL")


def test_splits_map_from_and_to_onto_old_and_new_rates():
    payload = {
        "results": [{"execution_date": "2020-08-31", "id": "x", "split_from": 1, "split_to": 4, "ticker": "AAPL"}]
    }
    splits = parse_splits(payload)
    assert (splits.loc[0, "action"], splits.loc[0, "old_rate"], splits.loc[0, "new_rate"]) == ("split", 1.0, 4.0)
    assert splits.loc[0, "ex_date"] == pd.Timestamp("2020-08-31T00:00:00Z")


def test_dividends_keep_amount_currency_and_dates():
    payload = {
        "results": [
            {
                "cash_amount": 0.23,
                "currency": "USD",
                "declaration_date": "2023-02-02",
                "dividend_type": "CD",
                "ex_dividend_date": "2023-02-10",
                "frequency": 4,
                "pay_date": "2023-02-16",
                "record_date": "2023-02-13",
                "ticker": "AAPL",
            },
        ]
    }
    row = parse_dividends(payload).iloc[0]
    assert (row["action"], row["amount"], row["currency"]) == ("dividend", 0.23, "USD")
    assert row["pay_date"] == pd.Timestamp("2023-02-16T00:00:00Z")


def test_news_joins_normalized_tickers_and_publisher_name():
    payload = {
        "results": [
            {
                "id": "n1",
                "publisher": {"name": "Benzinga", "homepage_url": "x"},
                "title": "BRK-B beats",
                "author": "A",
                "published_utc": "2023-01-03T15:00:00Z",
                "article_url": "http://x/1",
                "tickers": ["BRK-B", "aapl"],
                "description": "d",
            },
        ]
    }
    row = parse_news(payload).iloc[0]
    assert (row["symbols"], row["publisher"], row["headline"]) == ("BRK.B,AAPL", "Benzinga", "BRK-B beats")
    assert row["ts"] == pd.Timestamp("2023-01-03T15:00:00Z")


def option_contract(**overrides):
    contract = {
        "break_even_price": 155.0,
        "day": {"close": 5.0},
        "details": {
            "contract_type": "call",
            "exercise_style": "american",
            "expiration_date": "2023-01-20",
            "shares_per_contract": 100,
            "strike_price": 150,
            "ticker": "O:AAPL230120C00150000",
        },
        "greeks": {"delta": 0.5, "gamma": 0.01, "theta": -0.1, "vega": 0.2},
        "implied_volatility": 0.3,
        "last_quote": {"ask": 5.1, "bid": 4.9, "last_updated": 1672756200000000000, "midpoint": 5.0},
        "open_interest": 1234,
        "underlying_asset": {"price": 150.5, "ticker": "AAPL"},
    }
    contract.update(overrides)
    return contract


def test_option_chain_flattens_details_greeks_and_quote():
    row = parse_option_chain({"results": [option_contract()], "status": "OK"}).iloc[0]
    assert (row["underlying"], row["contract"], row["contract_type"]) == ("AAPL", "O:AAPL230120C00150000", "call")
    assert (row["strike"], row["delta"], row["implied_volatility"], row["open_interest"]) == (150.0, 0.5, 0.3, 1234)
    assert (row["bid"], row["ask"], row["underlying_price"]) == (4.9, 5.1, 150.5)
    assert row["expiration"] == pd.Timestamp("2023-01-20T00:00:00Z")


def test_option_chain_without_contract_details_is_malformed():
    with pytest.raises(PermanentSourceError, match="details"):
        parse_option_chain({"results": [{"implied_volatility": 0.3}]}, underlying="AAPL")


def test_financials_become_one_row_per_line_item():
    payload = {
        "results": [
            {
                "start_date": "2022-07-01",
                "end_date": "2022-09-30",
                "filing_date": "2022-10-28",
                "fiscal_period": "Q4",
                "fiscal_year": "2022",
                "tickers": ["AAPL"],
                "timeframe": "quarterly",
                "financials": {
                    "income_statement": {
                        "revenues": {"label": "Revenues", "order": 100, "unit": "USD", "value": 9.0e10}
                    },
                    "balance_sheet": {
                        "assets": {"label": "Assets", "order": 100, "unit": "USD", "value": 3.5e11},
                        "equity": {"label": "Equity", "order": 1400, "unit": "USD", "value": 5.0e10},
                    },
                },
            },
        ]
    }
    rows = parse_financials(payload)
    assert len(rows) == 3
    assert set(rows["statement"]) == {"income_statement", "balance_sheet"}
    revenue = rows[rows["item"] == "revenues"].iloc[0]
    assert (revenue["symbol"], revenue["value"], revenue["fiscal_period"]) == ("AAPL", 9.0e10, "Q4")
    assert revenue["filing_date"] == pd.Timestamp("2022-10-28T00:00:00Z")


def test_financials_without_statements_are_malformed():
    with pytest.raises(PermanentSourceError, match="financials"):
        parse_financials({"results": [{"tickers": ["AAPL"]}]})


def _filing(**fields: object) -> dict:
    return {
        "results": [
            {
                "end_date": "2022-09-30",
                "filing_date": "2022-10-28",
                "fiscal_period": "Q4",
                "fiscal_year": "2022",
                "tickers": ["AAPL"],
                "financials": {"income_statement": {"revenues": {"unit": "USD", "value": 9.0e10}}},
                **fields,
            }
        ]
    }


def test_a_filings_acceptance_time_is_read_with_its_zone():
    rows = parse_financials(_filing(acceptance_datetime="2022-10-28T18:01:02-04:00"))
    assert rows["accepted_at"].tolist() == [pd.Timestamp("2022-10-28T22:01:02Z")]
    assert parse_financials(_filing())["accepted_at"].isna().all()


@pytest.mark.parametrize("stamp", ["2022-10-28T18:01:02", "20221028180102", "soon", 1666994462])
def test_an_acceptance_time_without_a_zone_is_stored_as_none_with_a_warning_and_the_page_kept(stamp):
    """Before, one such filing refused the whole page (every filing on it lost until a code
    change). Now that filing is stored without an acceptance time (known from the next session's
    close, the conservative rule), the warning names the value and the filing, and counts them."""
    page = _filing(acceptance_datetime=stamp)
    page["results"].append({**page["results"][0], "fiscal_period": "Q3", "acceptance_datetime": "2022-07-29T20:05:00Z"})
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        rows = parse_financials(page)
    finally:
        logger.remove(sink)
    assert rows["fiscal_period"].tolist() == ["Q4", "Q3"]  # the whole page kept
    assert rows["accepted_at"].isna().tolist() == [True, False]
    assert rows["accepted_at"].iloc[1] == pd.Timestamp("2022-07-29T20:05:00Z")
    (warning,) = warnings
    assert "1 filing(s)" in warning and f"{stamp!r} of the Q4 2022 filing of AAPL dated '2022-10-28'" in warning
