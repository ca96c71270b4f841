"""The feature store on the real stack: the flow, idempotent reruns, corrections, plugins, export."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import psycopg
import pytest

from core.model import BARS, CORPORATE_ACTIONS, frame, session_date
from features import FeatureBuilder, FeatureParams, FeatureSet
from features.refresh import refresh_features
from flows.features_flow import features_flow
from storage.corporate_actions import upsert_corporate_actions
from storage.feature_tables import export_features, read_features
from storage.hot import upsert_bars
from storage.lake import Lake

N_BARS = 60
START, END = "2023-01-02", "2023-03-03"  # the 60 daily bars below, end exclusive


class CloseMA5(FeatureBuilder):
    """A plugin as the seed writes one: a 5-bar moving average of the close."""

    lookback_bars = 4

    def calculate_features(self, data: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"close_ma5": data.groupby("symbol").close.transform(lambda s: s.rolling(5).mean())})


def daily_bars(symbol: str, n: int = N_BARS, seed: int = 7) -> pd.DataFrame:
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.02, n)))
    columns = {
        "symbol": symbol,
        "ts": pd.date_range(START, periods=n, freq="1D", tz="UTC"),
        "timeframe": "1day",
        "open": closes * 0.995,
        "high": closes * 1.02,
        "low": closes * 0.98,
        "close": closes,
        "volume": np.arange(1, n + 1) * 1000,
        "vwap": closes,
        "trade_count": np.full(n, 10),
        "source": "test",
    }
    return frame(BARS, columns, what="test bars")


def feature_rows(conn: psycopg.Connection, symbol: str, table: str = "features.bar_features") -> int:
    return conn.execute(f"SELECT count(*) FROM {table} WHERE symbol = %s", (symbol,)).fetchone()[0]


def computed_at(conn: psycopg.Connection, symbol: str) -> pd.Series:
    rows = conn.execute(
        "SELECT ts, computed_at FROM features.bar_features WHERE symbol = %s ORDER BY ts", (symbol,)
    ).fetchall()
    return pd.Series([r[1] for r in rows], index=[r[0] for r in rows])


def run_flow(symbols: list[str]) -> dict:
    return asyncio.run(features_flow(symbols=symbols, timeframe="1day", start_date=START, end_date="2023-03-02"))


def test_the_flow_writes_a_row_per_bar_and_a_rerun_changes_nothing(conn, symbols):
    a, b = symbols(), symbols()
    upsert_bars(conn, pd.concat([daily_bars(a), daily_bars(b, seed=8)], ignore_index=True))

    first = run_flow([a, b])
    again = run_flow([a, b])

    assert (feature_rows(conn, a), feature_rows(conn, b)) == (N_BARS, N_BARS)
    assert first["bars"] == 2 * N_BARS and first["inserted"] == 2 * N_BARS
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2 * N_BARS)


def test_a_corrected_close_rewrites_that_bar_and_the_later_rows_only(conn, symbols):
    symbol, k = symbols(), 40
    bars = daily_bars(symbol)
    upsert_bars(conn, bars)
    feature_set = FeatureSet(FeatureParams(), {"ma5": CloseMA5()})
    refresh_features(conn, feature_set, [symbol], "1day", START, END)
    before = computed_at(conn, symbol)

    corrected = bars.iloc[[k]].assign(close=bars["close"].iloc[k] * 1.01)
    upsert_bars(conn, corrected)
    redo = refresh_features(conn, feature_set, [symbol], "1day", START, END)
    after = computed_at(conn, symbol)

    # EMA, MACD, RSI and OBV carry every earlier bar: each row from k on changes; the plugin's
    # 5-bar window changes its rows k..k+4.
    assert redo.updated == (N_BARS - k) + (CloseMA5.lookback_bars + 1)
    assert redo.inserted == 0
    assert (after.iloc[:k] == before.iloc[:k]).all()
    assert (after.iloc[k:] > before.iloc[k:]).all()


def test_plugin_outputs_land_in_bar_feature_values_and_read_back_wide(conn, symbols):
    symbol = symbols()
    bars = daily_bars(symbol)
    upsert_bars(conn, bars)
    feature_set = FeatureSet(FeatureParams(), {"ma5": CloseMA5()})

    refresh_features(conn, feature_set, [symbol], "1day", START, END)
    read = read_features(conn, [symbol], START, END, "1day", feature_set.version)

    assert feature_rows(conn, symbol, "features.bar_feature_values") == N_BARS
    assert read["close_ma5"].to_numpy() == pytest.approx(bars["close"].rolling(5).mean().to_numpy(), nan_ok=True)
    assert list(read["ts"]) == list(bars["ts"])
    assert (read["feature_set"] == feature_set.version).all()


def test_export_writes_parquet_equal_to_read_features(stack, conn, symbols):
    a, b = symbols(), symbols()
    upsert_bars(conn, pd.concat([daily_bars(a), daily_bars(b, seed=9)], ignore_index=True))
    feature_set = FeatureSet(FeatureParams(), {"ma5": CloseMA5()})
    refresh_features(conn, feature_set, [a, b], "1day", START, END)
    lake = Lake.from_settings(stack.lake)
    lake.ensure_bucket()
    names = ["rsi", "ema", "close_ma5"]

    keys = export_features(conn, lake, [b, a], START, END, "1day", names, key_prefix=f"test-features/{a}")

    # one object per symbol, in symbol order (the symbols are random: sort them like the export does)
    assert [key.split("/")[-2] for key in keys] == sorted([a, b])
    for symbol, key in zip(sorted([a, b]), keys, strict=True):
        exported = lake.read_parquet(key).to_pandas()
        expected = read_features(conn, [symbol], START, END, "1day", names=names)
        assert list(exported.columns) == ["symbol", "timeframe", "ts", "feature_set", *names]
        pd.testing.assert_frame_equal(exported, expected)
        assert exported["ts"].is_monotonic_increasing and len(exported) == N_BARS


def test_a_split_stored_later_leaves_the_features_of_earlier_bars(conn, symbols):
    # 40 bars stored and their features computed; then a 4-for-1 split, ex on the 41st bar's session,
    # arrives with the 20 bars after it (as traded: prices / 4, volumes x 4)
    symbol, k = symbols(), 40
    bars = daily_bars(symbol)
    post = bars.index >= k
    for column in ("open", "high", "low", "close", "vwap"):
        bars.loc[post, column] = bars.loc[post, column] / 4
    bars.loc[post, "volume"] = bars.loc[post, "volume"] * 4
    upsert_bars(conn, bars.iloc[:k])
    refresh_features(conn, FeatureSet(), [symbol], "1day", START, END)
    before = read_features(conn, [symbol], START, END, "1day")

    split = {"symbol": [symbol], "action": "split", "ex_date": [session_date(bars["ts"]).iloc[k]], "new_rate": 4.0}
    upsert_corporate_actions(
        conn, frame(CORPORATE_ACTIONS, {**split, "old_rate": 1.0, "source": "test"}, what="test split")
    )
    upsert_bars(conn, bars.iloc[k:])
    redo = refresh_features(conn, FeatureSet(), [symbol], "1day", START, END)
    after = read_features(conn, [symbol], START, END, "1day")

    assert (redo.inserted, redo.updated, redo.unchanged) == (N_BARS - k, 0, k)
    pd.testing.assert_frame_equal(after.iloc[:k], before)
    assert after["sma"].iloc[k - 1] == pytest.approx(bars["close"].iloc[k - 20 : k].mean())
    assert after["ret"].iloc[k] > -0.2  # the split is no -75 % return
