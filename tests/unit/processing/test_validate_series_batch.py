"""A batch of series validated at once (``series_spans``, :meth:`ValidationResult.by_symbol`) gives
every symbol exactly the result its validation alone gives: the processing stage validates the
symbols collected together in one call."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from quality.score import quality_report
from quality.standardize import standardize_bars
from quality.validate import FLAGS, ValidationResult, validate_bars
from tests.support.quality import session_bars

AT_1411 = pd.Timestamp("2024-06-05 14:11:30", tz="America/New_York")
NEXT_DAY = pd.Timestamp("2024-06-06 09:00", tz="America/New_York")


def defective_series() -> dict[str, tuple[pd.DataFrame, pd.Timestamp]]:
    """Series that differ in span, defects and serving instant: what makes per-symbol results differ."""
    early = session_bars("AAA", "2024-06-03", "2024-06-05", seed=1)
    early.loc[100, "close"] = early.loc[100, "close"] * 1.6  # a bad print: an outlier return
    early.loc[101, "open"] = early.loc[100, "close"]
    early = early.drop(index=range(300, 340))  # a gap on the first session
    late = session_bars("BBB", "2024-06-04", "2024-06-05", seed=2, price=12.0)  # starts a session later
    late.loc[10:14, ["volume"]] = 0  # a frozen feed: stale closes
    late.loc[10:14, ["close", "open", "high", "low"]] = late.loc[9, "close"]
    late.loc[20, "high"] = late.loc[20, "low"] - 1  # inconsistent OHLC
    forming = session_bars("CCC", "2024-06-05", "2024-06-05", seed=3)  # today's session, served at 14:11
    forming = forming[forming["ts"] <= pd.Timestamp("2024-06-05 18:20", tz="UTC")]  # 14:20: from the future too
    conflict = session_bars("DDD", "2024-06-03", "2024-06-03", seed=4)
    twin = conflict.iloc[[50]].assign(close=conflict.iloc[50]["close"] + 0.05)  # the same key, another value
    conflict = pd.concat([conflict, twin], ignore_index=True)
    return {"AAA": (early, NEXT_DAY), "BBB": (late, NEXT_DAY), "CCC": (forming, AT_1411), "DDD": (conflict, NEXT_DAY)}


def assert_same(batch: ValidationResult, alone: ValidationResult) -> None:
    for part in ("accepted", "rejected", "coverage"):
        assert_frame_equal(getattr(batch, part), getattr(alone, part), check_dtype=True)
    assert batch.rule_counts == alone.rule_counts and batch.records == alone.records and batch.mode == alone.mode
    assert quality_report(batch).score == quality_report(alone).score


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_each_series_of_a_batch_gets_the_result_of_its_validation_alone(mode: str) -> None:
    series = defective_series()
    alone = {
        symbol: validate_bars(standardize_bars(frame), mode=mode, symbols=[symbol], served_at=served)
        for symbol, (frame, served) in series.items()
    }
    batch = validate_bars(
        standardize_bars(pd.concat([frame for frame, _ in series.values()], ignore_index=True)),
        mode=mode,
        symbols=list(series),
        served_at={symbol: served for symbol, (_, served) in series.items()},
        series_spans=True,
    ).by_symbol()
    assert sorted(batch) == sorted(series)
    for symbol in series:
        assert_same(batch[symbol], alone[symbol])
    # the defects are there to be judged: each series has something its validation alone flags
    assert alone["AAA"].rule_counts["outlier_return"] > 0 and alone["AAA"].gaps["missing"].sum() == 40
    assert alone["BBB"].rule_counts["stale_price"] == 5 and alone["BBB"].rule_counts["ohlc_inconsistent"] == 1
    assert alone["CCC"].rule_counts["future_ts"] > 0 and (alone["CCC"].accepted[FLAGS] != 0).sum() == 1
    assert alone["DDD"].rule_counts["duplicate_conflict"] == 2


def test_without_series_spans_the_batch_span_applies_to_every_symbol() -> None:
    """The difference ``series_spans`` makes: a series starting later is otherwise expected over the
    batch's first session too (a whole session missing)."""
    early = session_bars("AAA", "2024-06-03", "2024-06-04")
    late = session_bars("BBB", "2024-06-04", "2024-06-04")
    frame = standardize_bars(pd.concat([early, late], ignore_index=True))
    pooled = validate_bars(frame, served_at=NEXT_DAY).by_symbol()
    own = validate_bars(frame, served_at=NEXT_DAY, series_spans=True).by_symbol()
    assert pooled["BBB"].gaps["missing"].tolist() == [390]
    assert own["BBB"].gaps.empty and own["AAA"].gaps.empty
