"""Chain features (term structure, 25-delta skew, put/call ratios), the iv-rank and
unusual-options scanners and `marketpipe options chain`, on a chain ingested from the sandbox;
each figure computed again in pandas from the stored quotes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from storage.options import (
    DAILY_FEATURES,
    OPTION_FEATURE_SET,
    SNAPSHOT_TIMEFRAME,
    read_chain_features,
    read_term_structure,
    write_daily_features,
    write_snapshot_features,
)
from storage.scanners import option_iv_rank, run_scan, unusual_options
from tasks.options import tenor_ivs
from tests.support.options import forget_options, ingest_options, stored_quotes

SYMBOL = "OPTQB"


@pytest.fixture(scope="module")
def quotes(stack):
    from db.connect import database_connection

    with database_connection(stack, autocommit=True) as conn:
        forget_options(conn, SYMBOL)
    ingest_options(stack, SYMBOL)
    with database_connection(stack, autocommit=True) as conn:
        stored = stored_quotes(conn, SYMBOL)
    yield stored
    with database_connection(stack, autocommit=True) as conn:
        forget_options(conn, SYMBOL)


def expected_term_structure(quotes: pd.DataFrame) -> pd.DataFrame:
    expiry = (pd.to_datetime(quotes["expiration"]) + pd.Timedelta(hours=16)).dt.tz_localize("America/New_York")
    years = (expiry.dt.tz_convert("UTC") - quotes["ts"]).dt.total_seconds() / (365 * 86400.0)
    forward = quotes["underlying_price"] * np.exp((quotes["rate"] - quotes["dividend_yield"]) * years)
    q = quotes.assign(distance=np.abs(np.log(quotes["strike"] / forward)))
    rows = []
    for expiration, part in q[q["iv"].notna()].groupby("expiration"):
        calls, puts = part[part["contract_type"] == "call"], part[part["contract_type"] == "put"]
        atm = np.mean(
            [
                calls.sort_values(["distance", "strike"])["iv"].iloc[0],
                puts.sort_values(["distance", "strike"])["iv"].iloc[0],
            ]
        )
        put25 = puts.assign(d=(puts["delta"] + 0.25).abs()).sort_values(["d", "strike"])["iv"].iloc[0]
        call25 = calls.assign(d=(calls["delta"] - 0.25).abs()).sort_values(["d", "strike"])["iv"].iloc[0]
        rows.append((expiration, atm, put25 - call25))
    return pd.DataFrame(rows, columns=["expiration", "atm_iv", "skew_25d"])


def test_term_structure_and_skew_follow_the_stored_quotes(quotes, conn):
    ts = quotes["ts"].iloc[0]
    got = read_term_structure(conn, SYMBOL, ts)
    want = expected_term_structure(quotes)
    merged = want.merge(got, on="expiration", suffixes=("", "_sql"))
    assert len(merged) == len(want) == quotes["expiration"].nunique() > 5
    np.testing.assert_allclose(merged["atm_iv_sql"], merged["atm_iv"], rtol=1e-12)
    np.testing.assert_allclose(merged["skew_25d_sql"], merged["skew_25d"], rtol=1e-12)
    assert (merged["skew_25d"] > 0).mean() > 0.8  # the sandbox's equity skew: puts richer than calls


def test_chain_features_ratios_and_30_day_iv(quotes, conn):
    ts = quotes["ts"].iloc[0]
    features = read_chain_features(conn, SYMBOL, ts)
    calls, puts = quotes[quotes["contract_type"] == "call"], quotes[quotes["contract_type"] == "put"]
    assert features["put_call_volume_ratio"] == pytest.approx(puts["volume"].sum() / calls["volume"].sum())
    assert features["put_call_oi_ratio"] == pytest.approx(puts["open_interest"].sum() / calls["open_interest"].sum())
    terms = read_term_structure(conn, SYMBOL, ts).astype({"years": float, "atm_iv": float})
    below = terms[terms["years"] <= 30 / 365].iloc[-1]
    above = terms[terms["years"] > 30 / 365].iloc[0]
    t = 30 / 365
    variance = below.atm_iv**2 * below.years + (above.atm_iv**2 * above.years - below.atm_iv**2 * below.years) * (
        t - below.years
    ) / (above.years - below.years)
    assert features["atm_iv_30d"] == pytest.approx(np.sqrt(variance / t), rel=1e-12)
    assert features["contracts"] == len(quotes) and features["priced"] == quotes["iv"].notna().sum()


def test_unusual_options_are_the_contracts_trading_above_their_open_interest(quotes, conn):
    found = run_scan(conn, unusual_options(2.5, 1, limit=10_000))
    mine = found[found["underlying"] == SYMBOL]
    want = quotes[(quotes["volume"] >= 2.5 * quotes["open_interest"]) & (quotes["volume"] >= 1)]
    assert len(want) > 0 and sorted(mine["contract"]) == sorted(want["contract"])
    ratios = mine["volume_oi_ratio"].to_numpy()
    assert np.all(np.diff(ratios) <= 0) and np.all(ratios >= 2.5)


def test_the_days_features_are_in_the_feature_store(quotes, conn):
    ts = quotes["ts"].iloc[0]
    features = read_chain_features(conn, SYMBOL, ts)
    rows = conn.execute(
        "SELECT ts, name, value FROM features.bar_feature_values WHERE symbol = %s AND feature_set = %s"
        " AND timeframe = '1day'",
        (SYMBOL, OPTION_FEATURE_SET),
    ).fetchall()
    midnight = ts.tz_convert("America/New_York").normalize()
    assert {r[0] for r in rows} == {midnight} and {r[1] for r in rows} == set(DAILY_FEATURES)
    for _, name, value in rows:
        assert value == pytest.approx(features[name], rel=1e-12)


def test_each_snapshots_features_and_term_structure_are_in_the_feature_store(quotes, conn):
    ts = quotes["ts"].iloc[0]
    features = read_chain_features(conn, SYMBOL, ts)
    rows = conn.execute(
        "SELECT ts, name, value, computed_at FROM features.bar_feature_values WHERE symbol = %s"
        " AND feature_set = %s AND timeframe = %s",
        (SYMBOL, OPTION_FEATURE_SET, SNAPSHOT_TIMEFRAME),
    ).fetchall()
    tenors = {"atm_iv_7d": 7, "atm_iv_60d": 60, "atm_iv_90d": 90}
    assert {r[0] for r in rows} == {ts} and sorted(r[1] for r in rows) == sorted([*DAILY_FEATURES, *tenors])
    stored = {name: value for _, name, value, _ in rows}
    for name in DAILY_FEATURES:
        assert stored[name] == pytest.approx(features[name], rel=1e-12)
    # the tenors again in pandas from the view's term structure: linear in sigma^2 T between the
    # expiry at or below the tenor and the first above it, NULL when the chain does not bracket it
    terms = read_term_structure(conn, SYMBOL, ts).astype({"years": float, "atm_iv": float}).dropna(subset=["atm_iv"])
    terms = terms.assign(w=terms["atm_iv"] ** 2 * terms["years"]).sort_values("years")
    bracketed = 0
    for name, days in tenors.items():
        t = days / 365
        at = terms[(terms["years"] - t).abs() < 1e-9]  # an expiry at the tenor (Friday close to Friday: 7 days)
        if len(at):
            assert stored[name] == at["atm_iv"].iloc[0], name
            bracketed += 1
            continue
        below, above = terms[terms["years"] < t], terms[terms["years"] > t]
        if below.empty or above.empty:
            assert stored[name] is None, name
            continue
        lo, hi = below.iloc[-1], above.iloc[0]
        w = lo.w + (hi.w - lo.w) * (t - lo.years) / (hi.years - lo.years)
        assert stored[name] == pytest.approx(np.sqrt(w / t), rel=1e-12), name
        bracketed += 1
    assert bracketed >= 2
    # a rerun of the same snapshot changes nothing
    again = write_snapshot_features(conn, SYMBOL, ts, tenor_ivs(conn, SYMBOL, ts))
    assert (again.inserted, again.updated) == (0, 0) and again.unchanged == len(rows)
    after = conn.execute(
        "SELECT name, value, computed_at FROM features.bar_feature_values WHERE symbol = %s"
        " AND feature_set = %s AND timeframe = %s",
        (SYMBOL, OPTION_FEATURE_SET, SNAPSHOT_TIMEFRAME),
    ).fetchall()
    assert sorted(after, key=lambda r: r[0]) == sorted([(n, v, c) for _, n, v, c in rows], key=lambda r: r[0])


def test_iv_rank_ranks_the_newest_day_within_its_history(quotes, conn):
    # the same chain on the two days before at 0.8x and 1.1x its IVs, stored as ingest stores a
    # snapshot's daily features: the newest day sits inside the range, above one of the three
    newest = quotes["ts"].iloc[0]
    for days, scale in ((1, 0.8), (2, 1.1)):
        conn.execute(
            "INSERT INTO market.option_quotes (contract, ts, underlying, expiration, strike, contract_type, bid, ask,"
            " volume, open_interest, underlying_price, rate, dividend_yield, iv, delta, iv_reason, source)"
            " SELECT contract, ts - make_interval(days => %s), underlying, expiration, strike, contract_type, bid,"
            " ask, volume, open_interest, underlying_price, rate, dividend_yield, iv * %s, delta, iv_reason, source"
            " FROM market.option_quotes WHERE underlying = %s AND ts = %s",
            (days, scale, SYMBOL, newest.to_pydatetime()),
        )
        write_daily_features(conn, SYMBOL, newest - pd.Timedelta(days=days))
    found = run_scan(conn, option_iv_rank(30, limit=10_000))
    row = found[found["underlying"] == SYMBOL].iloc[0]
    history = [read_chain_features(conn, SYMBOL, newest - pd.Timedelta(days=d))["atm_iv_30d"] for d in (0, 1, 2)]
    assert history[2] > history[0] > history[1]  # the scaled snapshots keep their order
    assert row["days"] == 3 and row["day"] == newest.tz_convert("America/New_York").normalize()
    assert row["atm_iv_30d"] == pytest.approx(history[0])
    lo, hi = min(history), max(history)
    assert row["iv_rank"] == pytest.approx(100 * (history[0] - lo) / (hi - lo), rel=1e-9)
    assert row["iv_percentile"] == pytest.approx(100 / 3)
    conn.execute("DELETE FROM market.option_quotes WHERE underlying = %s AND ts < %s", (SYMBOL, newest))
    conn.execute(
        "DELETE FROM features.bar_feature_values WHERE symbol = %s AND ts < %s", (SYMBOL, row["day"].to_pydatetime())
    )


def test_the_cli_prints_one_expiry_of_the_chain(quotes, marketpipe_cli):
    first = min(quotes["expiration"]).isoformat()
    result = marketpipe_cli("options", "chain", SYMBOL, "--expiry", first, "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert {r["expiration"][:10] for r in body["rows"]} == {first}
    assert len(body["rows"]) == (quotes["expiration"] == min(quotes["expiration"])).sum()
    assert body["features"]["contracts"] == len(quotes)
    terms = body["term_structure"]
    assert [t["expiration"][:10] for t in terms] == sorted(d.isoformat() for d in quotes["expiration"].unique())
    assert all(t["atm_iv"] > 0 for t in terms)
    table = marketpipe_cli("options", "chain", SYMBOL, "--expiry", first)
    assert table.returncode == 0 and f"{SYMBOL} options at" in table.stdout and "crossed" in table.stdout


def test_the_cli_refuses_an_expiry_the_chain_lacks_in_one_line(quotes, marketpipe_cli):
    result = marketpipe_cli("options", "chain", SYMBOL, "--expiry", "2001-01-19")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no expiration 2001-01-19" in result.stderr and "use one of" in result.stderr
    unknown = marketpipe_cli("options", "chain", "NOCHAIN")
    assert unknown.returncode != 0 and "marketpipe options ingest --symbols NOCHAIN" in unknown.stderr
