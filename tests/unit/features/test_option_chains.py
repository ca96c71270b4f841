"""features.option_chains: our IV and greeks over a chain snapshot, the rate curve, the dividend
yield and the quote flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.option_chains import QuoteFlag, price_chain, rate_at, trailing_dividend_yield, years_to_expiry
from features.options import IV_BELOW_INTRINSIC, IV_CROSSED, IV_OK, bsm_price
from tests.support.option_snapshots import SNAPSHOT, snapshot_frame, snapshot_row

FLAT = pd.DataFrame({"tenor_days": [0], "rate": [0.04]})
STALE = pd.Timedelta(minutes=30)


def chain_at(sigma: float, q: float, rate: float = 0.04) -> pd.DataFrame:
    """Calls and puts at five strikes and two expiries, bid = ask = the BSM price at ``sigma``."""
    rows = []
    for expiry in ("2024-07-19", "2024-09-20"):
        for strike in (80.0, 90.0, 100.0, 110.0, 120.0):
            for right in ("call", "put"):
                exp = pd.Timestamp(expiry, tz="UTC")
                years = years_to_expiry(pd.Series([exp]), pd.Series([SNAPSHOT]))[0]
                price = bsm_price(101.0, np.array([strike]), years, rate, q, sigma, right == "call")[0]
                code = f"O:AAPL{exp:%y%m%d}{right[0].upper()}{round(strike * 1000):08d}"
                rows.append(
                    snapshot_row(
                        contract=code, contract_type=right, expiration=exp, strike=strike, bid=price, ask=price
                    )
                )
    return snapshot_frame(*rows)


def test_clean_quotes_give_back_the_vol_they_were_priced_with():
    priced = price_chain(chain_at(0.27, 0.015), curve=FLAT, dividend_yields={"AAPL": 0.015}, stale_after=STALE)
    assert (priced["iv_reason"] == IV_OK).all() and (priced["quote_flags"] == 0).all()
    np.testing.assert_allclose(priced["our_iv"], 0.27, rtol=1e-9)
    calls = priced[priced["contract_type"] == "call"]
    assert ((calls["our_delta"] > 0) & (calls["our_delta"] < 1)).all() and (priced["our_vega"] > 0).all()
    assert (priced["rate"] == 0.04).all() and (priced["dividend_yield"] == 0.015).all()


def test_the_dividend_yield_and_the_rate_matter():
    chain = chain_at(0.27, 0.03)
    wrong = price_chain(chain, curve=FLAT, dividend_yields={}, stale_after=STALE)
    assert np.abs(wrong["our_iv"] - 0.27).max() > 1e-3  # priced with a yield, read without


def test_bad_quotes_get_a_reason_and_no_number():
    rows = [
        snapshot_row(bid=4.5, ask=4.0),  # crossed
        snapshot_row(contract="O:AAPL240719C00080000", strike=80.0, bid=15.0, ask=15.2),  # below S - K e^-rT
        snapshot_row(contract="O:AAPL240719C00120000", strike=120.0, bid=0.0, ask=0.05),  # zero bid
        snapshot_row(contract="O:AAPL240719C00110000", strike=110.0, bid=np.nan, ask=np.nan, last_price=0.5),
        snapshot_row(contract="O:AAPL240719C00105000", strike=105.0, quote_ts=SNAPSHOT - pd.Timedelta(days=1)),
    ]
    priced = price_chain(snapshot_frame(*rows), curve=FLAT, dividend_yields={}, stale_after=STALE)
    assert list(priced["iv_reason"]) == [IV_CROSSED, IV_BELOW_INTRINSIC, IV_OK, IV_OK, IV_OK]
    assert list(priced["quote_flags"]) == [
        QuoteFlag.CROSSED,
        QuoteFlag.BELOW_INTRINSIC,
        QuoteFlag.ZERO_BID,
        QuoteFlag.NO_QUOTE,
        QuoteFlag.STALE,
    ]
    assert priced["our_iv"].isna().tolist() == [True, True, False, False, False]
    assert priced[["our_delta", "our_gamma", "our_vega", "our_theta"]].iloc[:2].isna().all().all()


def test_the_rate_curve_is_linear_between_points_and_flat_beyond():
    curve = pd.DataFrame({"tenor_days": [30, 365], "rate": [0.05, 0.04]})
    got = rate_at(np.array([0.0, 30.0, 197.5, 365.0, 900.0]), curve)
    np.testing.assert_allclose(got, [0.05, 0.05, 0.045, 0.04, 0.04])
    assert np.isnan(rate_at(np.array([10.0]), curve.iloc[:0])).all()


def test_the_dividend_yield_is_the_trailing_year_of_cash_over_the_spot():
    actions = pd.DataFrame(
        {
            "symbol": ["AAPL"] * 4 + ["MSFT"],
            "action": ["dividend", "dividend", "dividend", "split", "dividend"],
            "ex_date": pd.to_datetime(["2023-06-01", "2023-12-01", "2024-06-01", "2024-03-01", "2024-05-01"], utc=True),
            "new_rate": [np.nan, np.nan, np.nan, 1.0, np.nan],
            "old_rate": [np.nan, np.nan, np.nan, 1.0, np.nan],
            "amount": [9.0, 0.5, 0.5, np.nan, 3.0],
        }
    )
    assert trailing_dividend_yield(actions, "AAPL", SNAPSHOT, 50.0) == pytest.approx(1.0 / 50.0)
    assert trailing_dividend_yield(actions, "IBM", SNAPSHOT, 50.0) == 0.0


def test_dividends_before_a_split_in_the_year_count_in_the_snapshots_shares():
    # the review's: $0.80 twice before a 4-for-1 split, $0.20 twice after; 0.8 %, not 2.0 %, at 100
    actions = pd.DataFrame(
        {
            "symbol": "ACME",
            "action": ["dividend", "dividend", "split", "dividend", "dividend"],
            "ex_date": pd.to_datetime(["2023-08-10", "2023-11-09", "2024-01-02", "2024-02-08", "2024-05-09"], utc=True),
            "new_rate": [np.nan, np.nan, 4.0, np.nan, np.nan],
            "old_rate": [np.nan, np.nan, 1.0, np.nan, np.nan],
            "amount": [0.80, 0.80, np.nan, 0.20, 0.20],
        }
    )
    snapshot = pd.Timestamp("2024-06-03 15:00", tz="America/New_York").tz_convert("UTC")
    assert trailing_dividend_yield(actions, "ACME", snapshot, 100.0) == pytest.approx(0.008)
