"""The read router's pure decisions: which tiers, the cold-fallback refusal, merging, adjustment names."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from core.errors import RequestError
from storage.router import as_adjustment, check_fallback, merge_tiers, route
from storage.tiering import LakeFile

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FILE = LakeFile(
    "cold/bars/timeframe=1day/month=2026-01/c.parquet",
    "bars_daily",
    "1day",
    "month=2026-01",
    ("c",),
    JAN,
    JAN,
    "A",
    "Z",
    1,
    1,
    "x",
    "snappy",
)


def test_routes_name_the_tiers_read() -> None:
    assert route(True, []).name == "hot"
    assert route(False, [FILE]).name == "cold"
    assert route(True, [FILE]).name == "hot+cold"
    assert route(False, []).name == "none"


def test_without_cold_fallback_a_range_in_the_lake_is_refused_clearly() -> None:
    with pytest.raises(RequestError) as refused:
        check_fallback(
            [FILE],
            JAN,
            datetime(2026, 2, 1, tzinfo=UTC),
            datetime(2026, 10, 27, tzinfo=UTC),
            False,
            "1day bars_daily of ['AAPL']",
        )
    message = str(refused.value)
    assert "[2026-01-01 00:00, 2026-02-01 00:00)" in message
    assert "2026-10-27" in message and "storage.routing.cold_fallback_enabled=true" in message
    check_fallback([FILE], JAN, JAN, JAN, True, "x")  # allowed: no error
    check_fallback([], JAN, JAN, JAN, False, "x")  # nothing cold: no error


def test_merge_keeps_the_later_tier_on_a_shared_key_and_sorts() -> None:
    cold = pd.DataFrame({"symbol": ["B", "A"], "ts": [1, 1], "close": [1.0, 2.0]})
    hot = pd.DataFrame({"symbol": ["A"], "ts": [1], "close": [9.0]})

    merged = merge_tiers([cold, hot], ["symbol", "ts"])

    assert merged.to_dict("list") == {"symbol": ["A", "B"], "ts": [1, 1], "close": [9.0, 1.0]}
    assert merge_tiers([cold.iloc[0:0]], ["symbol", "ts"]).empty


def test_merge_with_a_precedence_keeps_the_better_vendor_in_either_tier() -> None:
    polygon = pd.DataFrame({"symbol": ["A", "A"], "ts": [1, 2], "close": [100.0, 101.0], "source": "polygon"})
    yahoo = pd.DataFrame({"symbol": ["A", "B"], "ts": [1, 1], "close": [99.0, 5.0], "source": "yahoo"})
    newer_yahoo = yahoo.assign(close=[98.0, 6.0])

    for parts in ([polygon, yahoo], [yahoo, polygon]):
        merged = merge_tiers(parts, ["symbol", "ts"], precedence=("polygon", "alpaca", "yahoo"))
        assert merged.to_dict("list") == {
            "symbol": ["A", "A", "B"],
            "ts": [1, 2, 1],
            "close": [100.0, 101.0, 5.0],
            "source": ["polygon", "polygon", "yahoo"],
        }
    # one vendor's two versions (one frame holding several objects too): the later still wins
    merged = merge_tiers([pd.concat([yahoo, newer_yahoo])], ["symbol", "ts"], precedence=("polygon", "yahoo"))
    assert merged["close"].tolist() == [98.0, 6.0]
    # without a precedence (trades, features): the later part wins, as before
    assert merge_tiers([polygon, yahoo], ["symbol", "ts"])["source"].tolist() == ["yahoo", "polygon", "yahoo"]


def test_adjusted_accepts_booleans_and_the_adjustment_names() -> None:
    assert [as_adjustment(a) for a in (False, True, "raw", "split", "all")] == ["raw", "all", "raw", "split", "all"]
    with pytest.raises(RequestError, match="'dividends'"):
        as_adjustment("dividends")
