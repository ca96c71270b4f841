"""The Prefect API asks who is calling: the embedded server requires the stack's auth string
(basic authentication), the UI says it needs it, every client of ours sends it, and it appears in
no log or artifact."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from flows.smoke import smoke_flow


def basic(auth_string: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


@pytest.fixture
def auth_string(stack: Settings) -> str:
    assert stack.prefect.auth_string is not None, "the test stack runs with an auth string"
    return stack.prefect.auth_string.get_secret_value()


def test_an_api_call_without_the_auth_string_gets_401_and_with_it_works(stack: Settings, auth_string: str) -> None:
    api = stack.prefect.resolved_api_url
    user, password = auth_string.split(":", 1)

    anonymous = httpx.post(f"{api}/deployments/filter", json={}, timeout=10)
    wrong = httpx.post(f"{api}/deployments/filter", json={}, headers=basic(f"{user}:not-it"), timeout=10)
    right = httpx.post(f"{api}/deployments/filter", json={}, headers=basic(auth_string), timeout=10)
    as_user_password = httpx.post(f"{api}/deployments/filter", json={}, auth=(user, password), timeout=10)

    assert anonymous.status_code == 401, anonymous.text
    assert wrong.status_code == 401, wrong.text
    assert right.status_code == 200, right.text
    assert as_user_password.status_code == 200  # what `curl -u user:password` sends
    # Registering a deployment (code every worker would run) is refused the same way.
    created = httpx.post(f"{api}/flows/", json={"name": f"intruder-{secrets.token_hex(3)}"}, timeout=10)
    assert created.status_code == 401
    # Health probes (`marketpipe status`, compose's health checks) stay open.
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200


def test_prefects_client_is_refused_without_the_string_and_served_with_it(stack: Settings, auth_string: str) -> None:
    from prefect.client.orchestration import SyncPrefectClient, get_client

    with SyncPrefectClient(stack.prefect.resolved_api_url) as anonymous, pytest.raises(httpx.HTTPStatusError) as err:
        anonymous.hello()
    assert err.value.response.status_code == 401
    with get_client(sync_client=True) as client:  # the session's settings: PREFECT_API_AUTH_STRING
        assert client.hello().status_code == 200


def test_the_ui_asks_for_the_auth_string(stack: Settings) -> None:
    ui = stack.prefect.ui_url

    settings = httpx.get(f"{ui}/ui-settings", timeout=10)
    page = httpx.get(f"{ui}/", headers={"Accept": "text/html"}, timeout=10, follow_redirects=True)

    assert settings.status_code == 200
    assert settings.json()["auth"] == "BASIC"  # the UI shows its login page and sends what is typed
    assert page.status_code == 200 and "<html" in page.text.lower()  # the page loads; its data does not


def test_the_auth_string_is_in_no_log_and_no_artifact(stack: Settings, auth_string: str, marketpipe_cli) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    run_id = smoke_flow(overrides={}, overrides_label=f"auth-{secrets.token_hex(3)}")["flow_run_id"]
    APILogWorker.drain_all(timeout=30)  # the run's logs go to the API in batches: all of them sent before reading
    status = marketpipe_cli("--debug", "status")
    token = basic(auth_string)["Authorization"].split()[1]

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        artifacts = client.read_artifacts()
    recorded = [
        status.stdout,
        status.stderr,
        *(log.message for log in logs),
        *(run.model_dump_json() for run in runs),
        *(artifact.model_dump_json() for artifact in artifacts),
        *(path.read_text(errors="replace") for path in Path(stack.state_dir, "log").glob("*.log")),
    ]
    assert status.returncode == 0, status.stderr
    assert logs, "the smoke run logged nothing: the check would be empty"
    for text in recorded:
        assert auth_string not in text
        assert token not in text
