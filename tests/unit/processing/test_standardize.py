"""Standardization: dtypes, symbols, timeframe labels, order, exact duplicates."""

from __future__ import annotations

import pandas as pd
import pytest

from core import model
from core.errors import DataQualityError
from quality.standardize import standardize_bars


def raw(**overrides: list) -> pd.DataFrame:
    columns = {
        "ts": ["2024-06-03T13:31:00Z", "2024-06-03T13:30:00Z", "2024-06-03T13:30:00Z"],
        "symbol": ["brk-b", "aapl", "AAPL"],
        "timeframe": ["1m", "1 minute", "1min"],
        "open": [1, 2, 2],
        "high": [1, 2, 2],
        "low": [1, 2, 2],
        "close": [1, 2, 2],
        "volume": [1.0, 2.0, 2.0],
        "source": ["yahoo", "polygon", "alpaca"],
        "extra": [0, 0, 0],
    }
    columns.update(overrides)
    return pd.DataFrame(columns)


def test_columns_and_dtypes_are_the_model_in_order() -> None:
    out = standardize_bars(raw())
    assert list(out.columns) == list(model.BARS)
    assert {name: str(dtype) for name, dtype in out.dtypes.items()} == {
        name: str(pd.Series([], dtype=dtype).dtype) for name, dtype in model.BARS.items()
    }


def test_symbols_and_timeframes_are_canonical() -> None:
    out = standardize_bars(raw())
    assert set(out["symbol"]) == {"AAPL", "BRK.B"}
    assert set(out["timeframe"]) == {"1min"}


def test_sorted_by_symbol_timeframe_ts_and_exact_duplicates_removed_across_sources() -> None:
    out = standardize_bars(raw())
    assert out["symbol"].tolist() == ["AAPL", "BRK.B"]
    assert out["source"].tolist() == ["polygon", "yahoo"]  # the first of two identical bars is kept


def test_same_key_with_different_values_is_kept_for_validation() -> None:
    out = standardize_bars(raw(close=[1, 2, 3]))
    assert (out["symbol"] == "AAPL").sum() == 2


def test_unknown_timeframe_or_missing_column_is_a_data_quality_error() -> None:
    with pytest.raises(DataQualityError, match="fortnight"):
        standardize_bars(raw(timeframe=["1fortnight", "1min", "1min"]))
    with pytest.raises(DataQualityError, match="close"):
        standardize_bars(raw().drop(columns=["close"]))


def test_uncoercible_value_names_the_column() -> None:
    with pytest.raises(DataQualityError, match="open"):
        standardize_bars(raw(open=["x", 2, 2]))


def one_series(stamps: list[str]) -> pd.DataFrame:
    n = len(stamps)
    return raw(
        ts=stamps,
        symbol=["aapl"] * n,
        timeframe=["1min"] * n,
        open=list(range(n)),
        high=list(range(n)),
        low=list(range(n)),
        close=list(range(n)),
        volume=[1.0] * n,
        source=["polygon"] * n,
        extra=[0] * n,
    )


def test_a_page_of_one_series_in_time_order_comes_out_as_the_sorted_general_case() -> None:
    """One symbol in strictly increasing time skips sorting and de-duplication: the result is the
    one the general path gives for the same rows shuffled."""
    stamps = ["2024-06-03T13:30:00Z", "2024-06-03T13:31:00Z", "2024-06-03T13:33:00Z", "2024-06-03T13:34:00Z"]
    in_order = standardize_bars(one_series(stamps))
    shuffled = standardize_bars(one_series(stamps).iloc[[2, 0, 3, 1]].reset_index(drop=True))
    pd.testing.assert_frame_equal(in_order, shuffled)
    assert list(in_order["open"]) == [0, 1, 2, 3]


def test_a_page_of_one_series_with_a_repeated_bar_still_drops_the_exact_copy() -> None:
    stamps = ["2024-06-03T13:30:00Z", "2024-06-03T13:31:00Z", "2024-06-03T13:31:00Z"]
    page = one_series(stamps)
    page.loc[2, ["open", "high", "low", "close"]] = 1  # an exact copy of the second bar
    out = standardize_bars(page)
    assert len(out) == 2
    assert out["ts"].is_monotonic_increasing
