"""Corporate actions in the hot store and adjusted bars from SQL, against the hand example."""

from __future__ import annotations

import pandas as pd
import pytest

from core.errors import StorageError
from core.model import BARS
from storage.corporate_actions import (
    adjustment_factors,
    apply_adjustment,
    upsert_corporate_actions,
    write_corporate_actions,
)
from storage.hot import read_bars, upsert_bars
from storage.watermarks import read_watermarks
from tests.support.storage import (
    HAND_CLOSES,
    HAND_SPLIT_ADJUSTED,
    HAND_TOTAL_RETURN,
    HAND_VOLUMES,
    bars,
    by_day,
    hand_actions,
    hand_daily_bars,
)


@pytest.fixture
def hand_symbol(conn, symbols) -> str:
    symbol = symbols()
    upsert_bars(conn, hand_daily_bars(symbol))
    upsert_corporate_actions(conn, hand_actions(symbol))
    return symbol


def test_corporate_actions_upsert_is_idempotent(conn, symbols):
    symbol = symbols()
    first = upsert_corporate_actions(conn, hand_actions(symbol))
    again = upsert_corporate_actions(conn, hand_actions(symbol))
    corrected = hand_actions(symbol, source="alpaca")
    corrected.loc[0, "amount"] = 2.5
    fixed = upsert_corporate_actions(conn, corrected)
    stored = conn.execute(
        "SELECT action, ex_date::text, amount, source FROM market.corporate_actions WHERE symbol = %s ORDER BY 1",
        (symbol,),
    ).fetchall()
    assert (first.inserted, again.unchanged, fixed.updated, fixed.unchanged) == (2, 2, 2, 0)
    assert stored == [("dividend", "2024-06-06", 2.5, "alpaca"), ("split", "2024-06-10", None, "alpaca")]


def test_a_split_without_rates_is_refused(conn, symbols):
    actions = hand_actions(symbols())
    actions.loc[1, "new_rate"] = None
    with pytest.raises(StorageError, match="corporate_actions_split_rates"):
        upsert_corporate_actions(conn, actions)


def test_write_corporate_actions_advances_the_ex_date_watermark(conn, symbols):
    symbol = symbols()
    write_corporate_actions(conn, hand_actions(symbol, source="polygon"))
    mark = read_watermarks(conn, dataset="corporate_actions", symbols=[symbol])[
        "polygon", "corporate_actions", symbol, ""
    ]
    assert pd.Timestamp(mark.high_water_ts) == pd.Timestamp("2024-06-10", tz="UTC")


@pytest.mark.parametrize(
    ("adjustment", "expected"), [("raw", HAND_CLOSES), ("split", HAND_SPLIT_ADJUSTED), ("all", HAND_TOTAL_RETURN)]
)
def test_adjusted_daily_bars_match_the_hand_computation(conn, hand_symbol, adjustment, expected):
    read = read_bars(conn, [hand_symbol], "2024-06-01", "2024-07-01", "1day", adjustment=adjustment)
    assert by_day(read, "close") == pytest.approx(expected)
    assert by_day(read, "open") == pytest.approx(expected)


def test_adjusted_volumes_match_the_hand_computation(conn, hand_symbol):
    read = read_bars(conn, [hand_symbol], "2024-06-01", "2024-07-01", "1day", adjustment="all")
    assert by_day(read, "volume") == HAND_VOLUMES


def test_adjusted_intraday_bars_use_the_daily_close_before_the_ex_date(conn, hand_symbol):
    minutes = pd.concat(
        [bars(hand_symbol, n=2, start="2024-06-05 19:58"), bars(hand_symbol, n=2, start="2024-06-10 13:30")]
    )
    upsert_bars(conn, minutes)
    read = read_bars(conn, [hand_symbol], "2024-06-05", "2024-06-11", "1min", adjustment="all")
    expected = apply_adjustment(
        minutes, adjustment_factors(hand_actions(hand_symbol), hand_daily_bars(hand_symbol)), "all"
    )
    assert read["close"].tolist() == pytest.approx(expected["close"].tolist())
    assert read["close"].tolist()[:2] == pytest.approx([100 * 51 / 104, 101 * 51 / 104])


def test_read_bars_returns_the_canonical_dtypes_in_order(conn, hand_symbol):
    read = read_bars(conn, [hand_symbol], "2024-06-01", "2024-07-01", "1day", adjustment="split")
    assert dict(read.dtypes.astype(str)) == {k: str(pd.Series([], dtype=v).dtype) for k, v in BARS.items()}
    assert read["ts"].is_monotonic_increasing
    assert len(read) == len(HAND_CLOSES)


def test_read_bars_window_is_half_open(conn, hand_symbol):
    read = read_bars(conn, [hand_symbol], "2024-06-04 04:00", "2024-06-06 04:00", "1day")
    assert list(by_day(read, "close")) == ["2024-06-04", "2024-06-05"]


def test_sql_factors_equal_the_python_reference(conn, hand_symbol):
    sql_rows = conn.execute(
        "SELECT valid_until::text, split_factor, total_factor FROM market.adjustment_factors(%s) ORDER BY 1",
        ([hand_symbol],),
    ).fetchall()
    python = adjustment_factors(hand_actions(hand_symbol), hand_daily_bars(hand_symbol))
    assert [r[0] for r in sql_rows] == python["valid_until"].dt.strftime("%Y-%m-%d").tolist()
    assert [r[1] for r in sql_rows] == pytest.approx(python["split_factor"].tolist())
    assert [r[2] for r in sql_rows] == pytest.approx(python["total_factor"].tolist())


def test_an_unknown_adjustment_is_refused_by_sql_too(conn, hand_symbol):
    with pytest.raises(Exception, match="unknown adjustment"):
        conn.execute(
            "SELECT * FROM market.adjusted_bars(%s, '2024-01-01', '2025-01-01', '1day', 'dividends')", ([hand_symbol],)
        )
