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
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.errors import ConfigurationError, RequestError, ServiceError
from core.settings import Settings, load_settings
from pipeline.metrics import PipelineMetrics

__all__ = [
    "DataFlowConfig",
    "DataPipelineManager",
    "DataPipelineOrchestrator",
    "PipelineMetrics",
    "PipelineMode",
    "RealTimeStream",
    "StorageRouter",
]

if TYPE_CHECKING:
    from storage.router import StorageRouter


def __getattr__(name: str) -> Any:
    """``StorageRouter`` is imported on first use: it brings the feature engine (numba) along."""
    if name == "StorageRouter":
        from storage.router import StorageRouter

        return StorageRouter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DEFAULT_METRICS_WINDOW = timedelta(hours=24)


class PipelineMode(StrEnum):
    BATCH = "batch"
    REAL_TIME = "real_time"
    HYBRID = "hybrid"


STREAM_START_TIMEOUT_S = 60.0


class RealTimeStream:
    """A live stream started by :meth:`DataPipelineOrchestrator.start_real_time_flow`: the ``stream``
    flow run (:mod:`flows.streaming_flow`) in this process. ``await stream.stop()`` drains it (what
    was read is committed, open windows stored provisional) and returns its summary."""

    def __init__(self, source: str, symbols: Sequence[str], hybrid: bool, task: asyncio.Task, key: str) -> None:
        from streaming.service import local_stream

        self.source, self.symbols, self.hybrid = source, tuple(symbols), hybrid
        self._task, self._key = task, key
        self._local = local_stream(key)

    def __repr__(self) -> str:
        state = "stopped" if self._task.done() else "running"
        return f"RealTimeStream({self.source!r}, {list(self.symbols)!r}, hybrid={self.hybrid}, {state})"

    @property
    def running(self) -> bool:
        return not self._task.done()

    @property
    def flow_run_id(self) -> str | None:
        """The Prefect flow run hosting the stream (cancel it in the UI to drain and stop it)."""
        return self._local.flow_run_id

    @property
    def report(self) -> dict[str, Any]:
        """The stream's counters so far (messages, trades, bars, connects, catch-ups, ...)."""
        service = self._local.service
        return service.report.as_dict() if service is not None else {}

    async def wait(self) -> dict[str, Any]:
        """Until the stream ends on its own (cancelled in the UI, its duration up, an error)."""
        try:
            return await asyncio.shield(self._task)
        finally:
            if self._task.done():
                from streaming.service import release_local_stream

                release_local_stream(self._key)

    async def stop(self) -> dict[str, Any]:
        from streaming.service import release_local_stream

        self._local.stop.set()
        try:
            return await self._task
        finally:
            release_local_stream(self._key)


@dataclass(frozen=True)
class DataFlowConfig:
    """How data flows: the mode and, for the streaming modes (REAL_TIME, HYBRID), the bounds of the
    stream's micro-batches: one is committed once it holds ``batch_size`` messages or
    ``interval_seconds`` after its first frame was read (the ``streaming.batch_max_rows`` and
    ``streaming.batch_max_delay_seconds`` settings of the stream this facade starts). BATCH runs
    do not read them: their waves are ``collection.batch_size`` symbols, at most
    ``collection.max_parallel_symbols`` at once."""

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
        self.streams: list[RealTimeStream] = []  # streams started here, newest last

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
        if chosen_mode is PipelineMode.REAL_TIME:
            stream = await self.start_real_time_flow(symbols or self.settings.pipeline.symbols)
            return {"mode": chosen_mode.value, "stream": stream}
        stage_list = list(stages) if stages is not None else None
        parse_stages(stage_list, PipelineMode.BATCH.value)  # refused before a flow run exists
        summary = await self._run_flow(
            "pipeline",
            pipeline_flow,
            stages=stage_list,
            mode=PipelineMode.BATCH.value,
            symbols=list(symbols) if symbols else None,
            overrides=self.overrides or None,
        )
        if chosen_mode is PipelineMode.HYBRID:  # the batch caught up; the stream takes over from there
            config = replace(self.flow_config, mode=PipelineMode.HYBRID)
            stream = await self.start_real_time_flow(symbols or self.settings.pipeline.symbols, config)
            return {**summary, "mode": chosen_mode.value, "stream": stream}
        return summary

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
        from sources.factory import market_data_sources

        request = parse_ingest_request(
            data_type=data_type,
            symbols=symbols,
            start_date=_as_utc(start_date),
            end_date=_as_utc(end_date),
            timeframe=timeframe,
            source=source or self.settings.pipeline.source,
            known_sources=market_data_sources(self.settings),
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

    async def start_real_time_flow(
        self, symbols: Sequence[str], config: DataFlowConfig | None = None, *, source: str | None = None
    ) -> RealTimeStream:
        """Start streaming ``symbols`` (trades, quotes and minute bars) from ``source`` (default
        ``pipeline.source`` when it streams, else Polygon) into the hot store; returns once the
        stream is connected. ``config.mode`` HYBRID fills every gap over REST first (at start and
        after each reconnect); ``batch_size`` and ``interval_seconds`` bound each micro-batch (rows,
        seconds). The stream runs as the ``stream`` flow in this process until ``await stream.stop()``."""
        from flows.streaming_flow import stream_flow
        from streaming.service import SOURCES, StreamPlan, register_local_stream

        config = config or self.flow_config
        chosen = source or (self.settings.pipeline.source if self.settings.pipeline.source in SOURCES else "polygon")
        hybrid = config.mode is PipelineMode.HYBRID
        plan = StreamPlan.of(chosen, list(symbols), ("trades", "quotes", "bars"), hybrid=hybrid)  # refused here
        overrides = {
            **self.overrides,
            "streaming": {
                **dict(self.overrides.get("streaming", {})),
                "batch_max_rows": config.batch_size,
                "batch_max_delay_seconds": config.interval_seconds,
            },
        }
        key, local = register_local_stream()

        async def run() -> dict[str, Any]:
            with self._prefect_api():
                return await stream_flow(
                    source=plan.source,
                    symbols=list(plan.symbols),
                    datasets=list(plan.datasets),
                    hybrid=hybrid,
                    overrides=overrides,
                    stop_key=key,
                )

        task = asyncio.create_task(run())
        connected = asyncio.create_task(local.connected.wait())
        done, _ = await asyncio.wait(
            {task, connected}, timeout=STREAM_START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if connected not in done:
            connected.cancel()
            local.stop.set()
            if task in done:
                task.result()  # the stream's own error (a bad key, an unreachable vendor)
            await asyncio.wait({task}, timeout=10)
            raise ServiceError(f"the {plan.source} stream did not connect within {STREAM_START_TIMEOUT_S:.0f} s")
        stream = RealTimeStream(plan.source, plan.symbols, hybrid, task, key)
        self.streams.append(stream)
        return stream

    async def stop_streams(self) -> list[dict[str, Any]]:
        """Stop (drain) every stream this orchestrator started; their summaries."""
        running, self.streams = [s for s in self.streams if s.running], []
        return [await s.stop() for s in running]

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
        """Flows report to the configured Prefect server (not an ephemeral one), with its auth
        string, without touching the process environment."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, get_current_settings, temporary_settings

        prefect = self.settings.prefect
        current = get_current_settings().api
        if current.url == prefect.resolved_api_url and current.auth_string == prefect.auth_string:
            yield
            return
        auth = prefect.auth_string.get_secret_value() if prefect.auth_string else None
        with temporary_settings(updates={PREFECT_API_URL: prefect.resolved_api_url, PREFECT_API_AUTH_STRING: auth}):
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
        self.stream: RealTimeStream | None = None  # the live stream of a REAL_TIME/HYBRID pipeline
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
        if self.orchestrator.flow_config.mode is not PipelineMode.BATCH and self.stream is None:
            self.stream = await self.orchestrator.start_real_time_flow(self.orchestrator.settings.pipeline.symbols)
        self.started = True

    async def stop(self) -> None:
        """Stop: a running stream drains and ends."""
        if self.stream is not None:
            stream, self.stream = self.stream, None
            await stream.stop()
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
