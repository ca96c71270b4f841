"""The scanners on the continuous aggregates (db/routines/40_scan_helpers.sql): symbols with stored
1-minute bars and no stored bar of an aggregated timeframe are scanned on the aggregate of their
minutes, and find what the same scanner finds when those aggregate bars are stored as real bars.

Three symbols get six sessions of 1-minute bars only; their 5min, 1hour and 1day aggregate bars are
then written as stored bars of twins (same series, other symbols), and every scanner must return
for the minutes' symbols exactly what it returns for the twins. A third kind of symbol has both
minutes and stored 5-minute bars of its own: the scanners read its stored bars, not the aggregate.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
import pytest

from core.model import BARS, frame
from core.settings import Settings
from db.connect import database_connection
from storage import scanners
from storage.aggregates import read_aggregated_bars, refresh_bar_aggregates
from storage.hot import upsert_bars
from storage.scanners import ScanQuery, run_scan
from tests.support.scanners import delete_symbols, write_features
from tests.support.storage import on_tick_grid

ALL = 100_000  # a limit no shared database reaches: other tests' symbols cannot crowd ours out
# Six regular sessions (New York, EDT: 09:30-16:00 is 13:30-20:00 UTC), all minutes in session.
SESSIONS = pd.bdate_range("2026-10-05", periods=6)
HOT_SINCE = datetime(2026, 9, 1, tzinfo=UTC)  # nothing of these symbols is tiered
WINDOW = (pd.Timestamp("2026-10-05", tz="America/New_York"), pd.Timestamp("2026-10-13", tz="America/New_York"))


@dataclass(frozen=True)
class Minutes:
    symbols: list[str]  # 1-minute bars only: scanned on the aggregates
    twins: list[str]  # the aggregates' bars of ``symbols``, stored as bars of each timeframe
    mixed: str  # 1-minute bars and stored 5-minute bars of its own (first session only)
    bars: pd.DataFrame  # the 1-minute bars of ``symbols`` as written


def minute_bars(symbols: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Random walks; the first symbol rallies and the second sells off in the last session (new
    highs and lows on every timeframe), every session opens with a gap, the last minute spikes."""
    ts = pd.DatetimeIndex(
        [
            t
            for day in SESSIONS
            for t in pd.date_range(
                pd.Timestamp(day.date().isoformat() + " 09:30", tz="America/New_York"), periods=390, freq="1min"
            )
        ]
    ).tz_convert("UTC")
    parts = []
    for k, symbol in enumerate(symbols):
        steps = rng.normal(0, 0.002, len(ts))
        steps[-390:] += (0.002, -0.002, 0.0)[k % 3]
        steps[::390] += rng.normal(0, 0.03, len(SESSIONS))  # opening gaps
        close = (40.0 + 15 * k) * np.exp(np.cumsum(steps))
        open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.0005, len(ts)))
        # the latest session opens 1 % up, 1 % down or flat by symbol (the prices are on the cent grid:
        # a sub-cent gap would round away)
        open_[-390] = close[-391] * (1.01, 0.99, 1.0)[k % 3]
        volume = rng.integers(1_000, 3_000, len(ts))
        volume[-5:] *= 40  # a spike in the latest 5 minutes, so the latest 5min/1hour/1day bars spike too
        parts.append(
            frame(
                BARS,
                {
                    "symbol": symbol,
                    "ts": ts,
                    "timeframe": "1min",
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.0005,
                    "low": np.minimum(open_, close) * 0.9995,
                    "close": close,
                    "volume": volume,
                    "vwap": (open_ + close) / 2,
                    "trade_count": volume // 10,
                    "source": "test",
                },
                what="test minutes",
            )
        )
    return on_tick_grid(pd.concat(parts, ignore_index=True))


def refresh(conn: psycopg.Connection) -> None:
    assert refresh_bar_aggregates(conn, *WINDOW, HOT_SINCE) is not None


@pytest.fixture(scope="module")
def minutes(stack: Settings) -> Iterator[Minutes]:
    tag = uuid.uuid4().hex[:6].upper()
    symbols, twins, mixed = [f"Q{tag}A{i}" for i in range(3)], [f"Q{tag}B{i}" for i in range(3)], f"Q{tag}C0"
    bars = minute_bars(symbols, np.random.default_rng(13))
    with database_connection(stack, autocommit=True) as conn:
        try:
            upsert_bars(conn, bars)
            upsert_bars(conn, bars[bars["symbol"] == symbols[0]].assign(symbol=mixed))
            refresh(conn)
            for timeframe in ("5min", "1hour", "1day"):
                aggregated = read_aggregated_bars(conn, symbols, *WINDOW, timeframe)
                upsert_bars(
                    conn, aggregated.assign(symbol=aggregated["symbol"].map(dict(zip(symbols, twins, strict=True))))
                )
            own = read_aggregated_bars(conn, [mixed], *WINDOW, "5min")
            own = own[own["ts"] < pd.Timestamp(SESSIONS[1].date().isoformat(), tz="America/New_York")]
            upsert_bars(conn, own.assign(close=own["close"] * 2, source="vendor"))
            yield Minutes(symbols, twins, mixed, bars)
        finally:
            delete_symbols(conn, [*symbols, *twins, mixed])
            refresh(conn)  # no bucket of the deleted minutes stays materialized


def scan(conn: psycopg.Connection, query: ScanQuery, symbols: list[str]) -> pd.DataFrame:
    result = run_scan(conn, query)
    return result[result["symbol"].isin(symbols)].reset_index(drop=True)


def on_aggregates_and_stored(conn: psycopg.Connection, query: ScanQuery, data: Minutes) -> tuple[pd.DataFrame, ...]:
    """The scanner's rows for the minutes' symbols (renamed to their twins) and for the twins."""
    got = scan(conn, query, data.symbols)
    got["symbol"] = got["symbol"].map(dict(zip(data.symbols, data.twins, strict=True)))
    return got, scan(conn, query, data.twins)


INTRADAY_QUERIES = {
    "5min": [
        scanners.latest_bars("5min"),
        scanners.top_movers(minutes=15, limit=ALL, timeframe="5min"),
        scanners.top_movers(minutes=400, limit=ALL, direction="up", timeframe="5min"),
        scanners.volume_spikes(20, 1.0, timeframe="5min", limit=ALL),
        scanners.opening_gaps(0.0, timeframe="5min", limit=ALL),
        scanners.new_highs_lows(40, timeframe="5min"),
    ],
    "1hour": [
        scanners.latest_bars("1hour"),
        scanners.top_movers(minutes=120, limit=ALL, timeframe="1hour"),
        scanners.volume_spikes(10, 1.0, timeframe="1hour", limit=ALL),
        scanners.opening_gaps(0.0, direction="down", timeframe="1hour", limit=ALL),
        scanners.new_highs_lows(12, timeframe="1hour"),
    ],
    "1day": [
        scanners.latest_bars("1day"),
        scanners.top_movers(sessions=2, limit=ALL),
        scanners.top_movers(sessions=5, limit=ALL, direction="down"),
        scanners.volume_spikes(4, 1.0, timeframe="1day", limit=ALL),
        scanners.opening_gaps(0.0, timeframe="1day", limit=ALL),
        scanners.new_highs_lows(5),
    ],
}


@pytest.mark.parametrize(
    "query",
    [q for queries in INTRADAY_QUERIES.values() for q in queries],
    ids=lambda q: f"{q.function}{q.args}",
)
def test_a_scanner_on_the_aggregate_equals_it_on_stored_bars(
    conn: psycopg.Connection, minutes: Minutes, query: ScanQuery
) -> None:
    got, want = on_aggregates_and_stored(conn, query, minutes)

    assert not want.empty, f"the stored twins give no rows for {query}: the comparison would prove nothing"
    pd.testing.assert_frame_equal(got, want)


def test_rsi_extremes_find_features_of_aggregate_bars(conn: psycopg.Connection, minutes: Minutes) -> None:
    latest = run_scan(conn, scanners.latest_bars("1day"))
    rows = []
    for k, (symbol, twin) in enumerate(zip(minutes.symbols, minutes.twins, strict=True)):
        ts = latest.loc[latest["symbol"] == twin, "ts"].iloc[0]
        for name in (symbol, twin):
            rows.append((name, ts, (92.0, 8.0, 50.0)[k]))
    features = pd.DataFrame(rows, columns=["symbol", "ts", "rsi"]).assign(
        timeframe="1day", feature_set="agg-test", computed_at=pd.Timestamp("2026-10-13", tz="UTC")
    )
    write_features(conn, features)

    got, want = on_aggregates_and_stored(conn, scanners.rsi_extremes(70, 30, timeframe="1day"), minutes)

    assert list(want["kind"]) == ["overbought", "oversold"]
    pd.testing.assert_frame_equal(got, want)


def test_the_latest_aggregate_bars_are_the_minutes_buckets(conn: psycopg.Connection, minutes: Minutes) -> None:
    """The latest 5min and 1day bars of the minutes' symbols, against pandas over the minutes."""
    bars = minutes.bars
    last = bars[bars["ts"] >= bars["ts"].max() - pd.Timedelta(minutes=4)]
    day = bars[bars["ts"] >= pd.Timestamp(SESSIONS[-1].date().isoformat(), tz="America/New_York")]

    for timeframe, window, start in (
        ("5min", last, last["ts"].min()),
        ("1day", day, pd.Timestamp(SESSIONS[-1].date().isoformat(), tz="America/New_York")),
    ):
        got = scan(conn, scanners.latest_bars(timeframe), minutes.symbols)
        want = window.groupby("symbol").agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
        )
        assert list(got["symbol"]) == minutes.symbols
        assert (got["ts"] == start).all() and (got["source"] == "test/1min").all()
        np.testing.assert_allclose(
            got[["open", "high", "low", "close"]].to_numpy(),
            want.loc[minutes.symbols, ["open", "high", "low", "close"]].to_numpy(),
            rtol=0,
            atol=0,
        )
        assert list(got["volume"]) == list(want.loc[minutes.symbols, "volume"])


def test_a_symbol_with_stored_bars_of_the_timeframe_is_scanned_on_them_alone(
    conn: psycopg.Connection, minutes: Minutes
) -> None:
    """Its stored 5-minute bars cover only the first session (closes doubled): its latest 5min bar
    is the stored one of that session, not the aggregate's of the last session."""
    latest = scan(conn, scanners.latest_bars("5min"), [minutes.mixed])
    movers = scan(conn, scanners.top_movers(minutes=15, limit=ALL, timeframe="5min"), [minutes.mixed])
    first_day = minutes.bars[
        (minutes.bars["symbol"] == minutes.symbols[0])
        & (minutes.bars["ts"] < pd.Timestamp(SESSIONS[1].date().isoformat(), tz="America/New_York"))
    ]

    assert list(latest["source"]) == ["vendor"]
    assert latest["ts"].iloc[0] == first_day["ts"].max() - pd.Timedelta(minutes=4)
    assert latest["close"].iloc[0] == 2 * first_day["close"].iloc[-1]
    assert list(movers["ts_to"]) == list(latest["ts"])
