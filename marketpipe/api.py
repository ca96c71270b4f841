"""The seed's Python API: ``DataPipelineManager``, ``DataPipelineOrchestrator``, ``PipelineMode``,
``DataFlowConfig``, ``PipelineMetrics`` and ``StorageRouter`` (reads across the hot store and the lake,
:mod:`storage.router`), so the seed's usage examples run with only their import
lines changed::

    from marketpipe.api import DataPipelineManager, DataPipelineOrchestrator

    orchestrator = DataPipelineOrchestrator()            # or (settings) / (overrides={...})
    pipeline_manager = DataPipelineManager(orchestrator)
    await pipeline_manager.initialize()                  # is the stack up? (`marketpipe up`)
    await pipeline_manager.start()
    result = await pipeline_manager.run_pipeline(stages=["ingestion"])

A thin facade: runs are the Prefect flows (``flows.pipeline_flow.pipeline_flow``, ``flows.ingestion.
ingest_flow``), requests are checked by the flows' own gates before a run is created, metrics come
from ``pipeline.metrics`` and health from ``pipeline.health``. What it adds is the
lifecycle the seed describes (initialize, start, stop, status) and, for a run it triggered, a row in
``ops.pipeline_runs`` if the flow did not record one itself (never a second row: runs are keyed by
the Prefect flow run id).

Settings: the facade's own checks use the ``settings`` given (or loads them with ``overrides``).
Flows rebuild their settings in the flow run from the usual sources plus ``overrides`` (the only
part that travels as a flow parameter: secrets must never become Prefect parameters), so pass
changes as ``overrides`` when the flows must see them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.errors import ConfigurationError, RequestError, ServiceError
from core.settings import Settings, load_settings
from pipeline.metrics import PipelineMetrics

__all__ = [
    "STREAMING_UNAVAILABLE",
    "DataFlowConfig",
    "DataPipelineManager",
    "DataPipelineOrchestrator",
    "PipelineMetrics",
    "PipelineMode",
    "StorageRouter",
    "StreamingUnavailableError",
]

if TYPE_CHECKING:
    from storage.router import StorageRouter


def __getattr__(name: str) -> Any:
    """``StorageRouter`` is imported on first use: it brings the feature engine (numba) along."""
    if name == "StorageRouter":
        from storage.router import StorageRouter

        return StorageRouter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


STREAMING_UNAVAILABLE = (
    "real-time streaming is not available yet (it arrives with the streaming work); use PipelineMode.BATCH"
)
DEFAULT_METRICS_WINDOW = timedelta(hours=24)


class PipelineMode(StrEnum):
    BATCH = "batch"
    REAL_TIME = "real_time"
    HYBRID = "hybrid"


class StreamingUnavailableError(RequestError):
    """A streaming mode was asked for before the streaming work landed."""

    def __init__(self, message: str = STREAMING_UNAVAILABLE) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class DataFlowConfig:
    """How data flows: the mode, records per batch, and the interval of the streaming modes."""

    mode: PipelineMode = PipelineMode.BATCH
    batch_size: int = 50
    interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", PipelineMode(self.mode))
        except ValueError as exc:
            modes = ", ".join(m.value for m in PipelineMode)
            raise RequestError(f"unknown pipeline mode {self.mode!r}: use one of {modes}") from exc
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise RequestError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.interval_seconds > 0:
            raise RequestError(f"interval_seconds must be positive, got {self.interval_seconds!r}")


def _as_utc(value: Any) -> Any:
    """Python datetimes as the seed makes them (``datetime.now()``: naive local time) -> aware UTC.
    Dates and text pass through to the request gate (where naive text means UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)  # naive: local time, as datetime.now() returns it
    return value


def _since(window: datetime | timedelta | None) -> datetime | None:
    if isinstance(window, timedelta):
        return datetime.now(UTC) - window
    return window


class DataPipelineOrchestrator:
    """Runs the pipeline's flows against the configured Prefect server; reads metrics and health."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        flow_config: DataFlowConfig | None = None,
    ) -> None:
        self.overrides = dict(overrides or {})
        self.settings = settings or load_settings(overrides=self.overrides)
        self.flow_config = flow_config or DataFlowConfig()

    def __repr__(self) -> str:
        return f"DataPipelineOrchestrator(mode={self.flow_config.mode.value!r}, overrides={self.overrides!r})"

    def configure(self, flow_config: DataFlowConfig) -> None:
        self.flow_config = flow_config

    # -- runs ---------------------------------------------------------------------------------
    async def run_pipeline(
        self,
        stages: Sequence[str] | None = None,
        mode: PipelineMode | str | None = None,
        symbols: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """``flows.pipeline_flow.pipeline_flow``: the stages (default all), in the seed's order."""
        from flows.pipeline_flow import pipeline_flow
        from tasks.pipeline import parse_stages

        chosen_mode = PipelineMode(mode or self.flow_config.mode)
        if chosen_mode is not PipelineMode.BATCH:
            raise StreamingUnavailableError()
        stage_list = list(stages) if stages is not None else None
        parse_stages(stage_list, chosen_mode.value)  # refused before a flow run exists
        return await self._run_flow(
            "pipeline",
            pipeline_flow,
            stages=stage_list,
            mode=chosen_mode.value,
            symbols=list(symbols) if symbols else None,
            overrides=self.overrides or None,
        )

    async def run_ingestion(
        self,
        data_type: str = "market_data",
        symbols: Sequence[str] | str | None = None,
        start_date: datetime | date | str | None = None,
        end_date: datetime | date | str | None = None,
        timeframe: str = "1day",
        source: str | None = None,
        *,
        incremental: bool = True,
    ) -> dict[str, Any]:
        """``flows.ingestion.ingest_flow`` for one request: collected, then processed into the hot store."""
        from flows.ingestion import ingest_flow
        from pipeline.request import parse_ingest_request

        request = parse_ingest_request(
            data_type=data_type,
            symbols=symbols,
            start_date=_as_utc(start_date),
            end_date=_as_utc(end_date),
            timeframe=timeframe,
            source=source or self.settings.pipeline.source,
        )
        return await self._run_flow(
            "ingest",
            ingest_flow,
            symbols=list(request.symbols),
            start_date=request.start.isoformat(),
            end_date=request.end.isoformat(),
            data_type=request.data_type,
            timeframe=request.timeframe,
            source=request.source,
            incremental=incremental,
            overrides=self.overrides or None,
        )

    async def start_real_time_flow(self, symbols: Sequence[str], config: DataFlowConfig | None = None) -> None:
        """Live streaming of ``symbols``: not available until the streaming work lands."""
        raise StreamingUnavailableError()

    async def _run_flow(self, flow_name: str, flow_fn: Callable[..., Awaitable[Any]], **params: Any) -> dict[str, Any]:
        began = time.monotonic()
        with self._prefect_api():
            state = await flow_fn(**params, return_state=True)
        run_id = str(state.state_details.flow_run_id) if state.state_details.flow_run_id else None
        try:
            summary = await state.aresult()
        except (RequestError, ConfigurationError):
            raise  # the user's mistake, not a pipeline failure: nothing to record
        except Exception as exc:
            failed = {"run_id": run_id, "error": f"{type(exc).__name__}: {exc}", "seconds": time.monotonic() - began}
            await asyncio.to_thread(self._ensure_recorded, failed, flow_name)
            raise
        await asyncio.to_thread(self._ensure_recorded, {"run_id": run_id, **summary}, flow_name)
        return summary

    def _ensure_recorded(self, summary: Mapping[str, Any], flow_name: str) -> None:
        """The run's metrics row, unless its flow already wrote one."""
        from db.connect import database_connection
        from pipeline.metrics import record_run, run_metrics

        if not summary.get("run_id"):
            return
        with database_connection(self.settings) as conn:
            record_run(conn, run_metrics(summary, flow_name), replace=False)

    @contextmanager
    def _prefect_api(self) -> Iterator[None]:
        """Flows report to the configured Prefect server (not an ephemeral one), without touching
        the process environment."""
        from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

        url = self.settings.prefect.resolved_api_url
        if get_current_settings().api.url == url:
            yield
            return
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield

    # -- metrics and health ---------------------------------------------------------------------
    def stack_issues(self) -> list[str]:
        """What is down in the stack, as sentences (empty when everything the pipeline needs is up)."""
        from pipeline.health import component_issues
        from stack.supervisor import Stack

        return component_issues(Stack(self.settings).status(), self.settings)

    def metrics(self, since: datetime | timedelta | None = DEFAULT_METRICS_WINDOW) -> PipelineMetrics:
        """Totals of the runs recorded since ``since`` (a time, a window back from now, or None: all)."""
        from db.connect import database_connection
        from pipeline.metrics import aggregate_metrics
        from storage.lake import Lake

        with database_connection(self.settings) as conn:
            return aggregate_metrics(conn, _since(since), lake=Lake.from_settings(self.settings.lake))

    def health(self) -> dict[str, Any]:
        from pipeline.health import check_health
        from stack.supervisor import Stack

        return check_health(self.settings, status=Stack(self.settings).status())

    def last_recorded_run(self) -> dict[str, Any] | None:
        from db.connect import database_connection
        from pipeline.metrics import read_recent_runs

        with database_connection(self.settings) as conn:
            runs = read_recent_runs(conn, 1, top_level_only=True)
        if not runs:
            return None
        run = runs[0]
        return {
            "run_id": run.run_id,
            "flow": run.flow,
            "status": run.status,
            "finished_at": run.finished_at.isoformat(),
            "records_ingested": run.records_ingested,
            "records_stored": run.records_stored,
            "quality_score": run.quality_score,
        }


@dataclass
class _RunRecord:
    kind: str
    started_at: datetime
    stages: list[str] | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        s = self.summary
        return {
            "kind": self.kind,
            "stages": self.stages,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": self.seconds,
            "records_ingested": s.get("records_ingested", sum(c.get("records", 0) for c in s.get("collected", []))),
            "records_stored": s.get("records_stored"),
            "rejected": s.get("rejected"),
            "quality_score": s.get("quality_score"),
            "error": self.error,
        }


class DataPipelineManager:
    """The seed's lifecycle around the orchestrator: initialize, start, run, status, metrics, health.

    ``status``: ``stopped`` (not started, or stopped), ``idle`` (started, nothing running),
    ``running`` (a run in progress), ``error`` (initialize found the stack down, or the last run
    failed; the next successful run clears it).
    """

    def __init__(
        self,
        orchestrator: DataPipelineOrchestrator | None = None,
        *,
        settings: Settings | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.orchestrator = orchestrator or DataPipelineOrchestrator(settings, overrides=overrides)
        self.initialized = False
        self.started = False
        self._active: list[_RunRecord] = []
        self._last: _RunRecord | None = None
        self._completed = 0
        self._failed = 0
        self._error: str | None = None

    @property
    def settings(self) -> Settings:
        return self.orchestrator.settings

    # -- lifecycle ------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Check that everything the pipeline needs is up; a ServiceError names what is down."""
        issues = await asyncio.to_thread(self.orchestrator.stack_issues)
        if issues:
            self._error = "the pipeline cannot start: " + "; ".join(issues)
            raise ServiceError(self._error)
        self.initialized, self._error = True, None

    async def start(self) -> None:
        if not self.initialized:
            await self.initialize()
        if self.orchestrator.flow_config.mode is not PipelineMode.BATCH:
            raise StreamingUnavailableError()
        self.started = True

    async def stop(self) -> None:
        self.started = False

    # -- runs -------------------------------------------------------------------------------------
    async def run_pipeline(
        self,
        stages: Sequence[str] | None = None,
        mode: PipelineMode | str | None = None,
        symbols: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        return await self._track(
            _RunRecord("pipeline", datetime.now(UTC), list(stages) if stages is not None else None),
            self.orchestrator.run_pipeline(stages=stages, mode=mode, symbols=symbols),
        )

    async def run_ingestion(
        self,
        data_type: str = "market_data",
        symbols: Sequence[str] | str | None = None,
        start_date: datetime | date | str | None = None,
        end_date: datetime | date | str | None = None,
        timeframe: str = "1day",
        source: str | None = None,
        *,
        incremental: bool = True,
    ) -> dict[str, Any]:
        run = self.orchestrator.run_ingestion(
            data_type, symbols, start_date, end_date, timeframe, source, incremental=incremental
        )
        return await self._track(_RunRecord("ingestion", datetime.now(UTC), ["ingestion", "processing"]), run)

    async def _track(self, record: _RunRecord, run: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        self._active.append(record)
        try:
            record.summary = await run
        except (RequestError, ConfigurationError):
            raise  # refused before anything ran: the pipeline's state is unchanged
        except BaseException as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            self._failed += 1
            self._error = record.error
            raise
        else:
            self._completed += 1
            self._error = None
        finally:
            self._active.remove(record)
            record.finished_at = datetime.now(UTC)
            record.seconds = (record.finished_at - record.started_at).total_seconds()
            if record.error is not None or record.summary:
                self._last = record
        return record.summary

    # -- the seed's monitoring --------------------------------------------------------------------
    async def get_pipeline_status(self) -> dict[str, Any]:
        if self._active:
            status = "running"
        elif self._error is not None:
            status = "error"
        else:
            status = "idle" if self.started else "stopped"
        try:
            recorded = await asyncio.to_thread(self.orchestrator.last_recorded_run)
        except ServiceError:
            recorded = None  # the database is down: the status still answers
        return {
            "status": status,
            "initialized": self.initialized,
            "started": self.started,
            "mode": self.orchestrator.flow_config.mode.value,
            "active_runs": [r.to_dict() for r in self._active],
            "runs_completed": self._completed,
            "runs_failed": self._failed,
            "last_run": self._last.to_dict() if self._last else None,
            "last_recorded_run": recorded,
            "error": self._error,
        }

    async def get_pipeline_metrics(
        self, since: datetime | timedelta | None = DEFAULT_METRICS_WINDOW
    ) -> PipelineMetrics:
        """Totals of the runs of the last 24 hours (``since``: another window, a time, or None for all)."""
        return await asyncio.to_thread(self.orchestrator.metrics, since)

    async def trigger_health_check(self) -> dict[str, Any]:
        """``healthy``, ``issues`` and what was checked (see ``pipeline.health``)."""
        return await asyncio.to_thread(self.orchestrator.health)
