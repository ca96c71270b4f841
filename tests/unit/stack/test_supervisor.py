"""The supervisor without a stack: it says what to install when the sandbox is enabled but absent."""

from __future__ import annotations

import importlib.util

import pytest

from core.errors import ServiceError
from stack.supervisor import require_sandbox


def test_a_missing_sandbox_extra_is_one_line_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "uvicorn" else find_spec(name))
    with pytest.raises(ServiceError) as refused:
        require_sandbox()
    message = str(refused.value)
    assert "\n" not in message
    assert "no module 'uvicorn'" in message and "pip install 'marketpipe[sandbox]'" in message
