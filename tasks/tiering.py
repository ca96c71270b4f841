"""The tiering flow's tasks: native compression first (where the full TimescaleDB edition runs),
then one task per dataset moving its old hot chunks to the lake (see :mod:`storage.tiering`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from storage.tiering import ensure_native_compression, tier_chunks
from tasks.resources import RunResources

SUMMARY_COLUMNS = (
    "dataset",
    "chunks",
    "compressed_chunks",
    "files",
    "rows",
    "bytes_written",
    "mb_per_s",
)  # the artifact's


@task(name="native-compression", cache_policy=NONE)
def native_compression_task(resources: RunResources) -> dict[str, Any]:
    with resources.connect(autocommit=True) as conn:
        decision = ensure_native_compression(conn, resources.settings)
    return {"applied": decision.apply, "reason": decision.reason, "policies_set": list(decision.policies_set)}


@task(name="tier-dataset", cache_policy=NONE, task_run_name="tier-{dataset}")
def tier_dataset_task(
    resources: RunResources, dataset: str, older_than: datetime | None, newer_than: datetime | None
) -> dict[str, Any]:
    with resources.connect(autocommit=True) as conn:
        report = tier_chunks(
            conn, resources.lake, resources.settings, dataset=dataset, older_than=older_than, newer_than=newer_than
        )
    return {"dataset": dataset, **report.as_dict()}
