"""Option chains through the real stack: the sandbox's Polygon snapshot over HTTP, the raw zone,
our IV kernel, market.option_quotes; bad quotes stored with reasons, reruns idempotent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.options import IV_BELOW_INTRINSIC, IV_CROSSED
from tests.support.options import forget_options, ingest_options, stored_quotes

SYMBOL = "OPTQA"


@pytest.fixture(scope="module")
def chain(stack):
    from db.connect import database_connection

    with database_connection(stack, autocommit=True) as conn:
        forget_options(conn, SYMBOL)
    first = ingest_options(stack, SYMBOL)
    with database_connection(stack, autocommit=True) as conn:
        stored = stored_quotes(conn, SYMBOL)
    yield first, stored
    with database_connection(stack, autocommit=True) as conn:
        forget_options(conn, SYMBOL)


def test_the_whole_chain_is_stored_as_one_snapshot(chain, conn):
    summary, quotes = chain
    collected = summary["collected"][0]["records"]
    assert collected > 250 and len(quotes) == collected  # more than one page, every contract
    assert quotes["ts"].nunique() == 1 and quotes["contract"].is_unique
    contracts = conn.execute("SELECT count(*) FROM market.option_contracts WHERE underlying = %s", (SYMBOL,)).fetchone()
    assert contracts == (collected,)
    mark = conn.execute(
        "SELECT high_water_ts FROM ops.watermarks WHERE symbol = %s AND dataset = 'option_snapshots'", (SYMBOL,)
    ).fetchone()
    assert mark is not None and pd.Timestamp(mark[0]) == quotes["ts"].iloc[0]


def test_our_iv_recovers_the_sandbox_models_vol_within_the_quotes_rounding(chain):
    _, quotes = chain
    clean = quotes[(quotes["quote_flags"] == 0) & (quotes["vega"] >= 0.5)]
    assert len(clean) > 50
    error = (clean["iv"] - clean["vendor_iv"]).abs()
    # bid and ask are rounded to cents: the mid is within 0.005 of the model price, so the IV is
    # within 0.005/vega of the model's vol (vega per 1.00 of vol), plus the vendor's 6 decimals
    assert (error <= 0.006 / clean["vega"] + 1e-6).all(), clean.assign(error=error).nlargest(3, "error")
    assert (clean["rate"] == 0.04).all()


def test_bad_quotes_are_stored_with_a_reason_and_no_number(chain):
    _, quotes = chain
    crossed = quotes[quotes["bid"] > quotes["ask"]]
    assert len(crossed) > 0
    assert (crossed["iv_reason"] == IV_CROSSED).all() and crossed["iv"].isna().all()
    assert ((crossed["quote_flags"] & 1) == 1).all()
    below = quotes[quotes["iv_reason"] == IV_BELOW_INTRINSIC]
    assert len(below) > 0 and below["iv"].isna().all() and ((below["quote_flags"] & 8) == 8).all()
    zero_bid = quotes[quotes["bid"] == 0]
    assert len(zero_bid) > 0 and ((zero_bid["quote_flags"] & 4) == 4).all()
    stale = quotes[(quotes["ts"] - quotes["quote_ts"]) > pd.Timedelta(minutes=30)]
    assert len(stale) > 0 and ((stale["quote_flags"] & 2) == 2).all()
    assert ((quotes["iv_reason"] == 0) == quotes["iv"].notna()).all()
    assert np.isfinite(quotes.loc[quotes["iv_reason"] == 0, ["delta", "gamma", "vega", "theta"]].to_numpy()).all()


def test_a_rerun_stores_nothing_new(chain, stack, conn):
    _, before = chain
    again = ingest_options(stack, SYMBOL, with_dividends=False)
    after = stored_quotes(conn, SYMBOL)
    processed = again.get("processed", again)
    assert len(after) == len(before)
    pd.testing.assert_frame_equal(
        after.drop(columns=["ingested_at"]), before.drop(columns=["ingested_at"]), check_exact=True
    )
    assert (after["ingested_at"] == before["ingested_at"]).all(), processed
