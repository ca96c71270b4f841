from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from core.errors import StorageError
from storage.hot import (
    BAR_KEY,
    BARS_DAILY,
    BARS_INTRADAY,
    Column,
    UpsertResult,
    bar_table,
    collapse_duplicates,
    day_edges,
    encode_copy_binary,
    iter_copy_binary,
    route_bars,
)
from tests.support.storage import bars, read_copy_binary

BAR_TYPES = [c.pg_type for c in BARS_INTRADAY.columns]


@pytest.mark.parametrize("timeframe", ["1min", "5min", "15min", "1hour", "1h"])
def test_intraday_timeframes_route_to_the_intraday_hypertable(timeframe):
    assert bar_table(timeframe) is BARS_INTRADAY


@pytest.mark.parametrize("timeframe", ["1day", "1d"])
def test_daily_timeframes_route_to_the_daily_hypertable(timeframe):
    assert bar_table(timeframe) is BARS_DAILY


@pytest.mark.parametrize("timeframe", ["1week", "2min", "tick", ""])
def test_timeframes_the_hot_store_does_not_keep_are_refused(timeframe):
    with pytest.raises(StorageError, match="timeframe"):
        bar_table(timeframe)


def test_route_bars_keeps_a_single_timeframe_frame_whole():
    frame = bars(n=4)
    assert list(route_bars(frame)) == [BARS_INTRADAY]
    assert route_bars(frame)[BARS_INTRADAY] is frame


def test_route_bars_splits_mixed_timeframes_by_table():
    frame = pd.concat([bars(n=2), bars(n=3, timeframe="1day"), bars(n=1, timeframe="5min")], ignore_index=True)
    routed = route_bars(frame)
    assert sorted(routed[BARS_INTRADAY]["timeframe"]) == ["1min", "1min", "5min"]
    assert list(routed[BARS_DAILY]["timeframe"]) == ["1day"] * 3


def test_collapse_duplicates_keeps_the_last_row_of_a_key():
    first, second = bars(n=3, close=10.0), bars(n=1, close=99.0)
    collapsed = collapse_duplicates(pd.concat([first, second], ignore_index=True), BAR_KEY)
    assert len(collapsed) == 3
    assert collapsed.sort_values("ts")["close"].tolist() == [99.0, 11.0, 12.0]


def test_collapse_duplicates_distinguishes_symbols_and_timeframes():
    frame = pd.concat([bars("A"), bars("B"), bars("A", timeframe="5min")], ignore_index=True)
    assert len(collapse_duplicates(frame, BAR_KEY)) == 9


def test_binary_copy_stream_round_trips_every_value():
    frame = bars("BRK.B", n=2)
    rows = read_copy_binary(encode_copy_binary(BARS_INTRADAY.complete(frame), BARS_INTRADAY.columns), BAR_TYPES)
    t0, t1 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC), datetime(2024, 3, 4, 14, 31, tzinfo=UTC)
    assert rows == [
        ("BRK.B", t0, "1min", 100.0, 101.0, 99.0, 100.0, 1000, 100.0, 10, "test", 0),
        ("BRK.B", t1, "1min", 101.0, 102.0, 100.0, 101.0, 2000, 101.0, 11, "test", 0),
    ]


def test_binary_copy_stream_writes_nulls_and_mixed_text_lengths():
    frame = pd.concat([bars("A", n=2), bars("LONGER", n=2, source="yahoo-finance")], ignore_index=True)
    frame.loc[1, "vwap"] = np.nan
    frame.loc[2, "trade_count"] = pd.NA
    rows = read_copy_binary(encode_copy_binary(BARS_INTRADAY.complete(frame), BARS_INTRADAY.columns), BAR_TYPES)
    by_key = {(r[0], r[1].minute): r for r in rows}
    assert len(rows) == 4
    assert by_key[("A", 31)][8] is None and by_key[("A", 31)][9] == 11
    assert by_key[("LONGER", 30)][9] is None and by_key[("LONGER", 30)][8] == 100.0
    assert by_key[("LONGER", 31)][10] == "yahoo-finance"
    assert by_key[("A", 30)][10] == "test"


def test_binary_copy_stream_in_several_chunks_holds_every_row_once():
    frame = bars(n=50)
    stream = b"".join(
        bytes(c) for c in iter_copy_binary(BARS_INTRADAY.complete(frame), BARS_INTRADAY.columns, rows_per_chunk=7)
    )
    rows = read_copy_binary(stream, BAR_TYPES)
    assert sorted(r[1] for r in rows) == list(frame["ts"].dt.to_pydatetime())


def test_binary_copy_stream_encodes_dates_and_null_text():
    frame = pd.DataFrame(
        {"d": pd.to_datetime(["2024-06-10", None], utc=True), "t": pd.array(["x", None], dtype="string[pyarrow]")}
    )
    rows = read_copy_binary(encode_copy_binary(frame, [Column("d", "date"), Column("t", "text")]), ["date", "text"])
    assert sorted(rows, key=str) == sorted([(date(2024, 6, 10), "x"), (None, None)], key=str)


def test_binary_copy_stream_of_an_empty_frame_is_header_and_trailer():
    assert read_copy_binary(encode_copy_binary(bars(n=0), BARS_INTRADAY.columns), BAR_TYPES) == []


def test_upsert_results_add_up():
    total = UpsertResult(1, 2, 3, 4, 5) + UpsertResult(10, 20, 30, 40, 50)
    assert total.as_dict() == {"inserted": 11, "updated": 22, "unchanged": 33, "duplicates": 44, "refused": 55}
    assert total.changed == 33


def test_bar_prices_travel_as_whole_ticks_of_a_ten_thousandth_of_a_dollar():
    frame = pd.DataFrame({"p": [150.23, 0.0001, 0.51234, 1234.5678, np.nan, -2.5]})
    stream = encode_copy_binary(frame, [Column("p", "price")])
    ticks = read_copy_binary(stream, ["int8"])  # the wire values, as the store holds them
    # (rows come grouped by null layout: compared as multisets)
    assert sorted(t[0] for t in ticks if t[0] is not None) == [-25_000, 1, 5_123, 1_502_300, 12_345_678]
    assert sum(t[0] is None for t in ticks) == 1
    # and ticks / 10,000 in double precision is the double nearest each 4-decimal price
    dollars = [r[0] for r in read_copy_binary(stream, ["price"]) if r[0] is not None]
    assert sorted(dollars) == [-2.5, 0.0001, 0.5123, 150.23, 1234.5678]


@pytest.mark.parametrize("bad", [float("inf"), -float("inf"), 1e15])
def test_a_price_the_ticks_cannot_hold_is_refused_naming_it(bad):
    frame = pd.DataFrame({"close": [10.0, bad]})
    with pytest.raises(StorageError, match=r"price .* in column 'close' \(row 1\).*ticks of 1/10,000"):
        encode_copy_binary(frame, [Column("close", "price")])


def test_day_edges_are_the_first_earliest_and_latest_row_of_each_day() -> None:
    """The rows whose no-op update tells the aggregates a COPYed batch's range: as pandas'
    group-by idxmin/idxmax per UTC day, ties (two symbols at one instant) taking the first row."""
    rng = np.random.default_rng(11)
    minute = 60 * 10**9
    times = (rng.integers(0, 5 * 24 * 60, 500) * minute).astype(np.int64)  # 5 days, many ties
    series = pd.Series(times)
    by_day = series.groupby(series // (86_400 * 10**9))
    expected = np.unique(np.concatenate([by_day.idxmin().to_numpy(), by_day.idxmax().to_numpy()]))
    np.testing.assert_array_equal(day_edges(times), expected)
    assert day_edges(np.empty(0, dtype=np.int64)).tolist() == []
