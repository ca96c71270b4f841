"""The smoke job: proves the stack end to end until the pipeline's main job exists."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from db.connect import database_connection
from core.settings import load_settings
from storage import probe
from storage.lake import Lake


@task(cache_policy=NONE)
def hot_store_round_trip(overrides: dict[str, Any] | None) -> int:
    with database_connection(load_settings(overrides=overrides)) as conn:
        return probe.probe_hot_store(conn)


@task(cache_policy=NONE)
def lake_round_trip(overrides: dict[str, Any] | None, run_id: str) -> tuple[str, int]:
    return probe.probe_lake(Lake.from_settings(load_settings(overrides=overrides).lake), run_id)


@flow(name="smoke", flow_run_name="smoke-{overrides_label}", log_prints=True)
def smoke_flow(overrides: dict[str, Any] | None = None, overrides_label: str = "default") -> dict[str, Any]:
    run_id = str(flow_run.get_id())
    bars = hot_store_round_trip(overrides)
    key, size = lake_round_trip(overrides, run_id)
    get_run_logger().info("hot store: %d probe bars round-tripped; lake: %s (%d bytes)", bars, key, size)
    return {"bars": bars, "lake_key": key, "lake_bytes": size, "flow_run_id": run_id,
            "flow_run_name": flow_run.get_name()}  # fmt: skip


def smoke(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return smoke_flow(overrides=overrides or {}, overrides_label="cli")
