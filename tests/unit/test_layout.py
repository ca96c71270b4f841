"""The layout's one rule that import-linter cannot see: Prefect runs a deployment's entrypoint
(`flows/<name>.py`) as a script with `flows/` first on sys.path, so a flow module named like one of
our top-level packages would shadow it in the worker (`import features` would load
`flows/features.py`, and the run crash on a circular import)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_flow_module_shadows_a_top_level_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = set(config["tool"]["importlinter"]["root_packages"])
    flow_modules = {p.stem for p in (REPO / "flows").glob("*.py")} - {"__init__"}
    assert "ingestion" in flow_modules and "features" in packages  # the check reads the real tree
    assert flow_modules & packages == set()


def test_every_top_level_package_is_in_the_layer_contract() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = set(config["tool"]["importlinter"]["root_packages"])
    on_disk = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert on_disk == packages
