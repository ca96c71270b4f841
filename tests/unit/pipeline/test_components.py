"""Component probes without a stack: a process the caller runs and cannot find is not probed."""

from __future__ import annotations

from core.settings import Settings
from pipeline.components import probe_components


def test_a_component_whose_process_is_gone_is_not_running_without_a_probe() -> None:
    settings = Settings(sandbox={"enabled": True})
    status = probe_components(settings, {"postgres": None, "lake": None, "prefect": None, "sandbox": None})
    assert set(status.components) == {"postgres", "lake", "prefect", "sandbox"}
    assert {c.detail for c in status.components.values()} == {"not running"}
    assert status.components["postgres"].address == f"{settings.database.host}:{settings.database.port}"
    assert not status.healthy and status.timescaledb is None


def test_the_sandbox_is_probed_only_when_enabled() -> None:
    status = probe_components(Settings(sandbox={"enabled": False}), {"postgres": None, "lake": None, "prefect": None})
    assert set(status.components) == {"postgres", "lake", "prefect"}
