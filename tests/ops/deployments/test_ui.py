"""The Prefect UI of the test stack in a real browser: headless Chromium (Debian's `chromium`,
installed by scripts/install-system.sh) meets the login page (the server requires the stack's auth
string), logs in, then renders the flows page and the page of a marketpipe flow run, their names
are in the rendered DOM, and screenshots land in test-output/ui/ for a human to look at."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from prefect.client.orchestration import get_client

from core.settings import Settings
from flows.smoke import smoke_flow
from tests.support.browser import log_in_to_the_ui

REPO = Path(__file__).resolve().parents[3]
OUTPUT = REPO / "test-output" / "ui"
# The UI is a single-page app: the virtual time budget lets its scripts fetch from the API and
# render before Chromium dumps the DOM or takes the picture.
VIRTUAL_TIME_MS = 15000
BROWSER_TIMEOUT_SECONDS = 120
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1440,900",
    f"--virtual-time-budget={VIRTUAL_TIME_MS}",
)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: run `make install` (scripts/install-system.sh installs it)"
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_SECONDS,
    )


def logged_in_copy(logged_in: Path, name: str, tmp_path: Path) -> Path:
    """A profile of its own for one Chromium run, holding the login."""
    return Path(shutil.copytree(logged_in, tmp_path / name, ignore=shutil.ignore_patterns("Singleton*")))


def test_the_ui_shows_the_marketpipe_flows_and_flow_run(stack: Settings, tmp_path: Path) -> None:
    assert stack.prefect.auth_string is not None
    label = f"ui-{secrets.token_hex(3)}"
    run_id = smoke_flow(overrides={}, overrides_label=label)["flow_run_id"]
    ui = stack.prefect.ui_url

    # A browser that has not logged in gets the login page (no flows), then logs in.
    logged_in = tmp_path / "profile-logged-in"
    interactive = tuple(flag for flag in FLAGS if not flag.startswith("--virtual-time-budget"))
    login_page = log_in_to_the_ui(ui, "/flows", stack.prefect.auth_string.get_secret_value(), logged_in, interactive)
    # The flows table and the run's own page render deterministically; the runs list is a virtual
    # scroller whose rows appear only once an intersection observer fires (screenshot only).
    # The flow's own page: the flows list pages by ten, and a suite's session has registered more flows.
    with get_client(sync_client=True) as client:
        flow_id = client.read_flow_run(run_id).flow_id
    flows = chromium(logged_in_copy(logged_in, "profile-flows", tmp_path), "--dump-dom", f"{ui}/flows/flow/{flow_id}")
    run_page = chromium(
        logged_in_copy(logged_in, "profile-run", tmp_path), "--dump-dom", f"{ui}/runs/flow-run/{run_id}"
    )
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shots = {"prefect-runs.png": f"{ui}/runs", "prefect-flow-run.png": f"{ui}/runs/flow-run/{run_id}"}
    taken = {}
    for name, page in shots.items():
        (OUTPUT / name).unlink(missing_ok=True)
        profile = logged_in_copy(logged_in, f"profile-{name}", tmp_path)
        taken[name] = chromium(profile, f"--screenshot={OUTPUT / name}", page)

    assert "Login" in login_page and "smoke" not in login_page, login_page
    assert flows.returncode == 0, flows.stderr[-2000:]
    assert ">smoke<" in flows.stdout, flows.stdout[-3000:]  # the flow's name on its rendered page
    assert run_page.returncode == 0, run_page.stderr[-2000:]
    assert f"smoke-{label}" in run_page.stdout, run_page.stdout[-3000:]  # the run's name
    assert "Completed" in run_page.stdout
    for name, shot in taken.items():
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert (OUTPUT / name).stat().st_size > 10_000  # a rendered page, not an empty canvas
