"""Migration 0012 rewrote three scanners for speed: on the same data they return exactly what the
0011 definitions return (frozen in bench/scanners_0011.sql, created beside them in a throwaway
schema), for every path of the new code: the set-based one (every symbol traded in the minutes it
looks at) and the per-symbol tiers (a stale symbol, a symbol missing the session's first minute or
the previous session's last one, a gap inside the volume lookback)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import psycopg
import pytest

from bench.storage import create_reference_scanners
from core.model import BARS, frame
from storage.hot import upsert_bars
from tests.support.scanners import INTRADAY_DAYS, MINUTES_PER_DAY, Market
from tests.support.storage import on_tick_grid

# (call, whether the module's market symbols must be among the rows)
CALLS = [
    ("top_movers_minutes(15, 100000)", True),
    ("top_movers_minutes(1, 100000, 'up')", True),
    ("top_movers_minutes(5, 100000, 'down')", True),
    ("top_movers_minutes(45, 100000)", True),  # reaches into the previous session for some symbols
    ("top_movers_minutes(600, 100000)", False),  # before every stored bar of the test days: the unbounded tier
    ("top_movers_minutes(15, 3)", False),
    ("volume_spikes(20, -1e9, '1min', 100000)", True),
    ("volume_spikes(20, 3, '1min', 100000)", True),
    ("volume_spikes(5, -1e9, '1min', 100000)", True),
    ("volume_spikes(90, -1e9, '1min', 100000)", True),  # more bars than the latest session has
    ("volume_spikes(20, -1e9, '1day', 100000)", True),
    ("opening_gaps(0, 'both', '1min', 100000)", True),
    ("opening_gaps(2, 'up', '1min', 100000)", True),
    ("opening_gaps(2, 'down', '1min', 3)", False),
    ("opening_gaps(0, 'both', '1day', 100000)", True),
]


@pytest.fixture
def scan_0011(conn: psycopg.Connection) -> Iterator[str]:
    """The 0011 definitions of the rewritten scanners in a schema of their own."""
    schema = f"scan_0011_{uuid.uuid4().hex[:8]}"
    create_reference_scanners(conn, schema)
    try:
        yield schema
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


def irregular_bars(symbols: list[str]) -> pd.DataFrame:
    """Bars on the market's two sessions that the set-based paths cannot serve:
    symbols[0] misses the first session's last minute and the second session's first minute,
    symbols[1] stopped trading in the first session (its latest bar is a session old),
    symbols[2] has a 40-minute hole in the second session before its latest bar."""
    rng = np.random.default_rng(12)
    parts = []
    for k, symbol in enumerate(symbols):
        days = [pd.date_range(day, periods=MINUTES_PER_DAY, freq="1min", tz="UTC") for day in INTRADAY_DAYS]
        if k == 0:
            days = [days[0][:-1], days[1][1:]]
        elif k == 1:
            days = [days[0][:-10]]
        else:
            days = [days[0], days[1][:10].append(days[1][50:])]
        ts = days[0].append(days[1:]) if len(days) > 1 else days[0]
        close = 80.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
        open_ = close * (1 + rng.normal(0, 0.02, len(ts)))
        volume = rng.integers(1_000, 2_000, len(ts))
        volume[-1] = 40_000
        parts.append(
            frame(
                BARS,
                {
                    "symbol": symbol,
                    "ts": ts,
                    "timeframe": "1min",
                    "open": open_,
                    "high": np.maximum(open_, close),
                    "low": np.minimum(open_, close),
                    "close": close,
                    "volume": volume,
                    "vwap": close,
                    "trade_count": volume // 10,
                    "source": "test",
                },
                what="test bars",
            )
        )
    return on_tick_grid(pd.concat(parts, ignore_index=True))


@pytest.mark.parametrize(("call", "has_market"), CALLS)
def test_the_rewritten_scanners_return_what_0011_returned(
    conn: psycopg.Connection, market: Market, fresh_symbols: list[str], scan_0011: str, call: str, has_market: bool
) -> None:
    upsert_bars(conn, irregular_bars(fresh_symbols))

    # 0011 knew stored bars only: leave out the symbols scanned on the continuous aggregate
    # (1-minute bars and no stored bar of the timeframe; db/routines/40_scan_helpers.sql)
    timeframe = "1day" if "'1day'" in call else "1min"
    on_aggregate = {r[0] for r in conn.execute("SELECT symbol FROM scan.aggregate_latest(%s)", (timeframe,))}
    rewritten = [
        r
        for r in conn.execute(f"SELECT * FROM scan.{call}").fetchall()
        if r[0] not in on_aggregate  # type: ignore[arg-type]
    ]
    original = conn.execute(f"SELECT * FROM {scan_0011}.{call}").fetchall()  # type: ignore[arg-type]

    assert rewritten == original
    assert rewritten or not has_market
    if has_market:
        assert {r[0] for r in rewritten} & set(market.symbols)


def test_the_irregular_symbols_take_the_per_symbol_paths(
    conn: psycopg.Connection, market: Market, fresh_symbols: list[str]
) -> None:
    """The rows the tiers produce for the irregular symbols, checked by hand."""
    bars = irregular_bars(fresh_symbols)
    upsert_bars(conn, bars)
    gaps = {r[0]: r for r in conn.execute("SELECT * FROM scan.opening_gaps(0, 'both', '1min', 100000)")}
    first = bars[bars["symbol"] == fresh_symbols[0]]
    second_day = first[first["ts"] >= pd.Timestamp(INTRADAY_DAYS[1], tz="UTC")]
    before = first[first["ts"] < pd.Timestamp(INTRADAY_DAYS[1], tz="UTC")]
    _, _, open_, prev_ts, prev_close, _ = gaps[fresh_symbols[0]]
    assert (open_, prev_close) == (second_day["open"].iloc[0], before["close"].iloc[-1])
    assert prev_ts == before["ts"].iloc[-1].to_pydatetime()

    stale = bars[bars["symbol"] == fresh_symbols[1]]
    movers = {r[0]: r for r in conn.execute("SELECT * FROM scan.top_movers_minutes(15, 100000)")}
    assert movers[fresh_symbols[1]][1] == stale["ts"].iloc[-16].to_pydatetime()  # 15 minutes before its last bar

    holed = bars[bars["symbol"] == fresh_symbols[2]]
    spikes = {r[0]: r for r in conn.execute("SELECT * FROM scan.volume_spikes(20, -1e9, '1min', 100000)")}
    window = holed["volume"].iloc[-21:-1]
    assert spikes[fresh_symbols[2]][3] == pytest.approx(window.mean())
    assert spikes[fresh_symbols[2]][4] == pytest.approx(window.std(ddof=1))
