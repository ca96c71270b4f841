"""Run metrics computed from flow summaries (pure), and the terminal table."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.metrics import RunMetrics, format_metrics_table, run_metrics
from tasks.collection import SymbolCollection
from tasks.ingestion import IngestSummary
from tasks.processing import SymbolProcessing

FINISHED = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)


def collected(symbol: str, records: int, *, dead: int = 0, error: str | None = None) -> dict:
    return {
        "symbol": symbol,
        "pages": 1,
        "records": records,
        "raw_keys": [],
        "dead_letter_ids": list(range(dead)),
        "error": error,
    }


def processed(symbol: str, records: int, rejected: int = 0, quality: float | None = 1.0, error: str | None = None):
    accepted = records - rejected
    return {
        "symbol": symbol,
        "pages": 1,
        "records": records,
        "accepted": accepted,
        "rejected": rejected,
        "inserted": accepted,
        "updated": 0,
        "unchanged": 0,
        "quality_score": quality,
        "error": error,
    }


def ingest_summary(**extra) -> dict:
    """An ingest run's summary as its flow returns it: per-symbol rows only, no totals and no
    batch quality score (the figures below are computed from the rows)."""
    summary = {
        "run_id": "run-1",
        "source": "polygon",
        "data_type": "market_data",
        "timeframe": "1day",
        "collected": [collected("AAPL", 600), collected("MSFT", 400, dead=2)],
        "up_to_date": [],
        "failed": [],
        "processed": [processed("AAPL", 600, rejected=6, quality=0.98), processed("MSFT", 400, quality=1.0)],
        "quality_score": None,
        "quality_reasons": [],
        "seconds": 4.0,
    }
    return {**summary, **extra}


def test_ingest_summary_adds_up_per_symbol_rows() -> None:
    m = run_metrics(ingest_summary(), "ingest", finished_at=FINISHED)
    assert (m.run_id, m.flow, m.status) == ("run-1", "ingest", "completed")
    assert (m.records_ingested, m.records_stored, m.rejected, m.dead_lettered) == (1000, 994, 6, 2)
    assert m.quality_score == pytest.approx((600 * 0.98 + 400 * 1.0) / 1000)  # weighted by records: 0.988
    assert m.throughput_records_per_second == 250.0  # 1000 records / 4 s
    assert m.processing_latency_seconds == 4.0
    assert m.started_at == FINISHED - timedelta(seconds=4)
    assert m.error_rate == 0.0
    assert m.details["inserted"] == 994 and m.details["source"] == "polygon"
    assert m.details["symbol_tasks"] == 4 and m.details["failed_symbols"] == []


def test_typed_summary_counts_updates_as_stored_and_unchanged_rows_not() -> None:
    summary = IngestSummary(
        "run-typed",
        "alpaca",
        "market_data",
        "1min",
        collected=[SymbolCollection("A", records=50, dead_letter_ids=[7]), SymbolCollection("B", records=30)],
        processed=[
            SymbolProcessing("A", records=50, accepted=48, rejected=2, inserted=10, updated=5, unchanged=33),
            SymbolProcessing("B", records=30, accepted=30, inserted=0, updated=0, unchanged=30, quality_score=0.5),
        ],
        seconds=2.0,
    )
    m = run_metrics(summary, "ingest", finished_at=FINISHED)
    assert (m.records_ingested, m.records_stored, m.rejected, m.dead_lettered) == (80, 15, 2, 1)
    assert m.details["unchanged"] == 63 and m.details["updated"] == 5
    assert m.quality_score == 0.5  # only B was scored: the mean of the scored rows
    assert m.throughput_records_per_second == 40.0


def test_a_batch_quality_score_wins_over_the_symbols_mean() -> None:
    summary = ingest_summary(quality_score=0.5, quality_reasons=["3 bars with high < low"])
    m = run_metrics(summary, "ingest")
    assert m.quality_score == 0.5 and m.details["quality_reasons"] == ["3 bars with high < low"]


def test_one_failed_symbol_makes_a_partial_run_with_its_error_rate() -> None:
    summary = ingest_summary(
        collected=[collected("AAPL", 600), collected("BAD", 0, error="404")],
        processed=[processed("AAPL", 600)],
        failed=["BAD"],
    )
    m = run_metrics(summary, "ingest", finished_at=FINISHED)
    assert m.status == "partial"
    assert m.error_rate == pytest.approx(1 / 3)  # 3 symbol tasks, 1 failed
    assert m.details["failed_symbols"] == ["BAD"]


def test_every_task_failing_is_a_failed_run() -> None:
    summary = ingest_summary(collected=[collected("BAD", 0, error="401")], processed=[])
    assert run_metrics(summary, "ingest").status == "failed"


def test_pipeline_summary_top_level_figures_win_over_nested_rows() -> None:
    pipeline = {
        "run_id": "pipe-1",
        "stages": ["ingestion", "processing", "historical"],
        "ingestion": [ingest_summary(), ingest_summary(run_id="run-2")],
        "processing": [{"symbols": [processed("TSLA", 10, quality=0.5)], "quality_score": 0.5}],
        "historical": {"ingestion": [ingest_summary(run_id="run-3")]},
        "records_ingested": 3000,
        "records_stored": 2990,
        "rejected": 10,
        "quality_score": 0.97,
        "seconds": 10.0,
    }
    m = run_metrics(pipeline, "pipeline", finished_at=FINISHED)
    assert (m.records_ingested, m.records_stored, m.rejected, m.quality_score) == (3000, 2990, 10, 0.97)
    assert m.throughput_records_per_second == 300.0
    assert m.dead_lettered == 6  # no total given: 2 per nested ingest summary, three of them
    assert m.details["symbol_tasks"] == 13  # 3 x (2 collected + 2 processed) + 1 processed
    assert m.details["stages"] == ["ingestion", "processing", "historical"]


def test_pipeline_summary_without_totals_adds_up_every_stage() -> None:
    pipeline = {
        "run_id": "pipe-2",
        "ingestion": [ingest_summary(), ingest_summary(run_id="run-2")],
        "processing": [{"symbols": [processed("TSLA", 100, rejected=20, quality=0.5)]}],
        "historical": {"ingestion": [ingest_summary(run_id="run-3", collected=[collected("NVDA", 5, error="500")])]},
        "seconds": 8.0,
    }
    m = run_metrics(pipeline, "pipeline", finished_at=FINISHED)
    # ingested: 2 x 1000 + 5; stored: 3 x 994 + 80; rejected: 3 x 6 + 20; dead: 2 + 2
    assert (m.records_ingested, m.records_stored, m.rejected, m.dead_lettered) == (2005, 3062, 38, 4)
    records = [600, 400] * 3 + [100]
    scores = [0.98, 1.0] * 3 + [0.5]
    assert m.quality_score == pytest.approx(sum(r * q for r, q in zip(records, scores, strict=True)) / sum(records))
    assert m.throughput_records_per_second == pytest.approx(2005 / 8)
    assert m.status == "partial" and m.details["failed_symbols"] == ["NVDA"]
    assert m.error_rate == pytest.approx(1 / 12)  # 4 + 4 + 3 symbol tasks of ingestion, 1 of processing


def test_quality_is_weighted_by_records_when_only_symbols_scored() -> None:
    summary = {
        "run_id": "p",
        "symbols": [processed("A", 300, quality=0.5), processed("B", 100, quality=1.0)],
        "seconds": 1.0,
    }
    assert run_metrics(summary, "process").quality_score == pytest.approx((0.5 * 300 + 1.0 * 100) / 400)


def test_zero_seconds_has_no_throughput_and_no_run_id_gets_one() -> None:
    m = run_metrics({"collected": [], "processed": [], "seconds": 0}, "ingest")
    assert m.throughput_records_per_second is None
    assert m.run_id and m.status == "completed" and m.error_rate == 0.0


def test_parent_run_id_is_kept() -> None:
    assert run_metrics(ingest_summary(), "ingest", parent_run_id="pipe-1").parent_run_id == "pipe-1"


def test_empty_flow_name_is_refused() -> None:
    with pytest.raises(ValueError, match="flow"):
        run_metrics(ingest_summary(), "")


def test_metrics_table_lists_runs_and_marks_sub_flows() -> None:
    top = run_metrics(ingest_summary(run_id="abcdef123456"), "pipeline", finished_at=FINISHED)
    child = RunMetrics(
        run_id="child-run",
        flow="ingest",
        parent_run_id="abcdef123456",
        started_at=FINISHED,
        finished_at=FINISHED,
        status="completed",
        quality_score=math.nan,
    )
    table = format_metrics_table([top, child]).splitlines()
    assert table[0].split()[:3] == ["finished", "(UTC)", "flow"]
    assert "2026-11-20 21:00:00" in table[2] and "1,000" in table[2] and "98.8%" in table[2] and "250.0" in table[2]
    assert "↳ ingest" in table[3] and "abcdef12" in table[2]
    assert table[0].index("flow") == table[2].index("pipeline") == table[3].index("↳")  # columns line up


def test_metrics_table_without_runs_says_what_to_do() -> None:
    assert "marketpipe run" in format_metrics_table([])
