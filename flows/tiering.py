"""The tiering flow: hot chunks older than each dataset's hot window move to the Parquet lake.

One task per dataset (its chunks move one transaction at a time, see :mod:`storage.tiering`);
native compression is set first where the full TimescaleDB edition runs. A failed dataset fails
its task and the flow; the chunks it did not move stay hot and the next run moves them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from core.settings import load_settings
from pipeline.request import parse_when
from storage.tiering import DATASETS, datasets_of
from tasks.resources import RunResources
from tasks.tiering import SUMMARY_COLUMNS, native_compression_task, tier_dataset_task


@flow(name="tiering", log_prints=True)
def tiering_flow(
    datasets: list[str] | None = None,
    older_than: Any = None,
    newer_than: Any = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Move old chunks of ``datasets`` (default: all of ``DATASETS``) to the lake."""
    with RunResources.from_settings(load_settings(overrides=overrides)) as resources:
        names = [d.name for d in datasets_of(datasets or list(DATASETS))]
        before = parse_when(older_than, "older_than") if older_than is not None else None
        after = parse_when(newer_than, "newer_than") if newer_than is not None else None
        compression = native_compression_task(resources)
        moved = [tier_dataset_task(resources, name, before, after) for name in names]
        rows, written = sum(m["rows"] for m in moved), sum(m["bytes_written"] for m in moved)
        create_table_artifact(
            [{k: m[k] for k in SUMMARY_COLUMNS} for m in moved],
            key="tiering-summary",
            description=f"{rows:,} rows, {written / 2**20:,.1f} MiB of Parquet moved to the lake; "
            f"native compression: {compression['reason']}",
        )
        return {
            "run_id": str(flow_run.get_id()),
            "native_compression": compression,
            "datasets": moved,
            "rows": rows,
            "bytes_written": written,
        }
