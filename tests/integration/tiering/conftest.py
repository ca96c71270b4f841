"""The tiering tests' fixture: the session's lake (``conn`` and ``symbols`` come from tests/conftest.py).

Tiering moves whole chunks, and a chunk holds every symbol's rows of its time range, so each test
writes its bars in its own year (tests/support/tiering.py) and tiers only that year.
"""

from __future__ import annotations

import pytest

from core.settings import Settings
from storage.lake import Lake


@pytest.fixture
def lake(stack: Settings) -> Lake:
    return Lake.from_settings(stack.lake)
