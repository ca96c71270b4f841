"""quality.options: which option contracts may not be stored, and the reason each gets."""

from __future__ import annotations

import pandas as pd
import pytest

from core.options import expiry_instants, parse_occ
from quality.options import check_option_snapshots
from tests.support.option_snapshots import snapshot_frame, snapshot_row


def test_a_good_contract_is_accepted():
    accepted, rejected = check_option_snapshots(snapshot_frame(snapshot_row()), "AAPL")
    assert len(accepted) == 1 and rejected.empty


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"contract": "AAPL240719C00100000"}, "does not parse"),
        ({"contract": "O:AAPL2407C100"}, "does not parse"),
        ({"contract": "O:AAPL240719P00100000"}, "disagrees with the contract's terms"),
        ({"strike": 105.0}, "disagrees with the contract's terms"),
        ({"underlying": "MSFT", "contract": "O:MSFT240719C00100000"}, "is of underlying MSFT"),
        ({"contract": "O:MSFT240719C00100000"}, "root 'AAPL' expected"),
        (
            {"expiration": pd.Timestamp("2024-06-28T00:00:00Z"), "contract": "O:AAPL240628C00100000"},
            "expired on 2024-06-28",
        ),
        ({"bid": -0.1}, "bid -0.1 is not a price: it must be 0 or more"),
        ({"ask": 0.0}, "ask 0.0 is not a price: it must be more than 0"),
        ({"last_price": -1.0}, "last_price -1.0 is not a price"),
        ({"underlying_price": 0.0}, "underlying_price 0.0 is not a price"),
        ({"ts": pd.NaT, "quote_ts": pd.NaT}, "no snapshot time"),
    ],
)
def test_each_bad_record_is_refused_with_its_reason(overrides, reason):
    frame = snapshot_frame(snapshot_row(), snapshot_row(contract="O:AAPL240719P00100000", contract_type="put"))
    bad = snapshot_frame(snapshot_row(**overrides))
    accepted, rejected = check_option_snapshots(pd.concat([frame, bad], ignore_index=True), "AAPL")
    assert len(accepted) == 2 and len(rejected) == 1
    assert reason in rejected["reason"].iloc[0]


def test_zero_bids_crossed_and_adjusted_contracts_are_not_refused():
    rows = [
        snapshot_row(bid=0.0),
        snapshot_row(contract="O:AAPL240719P00100000", contract_type="put", bid=5.0, ask=4.0),
        snapshot_row(contract="O:AAPL1240719C00100000"),  # an adjusted contract after a corporate action
    ]
    accepted, rejected = check_option_snapshots(snapshot_frame(*rows), "AAPL")
    assert len(accepted) == 3 and rejected.empty


def test_share_classes_lose_their_dot_in_the_occ_root():
    row = snapshot_row(underlying="BRK.B", contract="O:BRKB240719C00100000")
    accepted, _ = check_option_snapshots(snapshot_frame(row), "BRK.B")
    assert len(accepted) == 1


def test_occ_symbols_parse_into_their_terms():
    terms = parse_occ(pd.Series(["O:SPY260116P00450500", "junk"]))
    assert terms.loc[0, "root"] == "SPY" and terms.loc[0, "right"] == "put" and terms.loc[0, "strike"] == 450.5
    assert terms.loc[0, "expiration"] == pd.Timestamp("2026-01-16T00:00:00Z")
    assert terms.loc[1].isna().all()


def test_a_contract_expires_at_four_in_new_york_summer_and_winter():
    got = expiry_instants(pd.Series(pd.to_datetime(["2024-07-19", "2024-12-20"], utc=True)))
    assert list(got) == [pd.Timestamp("2024-07-19T20:00:00Z"), pd.Timestamp("2024-12-20T21:00:00Z")]
