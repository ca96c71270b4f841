"""The tiering flow: hot chunks older than each dataset's hot window move to the Parquet lake.

One task per dataset (its chunks move one transaction at a time, see :mod:`storage.tiering`);
native compression is set first where the full TimescaleDB edition runs. A failed dataset fails
its task and the flow; the chunks it did not move stay hot and the next run moves them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from db.connect import database_connection
from core.settings import Settings, load_settings
from pipeline.request import parse_when
from storage.lake import Lake
from storage.tiering import DATASETS, datasets_of, ensure_native_compression, tier_chunks


@task(name="native-compression", cache_policy=NONE)
def native_compression_task(settings: Settings) -> dict[str, Any]:
    with database_connection(settings, autocommit=True) as conn:
        decision = ensure_native_compression(conn, settings)
    return {"applied": decision.apply, "reason": decision.reason}


@task(name="tier-dataset", cache_policy=NONE, task_run_name="tier-{dataset}")
def tier_dataset_task(
    settings: Settings, dataset: str, older_than: datetime | None, newer_than: datetime | None
) -> dict[str, Any]:
    with database_connection(settings, autocommit=True) as conn:
        report = tier_chunks(conn, Lake.from_settings(settings.lake), settings, dataset=dataset,
                             older_than=older_than, newer_than=newer_than)  # fmt: skip
    return {"dataset": dataset, **report.as_dict()}


@flow(name="tiering", log_prints=True)
def tiering_flow(
    datasets: list[str] | None = None,
    older_than: Any = None,
    newer_than: Any = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Move old chunks of ``datasets`` (default: all of ``DATASETS``) to the lake."""
    settings = load_settings(overrides=overrides)
    names = [d.name for d in datasets_of(datasets or list(DATASETS))]
    before = parse_when(older_than, "older_than") if older_than is not None else None
    after = parse_when(newer_than, "newer_than") if newer_than is not None else None
    compression = native_compression_task(settings)
    moved = [tier_dataset_task(settings, name, before, after) for name in names]
    rows, written = sum(m["rows"] for m in moved), sum(m["bytes_written"] for m in moved)
    create_table_artifact(
        [{k: m[k] for k in ("dataset", "chunks", "files", "rows", "bytes_written", "mb_per_s")} for m in moved],
        key="tiering-summary",
        description=f"{rows:,} rows, {written / 2**20:,.1f} MiB of Parquet moved to the lake; "
        f"native compression: {compression['reason']}",
    )
    return {"run_id": str(flow_run.get_id()), "native_compression": compression, "datasets": moved,
            "rows": rows, "bytes_written": written}  # fmt: skip
