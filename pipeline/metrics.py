"""Run metrics: what each flow run did, stored in ``ops.pipeline_runs`` (migration 0008), and the
totals the seed's ``get_pipeline_metrics()`` and ``marketpipe metrics`` report.

:func:`run_metrics` is pure: it turns the typed summary of a flow run (which states its
:class:`RunFigures`), or a summary dict (an ``ingest``, ``process`` or ``pipeline`` summary with
nested stage summaries), into one :class:`RunMetrics`. :func:`record_run` upserts it on
``run_id``, so recording a run twice keeps one row. A sub-flow records its ``parent_run_id`` and
:func:`aggregate_metrics` adds up top-level runs only, so an ingest run inside a pipeline run is
never counted twice. The column definitions are documented in the migration.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from core.errors import StorageError

if TYPE_CHECKING:
    from storage.lake import Lake

STATUSES = ("completed", "partial", "failed")
_STAGE_KEYS = ("ingestion", "processing", "historical")
_MAX_LISTED = 50  # failed symbols / quality reasons kept in details


@dataclass(frozen=True)
class RunMetrics:
    """One row of ``ops.pipeline_runs``."""

    run_id: str
    flow: str
    started_at: datetime
    finished_at: datetime
    status: str
    records_ingested: int = 0
    records_stored: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    quality_score: float | None = None
    throughput_records_per_second: float | None = None
    processing_latency_seconds: float | None = None
    error_rate: float | None = None
    parent_run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineMetrics:
    """Totals over the top-level runs of a period; the attribute names are the seed's.

    ``quality_score`` is NaN when no run of the period scored any data (so the seed's
    ``f"{metrics.quality_score:.2%}"`` prints ``nan%`` rather than a made-up figure).
    """

    ingestion_records: int
    quality_score: float
    throughput_records_per_second: float
    processing_latency_seconds: float | None
    error_rate: float | None
    storage_utilization: dict[str, Any]
    runs: int
    records_stored: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    since: datetime | None = None


# ---------------------------------------------------------------------------------------------
# Summary -> RunMetrics (pure)


class CollectedRow(Protocol):
    """One symbol's collection as the metrics count it (``tasks.collection.SymbolCollection``)."""

    symbol: str
    records: int
    dead_letter_ids: Sequence[int]
    error: str | None


class ProcessedRow(Protocol):
    """One symbol's processing as the metrics count it (``tasks.processing.SymbolProcessing``)."""

    symbol: str
    records: int
    rejected: int
    inserted: int
    updated: int
    unchanged: int
    quality_score: float | None
    error: str | None


@dataclass(frozen=True)
class RunFigures:
    """What a run did, in the figures ``ops.pipeline_runs`` records. A flow's typed summary says
    them (:meth:`RunSummary.figures`); :meth:`of_symbols` adds up per-symbol rows."""

    records_ingested: int = 0
    records_stored: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    quality_score: float | None = None
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    symbol_tasks: int = 0
    failed_symbol_tasks: int = 0
    failed_symbols: tuple[str, ...] = ()
    quality_reasons: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def of_symbols(
        cls,
        collected: Sequence[CollectedRow],
        processed: Sequence[ProcessedRow],
        *,
        quality_score: float | None = None,
        quality_reasons: Sequence[str] = (),
        stages: Sequence[str] = (),
        error: str | None = None,
    ) -> RunFigures:
        """Totals over per-symbol rows; ``quality_score`` when the run scored its batch, else the
        records-weighted mean of the symbols' scores."""
        tasks: list[CollectedRow | ProcessedRow] = [*collected, *processed]
        failed = [row for row in tasks if row.error]
        return cls(
            records_ingested=sum(c.records or 0 for c in collected),
            records_stored=sum((p.inserted or 0) + (p.updated or 0) for p in processed),
            rejected=sum(p.rejected or 0 for p in processed),
            dead_lettered=sum(len(c.dead_letter_ids or []) for c in collected),
            quality_score=float(quality_score) if quality_score is not None else _weighted_quality(processed),
            inserted=sum(p.inserted or 0 for p in processed),
            updated=sum(p.updated or 0 for p in processed),
            unchanged=sum(p.unchanged or 0 for p in processed),
            symbol_tasks=len(tasks),
            failed_symbol_tasks=len(failed),
            failed_symbols=tuple(sorted({str(row.symbol) for row in failed})),
            quality_reasons=tuple(str(r) for r in quality_reasons),
            stages=tuple(str(s) for s in stages),
            error=error,
        )


class RunSummary(Protocol):
    """A flow's typed summary: its figures, and the record (the summary as a dict with ``run_id``
    and ``seconds``) whose plain values go into ``details``."""

    def figures(self) -> RunFigures: ...

    def record(self) -> dict[str, Any]: ...


class _Row:
    """A summary dict's row read as attributes (a missing key reads as None)."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        return self._row.get(name)


def _stage_summaries(summary: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The summary and every stage summary nested in it (pipeline -> ingestion list -> ...)."""
    yield summary
    for key in _STAGE_KEYS:
        value = summary.get(key)
        items = [value] if isinstance(value, Mapping) else value if isinstance(value, list) else []
        for item in items:
            if isinstance(item, Mapping):
                yield from _stage_summaries(item)


def _rows(summary: Mapping[str, Any], *keys: str) -> list[Any]:
    return [
        _Row(row)
        for s in _stage_summaries(summary)
        for key in keys
        for row in s.get(key) or []
        if isinstance(row, Mapping)
    ]


def figures_of_dict(summary: Mapping[str, Any]) -> RunFigures:
    """The figures of a summary known only as a dict (a failed run's stub, a recorded summary):
    the per-symbol rows (``collected``, ``processed``, ``symbols``) of it and its nested stage
    summaries, added up; its own top-level totals, where it has them, win."""
    figures = RunFigures.of_symbols(
        _rows(summary, "collected"),
        _rows(summary, "processed", "symbols"),
        quality_score=summary.get("quality_score"),
        quality_reasons=summary.get("quality_reasons") or (),
        stages=summary.get("stages") or (),
        error=summary.get("error"),
    )
    totals = ("records_ingested", "records_stored", "rejected", "dead_lettered")
    given: dict[str, Any] = {key: int(summary[key]) for key in totals if summary.get(key) is not None}
    return replace(figures, **given)


def _weighted_quality(rows: Sequence[ProcessedRow]) -> float | None:
    scored = [(float(r.quality_score), max(int(r.records or 0), 1)) for r in rows if r.quality_score is not None]
    if not scored:
        return None
    return sum(score * weight for score, weight in scored) / sum(weight for _, weight in scored)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def run_metrics(
    summary: RunSummary | Mapping[str, Any],
    flow: str,
    *,
    finished_at: datetime | None = None,
    parent_run_id: str | None = None,
) -> RunMetrics:
    """The metrics of one run from the summary its flow produced: a typed :class:`RunSummary`
    (which states its figures) or a dict (see :func:`figures_of_dict`).

    ``started_at`` is ``finished_at`` (default: now) minus the summary's ``seconds``.
    """
    if not flow:
        raise ValueError("flow must name the flow that produced the summary")
    if isinstance(summary, Mapping):
        record, figures = summary, figures_of_dict(summary)
    else:
        record, figures = summary.record(), summary.figures()
    finished = finished_at or datetime.now(UTC)
    seconds = max(float(record.get("seconds") or 0.0), 0.0)
    tasks, failed_tasks = figures.symbol_tasks, figures.failed_symbol_tasks
    if figures.error or (tasks and failed_tasks == tasks):
        status = "failed"
    elif failed_tasks:
        status = "partial"
    else:
        status = "completed"
    details: dict[str, Any] = {
        k: _json_safe(v) for k, v in record.items() if v is None or isinstance(v, str | int | float | bool)
    }
    details.update(
        stages=list(figures.stages),
        symbol_tasks=tasks,
        failed_symbol_tasks=failed_tasks,
        failed_symbols=list(figures.failed_symbols[:_MAX_LISTED]),
        inserted=figures.inserted,
        updated=figures.updated,
        unchanged=figures.unchanged,
        quality_reasons=list(figures.quality_reasons[:_MAX_LISTED]),
    )
    return RunMetrics(
        run_id=str(record.get("run_id") or uuid.uuid4()),
        flow=flow,
        parent_run_id=parent_run_id or record.get("parent_run_id"),
        started_at=finished - timedelta(seconds=seconds),
        finished_at=finished,
        status=status,
        records_ingested=figures.records_ingested,
        records_stored=figures.records_stored,
        rejected=figures.rejected,
        dead_lettered=figures.dead_lettered,
        quality_score=figures.quality_score,
        throughput_records_per_second=figures.records_ingested / seconds if seconds > 0 else None,
        processing_latency_seconds=seconds,
        error_rate=failed_tasks / tasks if tasks else 0.0,
        details=details,
    )


# ---------------------------------------------------------------------------------------------
# ops.pipeline_runs

_COLUMNS = (
    "run_id",
    "flow",
    "parent_run_id",
    "started_at",
    "finished_at",
    "status",
    "records_ingested",
    "records_stored",
    "rejected",
    "dead_lettered",
    "quality_score",
    "throughput_records_per_second",
    "processing_latency_seconds",
    "error_rate",
    "details",
)
_INSERT = f"""
    INSERT INTO ops.pipeline_runs ({", ".join(_COLUMNS)})
    VALUES ({", ".join(["%s"] * len(_COLUMNS))})
    ON CONFLICT (run_id) DO
"""
_REPLACE = f"UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _COLUMNS[1:])}"


def record_run(conn: psycopg.Connection, metrics: RunMetrics, *, replace: bool = True) -> bool:
    """Upsert one run on ``run_id``: one row per run however often it is recorded.

    ``replace=False`` keeps a row already recorded (the facade's fallback must not overwrite the
    flow's own record). Returns whether a row was written.
    """
    values = [getattr(metrics, c) for c in _COLUMNS]
    values[-1] = Jsonb(metrics.details)
    try:
        with conn.transaction():
            cursor = conn.execute(_INSERT + (_REPLACE if replace else "NOTHING"), values)
            return cursor.rowcount > 0
    except psycopg.Error as exc:
        raise StorageError(f"cannot record metrics of run {metrics.run_id} ({metrics.flow}): {exc}") from exc


def read_recent_runs(conn: psycopg.Connection, limit: int = 20, *, top_level_only: bool = False) -> list[RunMetrics]:
    """The newest runs first."""
    where = "WHERE parent_run_id IS NULL" if top_level_only else ""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM ops.pipeline_runs {where} ORDER BY finished_at DESC, run_id LIMIT %s",
        (limit,),
    ).fetchall()
    return [RunMetrics(**dict(zip(_COLUMNS, row, strict=True))) for row in rows]


def storage_utilization(
    conn: psycopg.Connection, *, lake: Lake | None = None, lake_bytes: int | None = None
) -> dict[str, Any]:
    """Bytes in the hot store (the database, and each hypertable) and in the lake.

    The lake's size comes from ``lake_bytes`` when the caller knows it, otherwise from listing the
    whole bucket (one LIST pass; fine for the embedded lake, slow for a huge production bucket);
    without either it is None.
    """
    size_row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert size_row is not None  # one row, always
    database_bytes = size_row[0]
    hypertables = conn.execute(
        """
        SELECT format('%I.%I', hypertable_schema, hypertable_name),
               hypertable_size(format('%I.%I', hypertable_schema, hypertable_name)::regclass)
        FROM timescaledb_information.hypertables ORDER BY 1
        """
    ).fetchall()
    lake_objects = None
    if lake_bytes is None and lake is not None:
        sizes = [obj.size_bytes for obj in lake.list()]
        lake_bytes, lake_objects = sum(sizes), len(sizes)
    return {
        "hot_store_bytes": int(database_bytes),
        "hypertable_bytes": {name: int(size or 0) for name, size in hypertables},
        "lake_bytes": lake_bytes,
        "lake_objects": lake_objects,
    }


def aggregate_metrics(
    conn: psycopg.Connection,
    since: datetime | None = None,
    *,
    lake: Lake | None = None,
    lake_bytes: int | None = None,
) -> PipelineMetrics:
    """Totals over the top-level runs finished since ``since`` (all recorded runs when None).

    Throughput is all records ingested over all run seconds; the quality score is the mean of the
    runs' scores weighted by the records each handled; latency and error rate are means per run.
    """
    row = conn.execute(
        """
        SELECT count(*),
               coalesce(sum(records_ingested), 0), coalesce(sum(records_stored), 0),
               coalesce(sum(rejected), 0), coalesce(sum(dead_lettered), 0),
               sum(quality_score * greatest(records_ingested, records_stored + rejected, 1))
                   / nullif(sum(greatest(records_ingested, records_stored + rejected, 1))
                            FILTER (WHERE quality_score IS NOT NULL), 0),
               coalesce(sum(extract(epoch FROM finished_at - started_at)), 0),
               avg(processing_latency_seconds), avg(error_rate)
        FROM ops.pipeline_runs
        WHERE parent_run_id IS NULL AND (%(since)s::timestamptz IS NULL OR finished_at >= %(since)s)
        """,
        {"since": since},
    ).fetchone()
    assert row is not None  # an aggregate returns one row
    runs, ingested, stored, rejected, dead, quality, seconds, latency, error_rate = row
    seconds = float(seconds)
    return PipelineMetrics(
        ingestion_records=int(ingested),
        quality_score=float(quality) if quality is not None else math.nan,
        throughput_records_per_second=int(ingested) / seconds if seconds > 0 else 0.0,
        processing_latency_seconds=float(latency) if latency is not None else None,
        error_rate=float(error_rate) if error_rate is not None else None,
        storage_utilization=storage_utilization(conn, lake=lake, lake_bytes=lake_bytes),
        runs=int(runs),
        records_stored=int(stored),
        rejected=int(rejected),
        dead_lettered=int(dead),
        since=since,
    )


# ---------------------------------------------------------------------------------------------
# Terminal table (``marketpipe metrics``)

_TABLE_COLUMNS = (
    "finished (UTC)",
    "flow",
    "status",
    "ingested",
    "stored",
    "rejected",
    "dead",
    "quality",
    "rec/s",
    "latency s",
    "errors",
    "run",
)


def _cell(value: Any, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "float":
        return f"{value:,.1f}"
    if kind == "int":
        return f"{value:,}"
    return str(value)


def format_metrics_table(runs: Sequence[RunMetrics]) -> str:
    """A fixed-width table of runs in the order given; sub-flow runs are marked ``↳`` because their
    records are already part of their parent's line."""
    if not runs:
        return "no pipeline runs recorded yet: run `marketpipe run` or `marketpipe ingest ...`"
    lines = [
        (
            r.finished_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            ("↳ " if r.parent_run_id else "") + r.flow,
            r.status,
            _cell(r.records_ingested, "int"),
            _cell(r.records_stored, "int"),
            _cell(r.rejected, "int"),
            _cell(r.dead_lettered, "int"),
            _cell(r.quality_score, "pct"),
            _cell(r.throughput_records_per_second, "float"),
            _cell(r.processing_latency_seconds, "float"),
            _cell(r.error_rate, "pct"),
            r.run_id[:8],
        )
        for r in runs
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(_TABLE_COLUMNS)]
    left = {0, 1, 2, 11}

    def render(cells: Sequence[str]) -> str:
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join([render(_TABLE_COLUMNS), render(["-" * w for w in widths]), *map(render, lines)])
