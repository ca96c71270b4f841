"""The smoke job's tasks: a round trip through the hot store and one through the lake."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from storage import probe
from tasks.resources import RunResources


@task(cache_policy=NONE)
def hot_store_round_trip(resources: RunResources) -> int:
    with resources.connect() as conn:
        return probe.probe_hot_store(conn)


@task(cache_policy=NONE)
def lake_round_trip(resources: RunResources, run_id: str) -> tuple[str, int]:
    return probe.probe_lake(resources.lake, run_id)
