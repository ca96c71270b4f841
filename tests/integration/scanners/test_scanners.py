"""Each scanner against a pandas computation of the same definition, on this module's symbols."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from storage import scanners
from storage.scanners import ScanArgumentError, run_scan
from tests.support.scanners import Market

ALL = 100_000  # a limit no shared database reaches: other tests' symbols cannot crowd ours out


def ours(result: pd.DataFrame, market: Market) -> pd.DataFrame:
    return result[result["symbol"].isin(market.symbols)].reset_index(drop=True)


def rank(change: pd.Series, direction: str) -> pd.Series:
    """The SQL rank key: smaller first; NaN = filtered out."""
    if direction == "up":
        return (-change).where(change > 0)
    if direction == "down":
        return change.where(change < 0)
    return -change.abs()


def ranked(frame: pd.DataFrame, column: str, direction: str) -> pd.DataFrame:
    keyed = frame.assign(_key=rank(frame[column], direction)).dropna(subset=["_key"])
    return keyed.sort_values(["_key", "symbol"]).drop(columns="_key").reset_index(drop=True)


def by_symbol(bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {s: g.sort_values("ts").reset_index(drop=True) for s, g in bars.groupby("symbol", sort=True)}


# ---------------------------------------------------------------------------------------------
# references


def expected_latest(bars: pd.DataFrame) -> pd.DataFrame:
    last = bars.sort_values(["symbol", "ts"]).groupby("symbol").tail(1)
    return last[["symbol", "ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)


def expected_movers_minutes(bars: pd.DataFrame, minutes: int, direction: str) -> pd.DataFrame:
    rows = []
    for symbol, g in by_symbol(bars).items():
        last = g.iloc[-1]
        before = g[g["ts"] <= last["ts"] - pd.Timedelta(minutes=minutes)]
        if before.empty:
            continue
        ref = before.iloc[-1]
        change = 100 * (last["close"] / ref["close"] - 1)
        rows.append((symbol, ref["ts"], last["ts"], ref["close"], last["close"], change))
    frame = pd.DataFrame(rows, columns=["symbol", "ts_from", "ts_to", "close_from", "close_to", "change_pct"])
    return ranked(frame, "change_pct", direction)


def expected_movers_sessions(daily: pd.DataFrame, sessions: int, direction: str) -> pd.DataFrame:
    rows = []
    for symbol, g in by_symbol(daily).items():
        if len(g) <= sessions:
            continue
        last, ref = g.iloc[-1], g.iloc[-1 - sessions]
        change = 100 * (last["close"] / ref["close"] - 1)
        rows.append((symbol, ref["ts"], last["ts"], ref["close"], last["close"], change))
    frame = pd.DataFrame(rows, columns=["symbol", "ts_from", "ts_to", "close_from", "close_to", "change_pct"])
    return ranked(frame, "change_pct", direction)


def expected_volume_spikes(bars: pd.DataFrame, lookback: int, min_z: float) -> pd.DataFrame:
    rows = []
    for symbol, g in by_symbol(bars).items():
        history = g["volume"].iloc[-1 - lookback : -1].astype(float)
        if len(history) < lookback or history.std(ddof=1) == 0:
            continue
        last = g.iloc[-1]
        z = (last["volume"] - history.mean()) / history.std(ddof=1)
        if z >= min_z:
            rows.append((symbol, last["ts"], last["volume"], history.mean(), history.std(ddof=1), z))
    frame = pd.DataFrame(rows, columns=["symbol", "ts", "volume", "mean_volume", "std_volume", "z"])
    return frame.sort_values(["z", "symbol"], ascending=[False, True]).reset_index(drop=True)


def expected_gaps(bars: pd.DataFrame, min_pct: float, direction: str) -> pd.DataFrame:
    rows = []
    for symbol, g in by_symbol(bars).items():
        local = g["ts"].dt.tz_convert("America/New_York")
        day = local.iloc[-1].normalize()
        today, before = g[local >= day], g[local < day]
        if before.empty:
            continue
        first, prev = today.iloc[0], before.iloc[-1]
        gap = 100 * (first["open"] / prev["close"] - 1)
        if abs(gap) >= min_pct:
            rows.append((symbol, day.date(), first["open"], prev["ts"], prev["close"], gap))
    frame = pd.DataFrame(rows, columns=["symbol", "session_date", "open", "prev_ts", "prev_close", "gap_pct"])
    return ranked(frame, "gap_pct", direction)


def expected_highs_lows(daily: pd.DataFrame, days: int) -> pd.DataFrame:
    rows = []
    for symbol, g in by_symbol(daily).items():
        prior = g.iloc[-1 - days : -1]
        if len(prior) < days:
            continue
        last = g.iloc[-1]
        if last["high"] > prior["high"].max():
            rows.append((symbol, last["ts"], "high", last["high"], prior["high"].max()))
        if last["low"] < prior["low"].min():
            rows.append((symbol, last["ts"], "low", last["low"], prior["low"].min()))
    frame = pd.DataFrame(rows, columns=["symbol", "ts", "kind", "price", "prior_extreme"])
    return frame.sort_values(["kind", "symbol"]).reset_index(drop=True)


def expected_rsi(features: pd.DataFrame, above: float, below: float, feature_set: str | None) -> pd.DataFrame:
    rows = features if feature_set is None else features[features["feature_set"] == feature_set]
    latest = rows.sort_values(["symbol", "ts", "computed_at"]).groupby("symbol").tail(1)
    hit = latest[(latest["rsi"] >= above) | (latest["rsi"] <= below)].copy()
    hit["kind"] = np.where(hit["rsi"] >= above, "overbought", "oversold")
    hit = hit[["symbol", "ts", "feature_set", "rsi", "kind"]]
    return hit.sort_values(["rsi", "symbol"], ascending=[False, True]).reset_index(drop=True)


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(expected) > 0, "the reference is empty: the test data no longer exercises this scanner"
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False, rtol=1e-9
    )


# ---------------------------------------------------------------------------------------------
# tests


def test_latest_bar_per_symbol(conn, market: Market) -> None:
    for timeframe, bars in (("1min", market.intraday), ("1day", market.daily)):
        result = ours(run_scan(conn, scanners.latest_bars(timeframe)), market)

        assert_same(result[["symbol", "ts", "open", "high", "low", "close", "volume"]], expected_latest(bars))
        assert set(result["timeframe"]) == {timeframe}


@pytest.mark.parametrize(("minutes", "direction"), [(15, "both"), (1, "up"), (61, "down"), (90, "both")])
def test_top_movers_over_minutes(conn, market: Market, minutes: int, direction: str) -> None:
    result = ours(run_scan(conn, scanners.top_movers(minutes=minutes, limit=ALL, direction=direction)), market)

    assert_same(result, expected_movers_minutes(market.intraday, minutes, direction))


@pytest.mark.parametrize(("sessions", "direction"), [(1, "both"), (5, "up"), (20, "down")])
def test_top_movers_over_sessions(conn, market: Market, sessions: int, direction: str) -> None:
    result = ours(run_scan(conn, scanners.top_movers(sessions=sessions, limit=ALL, direction=direction)), market)

    assert_same(result, expected_movers_sessions(market.daily, sessions, direction))


def test_top_movers_limit_keeps_the_largest(conn, market: Market) -> None:
    everything = run_scan(conn, scanners.top_movers(minutes=15, limit=ALL))
    top = run_scan(conn, scanners.top_movers(minutes=15, limit=3))

    pd.testing.assert_frame_equal(top, everything.head(3))


@pytest.mark.parametrize(("lookback", "min_z"), [(20, 3.0), (5, 1.0), (119, -100.0)])
def test_volume_spikes(conn, market: Market, lookback: int, min_z: float) -> None:
    result = ours(run_scan(conn, scanners.volume_spikes(lookback, min_z, limit=ALL)), market)

    assert_same(result, expected_volume_spikes(market.intraday, lookback, min_z))


def test_volume_spikes_need_the_whole_lookback(conn, market: Market) -> None:
    result = ours(run_scan(conn, scanners.volume_spikes(2 * 60, -100.0, limit=ALL)), market)

    assert result.empty  # 119 bars of history, 120 asked


GAP_CASES = [(2.0, "both", "1min"), (0.0, "up", "1min"), (2.5, "down", "1min"), (0.0, "both", "1day")]


@pytest.mark.parametrize(("min_pct", "direction", "timeframe"), GAP_CASES)
def test_opening_gaps(conn, market: Market, min_pct: float, direction: str, timeframe: str) -> None:
    bars = market.intraday if timeframe == "1min" else market.daily
    result = ours(run_scan(conn, scanners.opening_gaps(min_pct, direction, timeframe=timeframe, limit=ALL)), market)

    expected = expected_gaps(bars, min_pct, direction)
    assert_same(result, expected)


@pytest.mark.parametrize("days", [10, 52, 59])
def test_new_highs_and_lows(conn, market: Market, days: int) -> None:
    result = ours(run_scan(conn, scanners.new_highs_lows(days)), market)

    expected = expected_highs_lows(market.daily, days)
    assert_same(result, expected)
    assert set(expected["kind"]) == {"high", "low"}


def test_new_highs_and_lows_need_the_whole_window(conn, market: Market) -> None:
    assert ours(run_scan(conn, scanners.new_highs_lows(60)), market).empty  # 59 earlier bars, 60 asked


@pytest.mark.parametrize(("above", "below", "feature_set"), [(70, 30, None), (90, 10, None), (60, 40, "std1-old")])
def test_rsi_extremes(conn, market: Market, above: float, below: float, feature_set: str | None) -> None:
    result = ours(run_scan(conn, scanners.rsi_extremes(above, below, feature_set=feature_set)), market)

    assert_same(result, expected_rsi(market.features, above, below, feature_set))


def test_argument_errors_raised_in_sql_are_scan_argument_errors(conn) -> None:
    bad = scanners.ScanQuery("movers", "top_movers_minutes", (15, 20, "sideways", "1min"))

    with pytest.raises(ScanArgumentError, match="unknown direction 'sideways'; use up, down or both"):
        run_scan(conn, bad)
