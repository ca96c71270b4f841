"""The smoke job: proves the stack end to end until the pipeline's main job exists."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from core.settings import load_settings
from tasks.resources import RunResources
from tasks.smoke import hot_store_round_trip, lake_round_trip


@flow(name="smoke", flow_run_name="smoke-{overrides_label}", log_prints=True)
def smoke_flow(overrides: dict[str, Any] | None = None, overrides_label: str = "default") -> dict[str, Any]:
    run_id = str(flow_run.get_id())
    with RunResources.from_settings(load_settings(overrides=overrides)) as resources:
        bars = hot_store_round_trip(resources)
        key, size = lake_round_trip(resources, run_id)
        get_run_logger().info("hot store: %d probe bars round-tripped; lake: %s (%d bytes)", bars, key, size)
        return {
            "bars": bars,
            "lake_key": key,
            "lake_bytes": size,
            "flow_run_id": run_id,
            "flow_run_name": flow_run.get_name(),
        }


def smoke(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return smoke_flow(overrides=overrides or {}, overrides_label="cli")
