"""Rules of the layout that import-linter cannot see. First: Prefect runs a deployment's entrypoint
(`flows/<name>.py`) as a script with `flows/` first on sys.path, so a flow module named like one of
our top-level packages would shadow it in the worker (`import features` would load
`flows/features.py`, and the run crash on a circular import)."""

from __future__ import annotations

import ast
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


def test_no_test_module_imports_another() -> None:
    """Shared test code lives in tests/support/ and conftest.py; a test module imported by another
    runs its tests' module-level code twice and couples two files no reader would connect."""
    test_modules = {".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "tests").rglob("test_*.py")}
    assert "tests.unit.test_layout" in test_modules  # the check reads the real tree
    offenders = []
    for path in (REPO / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(REPO)} imports {n}" for n in names if n in test_modules]
    assert offenders == []
