"""The historical stage's work: which sessions of a bar series are missing against the NYSE
calendar (in the hot store or tiered to the lake), grouped into refetch chunks, and the stage's
summary. The refetching is the flow's: an ``ingest`` sub-flow per chunk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from core.calendar import nyse_sessions
from core.settings import Settings
from pipeline.plan import GapRange, gap_ranges, missing_sessions, sessions_per_request
from storage.router import StorageRouter


def stored_sessions(settings: Settings, symbols: list[str], timeframe: str, start: date, end: date) -> pd.DataFrame:
    """Bars stored per symbol and New York session date, in the hot store or tiered to the lake."""
    with StorageRouter.connect(settings) as router:
        return router.bars_per_session(symbols, start, end + timedelta(days=1), timeframe)


def last_closed_session(end: date, now: datetime) -> date:
    """``end``, or the last session before it whose close has passed (a session still trading is
    not a gap)."""
    recent = nyse_sessions(end - timedelta(days=10), end)
    closed = recent.dates[recent.close_ns <= pd.Timestamp(now).value]
    return pd.Timestamp(closed[-1]).date() if len(closed) else end - timedelta(days=10)


def find_gaps(settings: Settings, symbols: list[str], timeframe: str, start: date, end: date) -> list[GapRange]:
    end = min(end, last_closed_session(end, datetime.now(UTC)))
    schedule = nyse_sessions(start, end)
    stored = stored_sessions(settings, symbols, timeframe, start, end)
    missing = missing_sessions(stored, schedule, timeframe, symbols)
    return gap_ranges(missing, schedule, sessions_per_request(timeframe))


def symbol_sessions(gaps: list[GapRange]) -> int:
    """Symbol-sessions the gaps miss."""
    return sum(g.sessions * len(g.symbols) for g in gaps)


@dataclass(frozen=True)
class RefetchedChunk:
    """One gap refetched (a row of the ``historical-chunks`` artifact)."""

    symbols: str  # comma-separated
    start: str  # ISO dates
    end: str
    sessions: int
    bars_stored: int
    failed: str  # comma-separated symbols the refetch could not collect

    @classmethod
    def of(cls, gap: GapRange, bars_stored: int, failed: list[str]) -> RefetchedChunk:
        return cls(
            ",".join(gap.symbols),
            gap.start.isoformat(),
            gap.end.isoformat(),
            gap.sessions,
            bars_stored,
            ",".join(failed),
        )


@dataclass
class HistoricalSummary:
    """What a ``historical`` run did; :meth:`to_dict` is what the flow returns."""

    timeframe: str
    gaps: int = 0
    symbol_sessions: int = 0
    chunks: list[RefetchedChunk] = field(default_factory=list)
    remaining_symbol_sessions: int | None = None  # None: there was nothing to repair

    @classmethod
    def from_dict(cls, summary: Mapping[str, Any]) -> HistoricalSummary:
        """A ``historical`` sub-flow's result, typed again."""
        chunks = [RefetchedChunk(**c) for c in summary["chunks"]]
        return cls(
            summary["timeframe"],
            summary["gaps"],
            summary["symbol_sessions"],
            chunks,
            summary.get("remaining_symbol_sessions"),
        )

    @property
    def bars_stored(self) -> int:
        return sum(c.bars_stored for c in self.chunks)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "timeframe": self.timeframe,
            "gaps": self.gaps,
            "symbol_sessions": self.symbol_sessions,
            "chunks": [asdict(c) for c in self.chunks],
        }
        if self.remaining_symbol_sessions is not None:
            out["remaining_symbol_sessions"] = self.remaining_symbol_sessions
        return out
