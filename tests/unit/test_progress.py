"""Progress bars draw on a terminal and stay silent elsewhere."""

from __future__ import annotations

import io
import sys

import pytest

from core.progress import terminal_progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with terminal_progress(3, "polygon 1min") as advance:
        for _ in range(3):
            advance(1)
    assert "polygon 1min" in screen.getvalue()
    assert "3/3" in screen.getvalue()


def test_a_pipe_gets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    with terminal_progress(3, "quiet") as advance:
        advance(3)
    assert pipe.getvalue() == ""
