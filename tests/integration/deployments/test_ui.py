"""The Prefect UI of the test stack in a real browser: headless Chromium (Debian's `chromium`,
installed by scripts/install-system.sh) renders the runs page, the marketpipe flow run is in the
rendered DOM, and a screenshot lands in test-output/ui/ for a human to look at."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from flows.smoke import smoke_flow
from marketpipe.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
OUTPUT = REPO / "test-output" / "ui"
# The UI is a single-page app: the virtual time budget lets its scripts fetch from the API and
# render before Chromium dumps the DOM or takes the picture.
VIRTUAL_TIME_MS = 15000
BROWSER_TIMEOUT_SECONDS = 120
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--window-size=1440,900",
         f"--virtual-time-budget={VIRTUAL_TIME_MS}")  # fmt: skip


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: run `make install` (scripts/install-system.sh installs it)"
    return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=BROWSER_TIMEOUT_SECONDS)  # fmt: skip


def test_the_runs_page_shows_the_marketpipe_flow_run(stack: Settings, tmp_path: Path) -> None:
    label = f"ui-{secrets.token_hex(3)}"
    smoke_flow(overrides={}, overrides_label=label)
    runs_page = f"{stack.prefect.ui_url}/runs"

    dom = chromium(tmp_path / "profile-dom", "--dump-dom", runs_page)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    screenshot = OUTPUT / "prefect-runs.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", runs_page)

    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f"smoke-{label}" in dom.stdout, dom.stdout[-3000:]  # the run's name, rendered by the SPA
    assert ">smoke<" in dom.stdout  # its flow's name
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000  # a rendered page, not an empty canvas
