"""``run_pipeline``'s parts below the flow: which stages a request asks for, the tags of a stage's
sub-flow runs, and the pipeline's summary over its stages' summaries."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import RequestError
from pipeline.metrics import RunFigures
from tasks.features import FeaturesSummary
from tasks.historical import HistoricalSummary
from tasks.ingestion import IngestSummary
from tasks.pending import ProcessSummary

STAGES = ("ingestion", "processing", "historical", "features")
MODES = ("batch", "real_time", "hybrid")


def parse_stages(stages: list[str] | None, mode: str) -> list[str]:
    """Requested stages in pipeline order; refuses unknown stages and the streaming modes."""
    if mode not in MODES:
        raise RequestError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if mode != "batch":
        raise RequestError(
            f"mode {mode!r} needs real-time streaming, which is not available yet (it arrives with the "
            "streaming work); use mode 'batch'"
        )
    if stages is not None and not stages:
        raise RequestError(f"the stage list is empty: name at least one of {', '.join(STAGES)}")
    unknown = [s for s in (stages or []) if s not in STAGES]
    if unknown:
        raise RequestError(f"unknown stage(s) {', '.join(map(repr, unknown))}: use any of {', '.join(STAGES)}")
    return [s for s in STAGES if stages is None or s in stages]


def run_tags(source: str, dataset: str, timeframe: str | None = None) -> list[str]:
    """Tags of a stage's sub-flow run (and its task runs): filterable in the UI and by automations."""
    return [f"source:{source}", f"dataset:{dataset}"] + ([f"timeframe:{timeframe}"] if timeframe else [])


@dataclass
class PipelineSummary:
    """What a ``pipeline`` run did: its stages' summaries and their totals. :meth:`to_dict` is what
    the flow returns (and what is recorded)."""

    run_id: str
    stages: list[str]
    mode: str
    ingestion: list[IngestSummary] = field(default_factory=list)
    processing: list[ProcessSummary] = field(default_factory=list)
    historical: list[HistoricalSummary] = field(default_factory=list)
    features: list[FeaturesSummary] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def records_ingested(self) -> int:
        return sum(run.records_ingested for run in self.ingestion)

    @property
    def records_stored(self) -> int:
        """Bars and actions stored by the processing stage and by the historical stage's refetches."""
        return sum(run.records_stored for run in self.processing) + sum(run.bars_stored for run in self.historical)

    @property
    def feature_rows_stored(self) -> int:
        return sum(run.records_stored for run in self.features)

    @property
    def rejected(self) -> int:
        return sum(run.rejected for run in self.processing)

    @property
    def quality_score(self) -> float | None:
        """The worst processing run's score (None: nothing was scored)."""
        scores = [run.quality_score for run in self.processing if run.quality_score is not None]
        return min(scores) if scores else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "stages": self.stages,
            "mode": self.mode,
            "ingestion": [run.to_dict() for run in self.ingestion],
            "processing": [run.to_dict() for run in self.processing],
            "historical": [run.to_dict() for run in self.historical],
            "features": [run.to_dict() for run in self.features],
            "records_ingested": self.records_ingested,
            "records_stored": self.records_stored,
            "feature_rows_stored": self.feature_rows_stored,
            "rejected": self.rejected,
            "quality_score": self.quality_score,
            "seconds": self.seconds,
        }

    def record(self) -> dict[str, Any]:
        return self.to_dict()

    def figures(self) -> RunFigures:
        """The stages' per-symbol rows added up, with the pipeline's own totals (which count the
        historical refetches) for what is ingested, stored and rejected."""
        collected = [c for run in self.ingestion for c in run.collected]
        processed = [p for run in self.ingestion for p in run.processed] + [
            p for run in self.processing for p in run.symbols
        ]
        rows = RunFigures.of_symbols(collected, processed, quality_score=self.quality_score, stages=self.stages)
        return replace(
            rows, records_ingested=self.records_ingested, records_stored=self.records_stored, rejected=self.rejected
        )
