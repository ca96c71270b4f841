"""The flows' typed summaries: the dicts the flows return, read back for a parent flow, and the
run metrics they state (the same as those read from the dicts)."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.metrics import run_metrics
from tasks.collection import SymbolCollection
from tasks.features import FeaturesSummary
from tasks.historical import HistoricalSummary, RefetchedChunk
from tasks.ingestion import IngestSummary
from tasks.pending import ProcessSummary
from tasks.pipeline import PipelineSummary
from tasks.processing import SymbolProcessing

FINISHED = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)


def processed(symbol: str, records: int, rejected: int = 0, quality: float | None = 1.0) -> SymbolProcessing:
    accepted = records - rejected
    return SymbolProcessing(
        symbol, pages=1, records=records, accepted=accepted, rejected=rejected, inserted=accepted, quality_score=quality
    )


def ingest_summary(run_id: str = "run-1") -> IngestSummary:
    return IngestSummary(
        run_id,
        "polygon",
        "market_data",
        "1day",
        collected=[
            SymbolCollection("AAPL", pages=1, records=600),
            SymbolCollection("MSFT", pages=1, records=400, dead_letter_ids=[7, 8]),
            SymbolCollection("BAD", error="404"),
        ],
        processed=[processed("AAPL", 600, rejected=6), processed("MSFT", 400)],
        quality_score=0.99,
        seconds=4.0,
    )


def pipeline_summary() -> PipelineSummary:
    return PipelineSummary(
        "pipe-1",
        ["ingestion", "processing", "historical", "features"],
        "batch",
        ingestion=[ingest_summary(), ingest_summary("run-2")],
        processing=[ProcessSummary("p", [processed("TSLA", 10, rejected=2, quality=0.5)], quality_score=0.5)],
        historical=[HistoricalSummary("1day", 1, 3, [RefetchedChunk("A", "2026-01-05", "2026-01-07", 3, 30, "")], 0)],
        features=[FeaturesSummary("f", "v1", "1day")],
        seconds=10.0,
    )


def test_ingest_summary_dict_reads_back_the_same() -> None:
    summary = ingest_summary().to_dict()
    assert summary["failed"] == ["BAD"]
    assert IngestSummary.from_dict(summary).to_dict() == summary


def test_pipeline_totals_count_processing_and_the_historical_refetches() -> None:
    summary = pipeline_summary().to_dict()
    assert (summary["records_ingested"], summary["records_stored"], summary["rejected"]) == (2000, 8 + 30, 2)
    assert summary["quality_score"] == 0.5
    assert HistoricalSummary.from_dict(summary["historical"][0]).to_dict() == summary["historical"][0]
    assert ProcessSummary.from_dict(summary["processing"][0]).symbols == [processed("TSLA", 10, 2, 0.5)]


def test_typed_summaries_state_the_metrics_their_dicts_give() -> None:
    ingest, process = ingest_summary(), ProcessSummary("p", [processed("A", 300, quality=0.5)], seconds=1.0)
    features = FeaturesSummary("f", "v1", "1day", seconds=2.0)
    for typed, flow in (
        (ingest, "ingest"),
        (process, "process"),
        (features, "features"),
        (pipeline_summary(), "pipeline"),
    ):
        assert run_metrics(typed, flow, finished_at=FINISHED) == run_metrics(typed.record(), flow, finished_at=FINISHED)
    metrics = run_metrics(ingest, "ingest", finished_at=FINISHED)
    assert (metrics.status, metrics.dead_lettered, metrics.details["failed_symbols"]) == ("partial", 2, ["BAD"])


def test_a_symbol_whose_processing_failed_is_failed_and_the_run_partial() -> None:
    summary = ingest_summary()
    summary.processed.append(SymbolProcessing("MSFT", error="processing failed: DataQualityError: bad page"))
    assert summary.to_dict()["failed"] == ["BAD", "MSFT"]
    summary.collected = summary.collected[:2]  # BAD's collection did not fail: MSFT's processing still did
    assert run_metrics(summary, "ingest", finished_at=FINISHED).status == "partial"
