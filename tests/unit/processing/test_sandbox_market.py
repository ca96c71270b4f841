"""A realistic batch: the sandbox's market served as Polygon aggregates, parsed by the Polygon
adapter, standardized, validated and scored; then the same batch corrupted."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from quality.score import quality_report
from quality.standardize import standardize_bars
from quality.validate import validate_bars
from sandbox.market import Market
from sandbox.wire.polygon import agg_results, aggs_body
from sources.polygon import parse_aggregates

SYMBOLS = ["AAPL", "MSFT", "F", "XOM", "BRK.B"]
START, END = "2024-11-25", "2024-12-03"  # Thanksgiving (closed) and the half day after it
UNITS = {"1min": ("minute", 1), "1day": ("day", 1)}


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=date(2024, 12, 31))


def polygon_bars(market: Market, timeframe: str, start: str, end: str) -> pd.DataFrame:
    unit, multiplier = UNITS[timeframe]
    lo = pd.Timestamp(start, tz="America/New_York").value
    hi = (pd.Timestamp(end, tz="America/New_York") + pd.Timedelta(days=1)).value - 1
    frames = []
    for symbol in SYMBOLS:
        body = aggs_body(symbol, agg_results(market.bars(symbol, lo, hi, unit, multiplier)), 0, False, "t", None)
        frames.append(parse_aggregates(body, timeframe=timeframe))
    return standardize_bars(pd.concat(frames, ignore_index=True))


@pytest.fixture(scope="module")
def minutes(market: Market) -> pd.DataFrame:
    return polygon_bars(market, "1min", START, END)


def test_sandbox_minutes_score_one(minutes: pd.DataFrame) -> None:
    result = validate_bars(minutes, start=START, end=END, symbols=SYMBOLS)
    report = quality_report(result)
    assert len(minutes) == 5 * (5 * 390 + 210)
    assert report.score == pytest.approx(1.0, abs=1e-3) and not report.below_threshold
    assert report.missing == 0 and report.off_grid == 0


def test_sandbox_daily_year_scores_one(market: Market) -> None:
    daily = polygon_bars(market, "1day", "2024-01-01", "2024-12-31")
    report = quality_report(validate_bars(daily, start="2024-01-01", end="2024-12-31", symbols=SYMBOLS))
    assert len(daily) == 5 * 252
    assert report.score == pytest.approx(1.0, abs=1e-3)


def test_corrupted_minutes_fall_below_threshold_with_the_right_reasons(minutes: pd.DataFrame) -> None:
    rng = np.random.default_rng(7)
    bad = minutes.copy()
    dates = bad["ts"].dt.tz_convert("America/New_York").dt.date.astype(str)
    lost = bad["symbol"].isin(["AAPL", "MSFT"]) & dates.isin(["2024-11-25", "2024-11-26", "2024-11-27"])
    bad = bad[~lost].reset_index(drop=True)  # 2 symbols x 3 sessions vanish: 2,340 bars
    broken = rng.choice(len(bad), 400, replace=False)
    bad.loc[broken, "high"] = bad.loc[broken, "low"] - 0.05  # high below low
    holiday = minutes.iloc[:30].copy()
    holiday["ts"] = holiday["ts"] + (pd.Timestamp("2024-11-28 14:30", tz="UTC") - holiday["ts"].iloc[0])
    bad = standardize_bars(pd.concat([bad, holiday], ignore_index=True))  # 30 bars on Thanksgiving

    result = validate_bars(bad, mode="strict", start=START, end=END, symbols=SYMBOLS)
    report = quality_report(result, min_quality_score=0.8)

    expected = 5 * (5 * 390 + 210)
    assert report.score == pytest.approx((expected - 2340 - 400) / (expected + 30))
    assert report.below_threshold
    assert report.rule_counts["ohlc_inconsistent"] == 400
    assert report.rule_counts["outside_session"] == 30
    assert report.rejected == 430
    assert report.reasons[0].startswith("quality score")
    assert "21.7% of expected bars are missing (2,340 of 10,800)" in report.reasons[1]
    assert "400 record(s)" in report.reasons[2] and "ohlc_inconsistent" in report.reasons[2]
    assert "outside_session" in report.reasons[3]
    assert "below threshold" in report.to_markdown()
