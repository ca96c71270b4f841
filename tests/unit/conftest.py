"""Fixtures of the unit tier (no services: nothing here may start the stack)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No MARKETPIPE_* variables, no default config or .env in the working directory."""
    for name in list(os.environ):
        if name.startswith("MARKETPIPE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path
