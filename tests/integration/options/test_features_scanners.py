"""Chain features (term structure, 25-delta skew, put/call ratios), the iv-rank and
unusual-options scanners and `marketpipe options chain`, on a chain ingested from the sandbox;
each figure computed again in pandas from the stored quotes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.calendar import nyse_sessions
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
COPY = "OPTQK"  # copies of its chain at chosen instants


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
    session = nyse_sessions(midnight.date(), midnight.date())
    if not len(session) or ts.value > session.close_ns[0]:  # taken after the close or on a holiday
        assert rows == []
        return
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


def copy_chain(conn, snapshot: pd.Timestamp, underlying: str, at: pd.Timestamp, iv_scale=1.0, put_volume_scale=1):
    """The stored chain of ``snapshot`` again as ``underlying``'s snapshot at ``at``, its IVs and
    its puts' volumes scaled (so the copies' features tell them apart)."""
    conn.execute(
        "INSERT INTO market.option_quotes (contract, ts, underlying, expiration, strike, contract_type, bid, ask,"
        " volume, open_interest, underlying_price, rate, dividend_yield, iv, delta, iv_reason, source)"
        " SELECT contract, %s, %s, expiration, strike, contract_type, bid, ask,"
        " CASE WHEN contract_type = 'put' THEN volume * %s ELSE volume END, open_interest, underlying_price, rate,"
        " dividend_yield, iv * %s, delta, iv_reason, source"
        " FROM market.option_quotes WHERE underlying = %s AND ts = %s",
        (at.to_pydatetime(), underlying, put_volume_scale, iv_scale, SYMBOL, snapshot.to_pydatetime()),
    )


def session_closes(before: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The closes of the last full session and the last half day before ``before``'s date."""
    sessions = nyse_sessions(before - pd.Timedelta(days=400), before.tz_convert("America/New_York").date())
    past = sessions.midnight_ns < before.tz_convert("America/New_York").normalize().value
    full = np.flatnonzero(past & ~sessions.half_days)[-1]
    half = np.flatnonzero(past & sessions.half_days)[-1]
    return pd.Timestamp(int(sessions.close_ns[full]), tz="UTC"), pd.Timestamp(int(sessions.close_ns[half]), tz="UTC")


@pytest.fixture
def copies(conn):
    forget_options(conn, COPY)
    yield COPY
    forget_options(conn, COPY)


def test_iv_rank_ranks_the_newest_day_within_its_history(quotes, conn, copies):
    # the chain at the close of three sessions at 1.0x, 0.8x and 1.1x its IVs (newest first), stored
    # as ingest stores a snapshot's daily features: the newest day sits inside the range
    newest = quotes["ts"].iloc[0]
    sessions = nyse_sessions(newest - pd.Timedelta(days=10), newest - pd.Timedelta(days=1))
    closes = [pd.Timestamp(int(ns), tz="UTC") for ns in sessions.close_ns[::-1][:3]]
    for close, scale in zip(closes, (1.0, 0.8, 1.1), strict=True):
        copy_chain(conn, newest, copies, close, iv_scale=scale)
        write_daily_features(conn, copies, close)
    found = run_scan(conn, option_iv_rank(30, limit=10_000))
    row = found[found["underlying"] == copies].iloc[0]
    history = [read_chain_features(conn, copies, close)["atm_iv_30d"] for close in closes]
    assert history[2] > history[0] > history[1]  # the scaled snapshots keep their order
    assert row["days"] == 3 and row["day"] == closes[0].tz_convert("America/New_York").normalize()
    assert row["atm_iv_30d"] == pytest.approx(history[0])
    lo, hi = min(history), max(history)
    assert row["iv_rank"] == pytest.approx(100 * (history[0] - lo) / (hi - lo), rel=1e-9)
    assert row["iv_percentile"] == pytest.approx(100 / 3)


def daily_put_call_volume_ratio(conn, underlying: str, close: pd.Timestamp) -> float:
    midnight = close.tz_convert("America/New_York").normalize()
    return conn.execute(
        "SELECT value FROM features.bar_feature_values WHERE symbol = %s AND feature_set = %s AND timeframe = '1day'"
        " AND ts = %s AND name = 'put_call_volume_ratio'",
        (underlying, OPTION_FEATURE_SET, midnight.to_pydatetime()),
    ).fetchone()[0]


@pytest.mark.parametrize("day", ["full", "half"])
def test_the_daily_value_is_the_last_snapshot_by_the_close(quotes, conn, copies, day):
    # a snapshot at the close (16:00, 13:00 on a half day) with twice the put volume, then one at
    # 18:00 with three times: the evening one (after an after-the-close report) is not the day's
    newest = quotes["ts"].iloc[0]
    close = dict(zip(("full", "half"), session_closes(newest), strict=True))[day]
    evening = close.tz_convert("America/New_York").normalize() + pd.Timedelta(hours=18)
    ratio = read_chain_features(conn, SYMBOL, newest)["put_call_volume_ratio"]
    for at, scale in ((close, 2), (evening, 3)):
        copy_chain(conn, newest, copies, at, put_volume_scale=scale)
        write_daily_features(conn, copies, at)

    assert daily_put_call_volume_ratio(conn, copies, close) == pytest.approx(2 * ratio, rel=1e-12)
    # written in the other order, the evening snapshot does not displace it either
    write_daily_features(conn, copies, evening)
    write_daily_features(conn, copies, close)
    assert daily_put_call_volume_ratio(conn, copies, close) == pytest.approx(2 * ratio, rel=1e-12)


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
