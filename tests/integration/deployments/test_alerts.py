"""Alerts for real: `marketpipe deploy` creates the automations, the health flow emits its events
to the test stack's Prefect server, the server stores them, the automations fire and their
notification block posts to a webhook receiver run by the test."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from core.settings import Settings
from db.connect import database_connection
from deployments.alerts import RULES, ZOMBIE_RULE, ensure_alert_automations
from pipeline.alerts import DATA_STALE, DEAD_LETTERS_GROWING, JOB_FAILED, QUALITY_LOW
from pipeline.metrics import RunMetrics, record_run
from sources.dead_letters import record_dead_letter_sync
from storage.watermarks import Watermark, advance_watermarks
from tests.support.cli import run_cli
from tests.support.jobs import FAILURE_MESSAGE, background_jobs

WAIT_SECONDS = 120.0


class Webhook:
    """A local HTTP endpoint that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:.0f} s")
        time.sleep(1.0)


@pytest.fixture
def unhealthy(stack: Settings) -> Iterator[dict[str, str]]:
    """A stale watermark, a fresh dead letter and a low-quality run, each for a source, symbol or
    run of this test only; removed afterwards so other tests see the pipeline as it was."""
    tag = secrets.token_hex(3)
    source, symbol, run_id = f"alerttest{tag}", f"ALRT{tag.upper()}", f"alerttest-run-{tag}"
    now = datetime.now(UTC)
    with database_connection(stack) as conn:
        with conn.transaction():
            advance_watermarks(conn, [Watermark(source, "bars", symbol, "1day", now - timedelta(days=30))])
        record_dead_letter_sync(
            conn, source=source, dataset="bars", request={"url": f"/test/{tag}"}, error="HTTP 500 from the test"
        )
        record_run(
            conn,
            RunMetrics(
                run_id=run_id,
                flow="alerttest",
                started_at=now - timedelta(seconds=5),
                finished_at=now,
                status="completed",
                records_ingested=10,
                records_stored=5,
                rejected=5,
                quality_score=0.5,
                details={"quality_reasons": ["half rejected"]},
            ),
        )
    try:
        yield {
            DATA_STALE: f"marketpipe.dataset.{source}.bars.1day",
            DEAD_LETTERS_GROWING: f"marketpipe.source.{source}",
            QUALITY_LOW: f"marketpipe.run.{run_id}",
        }
    finally:
        with database_connection(stack) as conn, conn.transaction():
            conn.execute("DELETE FROM ops.watermarks WHERE source = %s", (source,))
            conn.execute("DELETE FROM ops.dead_letters WHERE source = %s", (source,))
            conn.execute("DELETE FROM ops.pipeline_runs WHERE run_id = %s", (run_id,))


def test_deploy_creates_the_alert_automations_once(stack: Settings) -> None:
    from prefect.client.orchestration import get_client

    ensure_alert_automations()
    outcome = ensure_alert_automations()
    assert set(outcome) == {r.name for r in RULES} | {ZOMBIE_RULE}
    assert set(outcome.values()) == {"updated"}
    with get_client(sync_client=True) as client:
        for rule in RULES:
            found = client.read_automations_by_name(rule.name)
            assert len(found) == 1, found
            assert found[0].trigger.expect == rule.expect


def test_health_flow_events_are_stored_and_fire_the_automations(stack: Settings, unhealthy: dict[str, str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter, EventResourceFilter

    from flows.health import health_flow

    with Webhook() as webhook:
        deployed = run_cli("deploy", "--alert-webhook", webhook.url)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert "automation  marketpipe: stale data" in deployed.stdout

        result = health_flow()

        emitted = {a["event"]: a["resource_id"] for a in result["alerts"] if a["resource_id"] in unhealthy.values()}
        assert emitted == unhealthy

        with get_client(sync_client=True) as client:
            automations = {r.event: client.read_automations_by_name(r.name)[0] for r in RULES}

            def stored() -> dict[str, Any]:
                ours = EventFilter(resource=EventResourceFilter(id=list(unhealthy.values())))
                page = client.read_events(ours, limit=50)
                return {e.event: e for e in page.events} if len(page.events) >= len(unhealthy) else {}

            events = wait_for("the health flow's events in the events API", stored)
            assert {name: e.resource.id for name, e in events.items()} == unhealthy

            def executed() -> dict[str, Any]:
                found = {}
                for name, event in events.items():
                    page = client.read_events(
                        EventFilter(
                            event=EventNameFilter(name=["prefect.automation.action.executed"]),
                            related=EventRelatedFilter(id=[f"prefect.event.{event.id}"]),
                        ),
                        limit=50,
                    )
                    if page.events:
                        found[name] = page.events[0]
                return found if len(found) == len(events) else {}

            actions = wait_for("the automations' executed actions", executed)
        for name, action in actions.items():
            assert action.resource.id == f"prefect.automation.{automations[name].id}"
            assert action.payload["action_type"] == "send-notification"

        def notified() -> list[dict[str, Any]]:
            return [b for b in webhook.bodies if any(r in b.get("text", "") for r in unhealthy.values())]

        bodies = wait_for("the webhook notifications", lambda: notified() if len(notified()) >= 3 else [])
    assert any("data is stale" in b["text"] for b in bodies)
    assert any("dead letters of" in b["text"] for b in bodies)
    assert any("data quality of alerttest" in b["text"] for b in bodies)


def test_a_failed_timescaledb_job_is_an_alert_that_fires_its_automation(
    stack: Settings, conn: psycopg.Connection
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventResourceFilter

    from flows.health import health_flow

    def resource(job_id: int) -> str:
        return f"marketpipe.timescaledb-job.{job_id}"

    with Webhook() as webhook:
        ensure_alert_automations(webhook.url)
        with background_jobs(conn) as jobs:
            result = health_flow()

        ours = {a["resource_id"]: a for a in result["alerts"] if a["event"] == JOB_FAILED}
        assert {resource(jobs.failing), resource(jobs.raising)} <= set(ours)
        assert resource(jobs.healthy) not in ours
        assert f"job {jobs.raising} {FAILURE_MESSAGE}" in ours[resource(jobs.raising)]["message"]
        assert f"on {jobs.aggregate})" in ours[resource(jobs.failing)]["message"]
        assert result["healthy"] is False

        with get_client(sync_client=True) as client:
            (automation,) = client.read_automations_by_name("marketpipe: TimescaleDB job failed")
            assert automation.trigger.expect == {JOB_FAILED}

            def stored() -> Any:
                ours = EventFilter(resource=EventResourceFilter(id=[resource(jobs.raising)]))
                page = client.read_events(ours, limit=10)
                return page.events[0] if page.events else None

            event = wait_for("the job-failed event in the events API", stored)
        assert event.event == JOB_FAILED and event.payload["job_id"] == jobs.raising
        assert event.payload["last_error"] == f"job {jobs.raising} {FAILURE_MESSAGE}"

        def notified() -> list[dict[str, Any]]:
            return [b for b in webhook.bodies if resource(jobs.raising) in b.get("text", "")]

        (body, *_) = wait_for("the job-failed notification at the webhook", notified)
    assert f"job {jobs.raising} {FAILURE_MESSAGE}" in body["text"]
    assert f"alter_job({jobs.raising}, next_start => now())" in body["text"]
    assert body["subject"] == f"marketpipe alert: TimescaleDB User-Defined Action [{jobs.raising}]"
