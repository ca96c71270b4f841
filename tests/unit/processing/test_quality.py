"""Score arithmetic, reasons and the two renderings of the quality report."""

from __future__ import annotations

import pandas as pd
import pytest

from quality.score import batch_score, quality_report, score_symbol_days
from quality.validate import validate_bars
from tests.support.quality import one, session_bars


def coverage(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    """(expected, present, valid, off_grid) per symbol-day."""
    frame = pd.DataFrame(rows, columns=["expected", "present", "valid", "off_grid"])
    frame["symbol"] = [f"S{i}" for i in range(len(rows))]
    frame["timeframe"] = "1min"
    frame["session_date"] = pd.Timestamp("2024-06-03", tz="UTC")
    frame["records"] = frame["present"] + frame["off_grid"]
    frame["flagged"] = frame["present"] - frame["valid"] + frame["off_grid"]
    frame["missing"] = frame["expected"] - frame["present"]
    return frame


def test_symbol_day_score_is_valid_over_expected_plus_off_grid() -> None:
    days = score_symbol_days(coverage([(390, 390, 390, 0), (390, 351, 312, 0), (210, 210, 210, 42), (0, 0, 0, 3)]))
    assert days["score"].tolist() == pytest.approx([1.0, 0.8, 210 / 252, 0.0])


def test_batch_score_is_bar_weighted() -> None:
    assert batch_score(coverage([(390, 390, 390, 0), (210, 0, 0, 0)])) == pytest.approx(390 / 600)


def test_nothing_expected_and_nothing_received_scores_one() -> None:
    assert batch_score(coverage([])) == 1.0


def test_clean_batch_scores_one_with_no_reasons() -> None:
    report = quality_report(validate_bars(session_bars("AAPL", "2024-06-03", "2024-06-04")))
    assert report.score == 1.0 and not report.below_threshold and report.reasons == []
    assert (report.expected, report.valid, report.missing) == (780, 780, 0)


def test_missing_and_flagged_bars_lower_the_score_and_are_explained() -> None:
    frame = session_bars("AAPL", "2024-06-03", "2024-06-03")
    frame = frame.drop(index=range(0, 78)).reset_index(drop=True)  # 20 % of the session missing
    frame.loc[:9, "high"] = 1.0  # ten bars with high below open/close
    report = quality_report(validate_bars(frame, mode="lenient"), min_quality_score=0.8)
    assert report.score == pytest.approx((312 - 10) / 390)
    assert report.below_threshold
    assert report.reasons[0].startswith("quality score 0.7744 is below the minimum 0.80")
    assert "20.0% of expected bars are missing (78 of 390)" in report.reasons[1]
    assert "AAPL 1min 2024-06-03 (78 missing)" in report.reasons[1]
    assert report.reasons[2].startswith("10 record(s)") and "ohlc_inconsistent" in report.reasons[2]


def test_mode_does_not_change_the_score() -> None:
    frame = session_bars("AAPL", "2024-06-03", "2024-06-03")
    frame.loc[:9, "low"] = -1.0
    strict = quality_report(validate_bars(frame, mode="strict"))
    lenient = quality_report(validate_bars(frame, mode="lenient"))
    assert strict.score == lenient.score == pytest.approx(380 / 390)
    assert (strict.rejected, lenient.rejected) == (10, 0)


def test_threshold_is_an_argument() -> None:
    frame = session_bars("AAPL", "2024-06-03", "2024-06-03").iloc[:351]  # 0.9
    result = validate_bars(frame, start="2024-06-03", end="2024-06-03")
    assert not quality_report(result, min_quality_score=0.8).below_threshold
    assert quality_report(result, min_quality_score=0.95).below_threshold


def test_markdown_has_the_score_verdict_rules_reasons_and_worst_days() -> None:
    frame = pd.concat([session_bars("AAPL", "2024-06-03", "2024-06-03").iloc[:100], one("2024-07-04 15:00")])
    text = quality_report(validate_bars(frame, start="2024-06-03", end="2024-06-03")).to_markdown()
    assert "# Data quality report" in text and "**below threshold**" in text
    assert "| `outside_session` | 1 |" in text
    assert "- quality score" in text
    assert "| AAPL | 1min | 2024-07-04 | 0 | 0 | 0 | 1 | 1 | 0.0000 |" in text


def test_table_rows_are_plain_values_worst_first() -> None:
    frame = pd.concat(
        [session_bars("AAPL", "2024-06-03", "2024-06-03"), session_bars("MSFT", "2024-06-03", "2024-06-03").iloc[:195]]
    )
    table = quality_report(validate_bars(frame, start="2024-06-03", end="2024-06-03")).to_table()
    assert [row["symbol"] for row in table] == ["MSFT", "AAPL"]
    assert table[0] == {
        "symbol": "MSFT",
        "timeframe": "1min",
        "session_date": "2024-06-03",
        "expected": 390,
        "present": 195,
        "valid": 195,
        "missing": 195,
        "flagged": 0,
        "off_grid": 0,
        "score": 0.5,
    }
    assert all(type(value) in (str, int, float) for row in table for value in row.values())


def test_a_report_over_several_validations_equals_the_report_over_their_rows_together() -> None:
    from quality.score import combined_quality_report
    from quality.validate import ValidationResult

    clean = session_bars("AAPL", "2024-06-03", "2024-06-04")
    flawed = session_bars("MSFT", "2024-06-03", "2024-06-03").drop(index=range(0, 39)).reset_index(drop=True)
    flawed.loc[:4, "low"] = -1.0  # five bars rejected in strict mode
    parts = [validate_bars(clean), validate_bars(flawed, start="2024-06-03", end="2024-06-03")]
    together = ValidationResult(
        accepted=pd.concat([p.accepted for p in parts], ignore_index=True),
        rejected=pd.concat([p.rejected for p in parts], ignore_index=True),
        coverage=pd.concat([p.coverage for p in parts], ignore_index=True),
        rule_counts={k: sum(p.rule_counts.get(k, 0) for p in parts) for k in parts[0].rule_counts},
        mode=parts[0].mode,
        records=sum(p.records for p in parts),
    )
    combined, merged = (
        combined_quality_report(parts, min_quality_score=0.99),
        quality_report(together, min_quality_score=0.99),
    )
    assert (combined.accepted, combined.rejected, combined.records) == (
        merged.accepted,
        merged.rejected,
        merged.records,
    )
    assert combined.rejected == 5 and combined.accepted == 780 + 390 - 39 - 5
    assert combined.score == merged.score < 1.0 and combined.reasons == merged.reasons and combined.reasons
    assert combined.rule_counts == merged.rule_counts and combined.symbol_days.equals(merged.symbol_days)
    assert combined.to_markdown() == merged.to_markdown()
