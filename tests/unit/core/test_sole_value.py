"""The value a whole column holds: what the one-series paths of the writer and the watermarks ask."""

from __future__ import annotations

import pandas as pd

from core.model import STR, sole_value


def test_a_column_of_one_value_gives_it() -> None:
    assert sole_value(pd.Series(["AAPL"] * 3, dtype=STR)) == "AAPL"
    assert sole_value(pd.Series([""] * 2, dtype=STR)) == ""  # a falsy value is a value


def test_differing_missing_or_no_values_give_none() -> None:
    assert sole_value(pd.Series(["AAPL", "MSFT"], dtype=STR)) is None
    assert sole_value(pd.Series(["AAPL", None], dtype=STR)) is None
    assert sole_value(pd.Series([None, None], dtype=STR)) is None
    assert sole_value(pd.Series([], dtype=STR)) is None
