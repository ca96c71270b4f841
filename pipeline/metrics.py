"""Run metrics: what each flow run did, stored in ``ops.pipeline_runs`` (migration 0008), and the
totals the seed's ``get_pipeline_metrics()`` and ``marketpipe metrics`` report.

:func:`run_metrics` is pure: it turns the summary dict a flow returns (an ``ingest`` summary, a
``process`` summary or a ``pipeline`` summary with nested stage summaries) into one
:class:`RunMetrics`. :func:`record_run` upserts it on ``run_id``, so recording a run twice keeps one
row. A sub-flow records its ``parent_run_id`` and :func:`aggregate_metrics` adds up top-level runs
only, so an ingest run inside a pipeline run is never counted twice. The column definitions are
documented in the migration.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from core.errors import StorageError

if TYPE_CHECKING:
    from core.settings import Settings
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


def _stage_summaries(summary: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The summary and every stage summary nested in it (pipeline -> ingestion list -> ...)."""
    yield summary
    for key in _STAGE_KEYS:
        value = summary.get(key)
        items = [value] if isinstance(value, Mapping) else value if isinstance(value, list) else []
        for item in items:
            if isinstance(item, Mapping):
                yield from _stage_summaries(item)


def _rows(summary: Mapping[str, Any], *keys: str) -> list[Mapping[str, Any]]:
    return [row for s in _stage_summaries(summary) for key in keys for row in s.get(key) or []
            if isinstance(row, Mapping)]  # fmt: skip


def _total(rows: Sequence[Mapping[str, Any]], key: str) -> int:
    return int(sum(row.get(key) or 0 for row in rows))


def _weighted_quality(rows: Sequence[Mapping[str, Any]]) -> float | None:
    scored = [(float(r["quality_score"]), max(int(r.get("records") or 0), 1)) for r in rows
              if r.get("quality_score") is not None]  # fmt: skip
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
    summary: Mapping[str, Any],
    flow: str,
    *,
    finished_at: datetime | None = None,
    parent_run_id: str | None = None,
) -> RunMetrics:
    """The metrics of one run from the summary its flow returned.

    Top-level figures of a pipeline summary (``records_ingested``, ``records_stored``,
    ``rejected``, ``dead_lettered``, ``quality_score``) win; otherwise they are added up from the
    per-symbol rows (``collected``, ``processed``, ``symbols``) of the summary and its stages.
    ``started_at`` is ``finished_at`` (default: now) minus the summary's ``seconds``.
    """
    if not flow:
        raise ValueError("flow must name the flow that produced the summary")
    finished = finished_at or datetime.now(UTC)
    seconds = max(float(summary.get("seconds") or 0.0), 0.0)
    collected = _rows(summary, "collected")
    processed = _rows(summary, "processed", "symbols")

    def figure(key: str, fallback: int) -> int:
        value = summary.get(key)
        return int(value) if value is not None else fallback

    records_ingested = figure("records_ingested", _total(collected, "records"))
    records_stored = figure("records_stored", _total(processed, "inserted") + _total(processed, "updated"))
    rejected = figure("rejected", _total(processed, "rejected"))
    dead_lettered = figure("dead_lettered", sum(len(c.get("dead_letter_ids") or []) for c in collected))
    quality = summary.get("quality_score")
    quality = float(quality) if quality is not None else _weighted_quality(processed)

    tasks = len(collected) + len(processed)
    failed_tasks = sum(1 for row in (*collected, *processed) if row.get("error"))
    error_rate = failed_tasks / tasks if tasks else 0.0
    if summary.get("error") or (tasks and failed_tasks == tasks):
        status = "failed"
    elif failed_tasks:
        status = "partial"
    else:
        status = "completed"

    failed_symbols = sorted({str(r.get("symbol")) for r in (*collected, *processed) if r.get("error")})
    details: dict[str, Any] = {k: _json_safe(v) for k, v in summary.items()
                               if v is None or isinstance(v, str | int | float | bool)}  # fmt: skip
    details.update(
        stages=[str(s) for s in summary.get("stages") or []],
        symbol_tasks=tasks,
        failed_symbol_tasks=failed_tasks,
        failed_symbols=failed_symbols[:_MAX_LISTED],
        inserted=_total(processed, "inserted"),
        updated=_total(processed, "updated"),
        unchanged=_total(processed, "unchanged"),
        quality_reasons=[str(r) for r in summary.get("quality_reasons") or []][:_MAX_LISTED],
    )
    return RunMetrics(
        run_id=str(summary.get("run_id") or uuid.uuid4()),
        flow=flow,
        parent_run_id=parent_run_id or summary.get("parent_run_id"),
        started_at=finished - timedelta(seconds=seconds),
        finished_at=finished,
        status=status,
        records_ingested=records_ingested,
        records_stored=records_stored,
        rejected=rejected,
        dead_lettered=dead_lettered,
        quality_score=quality,
        throughput_records_per_second=records_ingested / seconds if seconds > 0 else None,
        processing_latency_seconds=seconds,
        error_rate=error_rate,
        details=details,
    )


# ---------------------------------------------------------------------------------------------
# ops.pipeline_runs

_COLUMNS = (
    "run_id", "flow", "parent_run_id", "started_at", "finished_at", "status", "records_ingested",
    "records_stored", "rejected", "dead_lettered", "quality_score", "throughput_records_per_second",
    "processing_latency_seconds", "error_rate", "details",
)  # fmt: skip
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


def record_summary(
    settings: Settings, summary: Mapping[str, Any], flow: str, *, parent_run_id: str | None = None
) -> RunMetrics:
    """:func:`run_metrics` + :func:`record_run` on a connection of its own (what a flow calls last)."""
    from db.connect import database_connection

    metrics = run_metrics(summary, flow, parent_run_id=parent_run_id)
    with database_connection(settings) as conn:
        record_run(conn, metrics)
    return metrics


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
    database_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
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

_TABLE_COLUMNS = ("finished (UTC)", "flow", "status", "ingested", "stored", "rejected", "dead", "quality", "rec/s",
                  "latency s", "errors", "run")  # fmt: skip


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
