"""The "stream stalled" automation fires for real: a stream's heartbeat reaches the test stack's
Prefect server and nothing follows it, so the server's proactive evaluation fires the automation
for that stream; a stream whose heartbeat is followed by a clean stop does not alarm."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

from core.settings import Settings
from deployments.alerts import RULES, ensure_alert_automations
from pipeline.alerts import STREAM_HEARTBEAT, STREAM_STOPPED

WAIT_SECONDS = 180.0  # the automation waits 30 s of silence; the server evaluates every few seconds


def _emit(event: str, resource_id: str) -> None:
    from prefect.events import emit_event

    emitted = emit_event(event=event, resource={"prefect.resource.id": resource_id, "prefect.resource.name": "test"})
    assert emitted is not None, "the events client is off (no PREFECT_API_URL?)"


def _firings(client: Any, automation_id: Any, since: Any) -> dict[str, Any]:
    """Triggered events of the automation since ``since``, keyed by the stream resource they fired for."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    page = client.read_events(
        EventFilter(
            event=EventNameFilter(name=["prefect.automation.triggered"]),
            resource=EventResourceFilter(id=[f"prefect.automation.{automation_id}"]),
            occurred=EventOccurredFilter(since=since, until=since + timedelta(hours=1)),  # until defaults to now
        ),
        limit=50,  # the API's maximum
    )
    return {e.payload["triggering_labels"].get("prefect.resource.id", ""): e for e in page.events}


def test_a_heartbeat_followed_by_silence_fires_stream_stalled_and_a_clean_stop_does_not(stack: Settings) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker
    from prefect.types._datetime import now

    (rule,) = [r for r in RULES if r.name == "marketpipe: stream stalled"]
    tag = secrets.token_hex(3)
    silent, stopped = f"marketpipe.stream.stalltest-{tag}", f"marketpipe.stream.stoptest-{tag}"
    ensure_alert_automations()
    since = now("UTC")
    _emit(STREAM_HEARTBEAT, silent)
    _emit(STREAM_HEARTBEAT, stopped)
    _emit(STREAM_STOPPED, stopped)
    EventsWorker.drain_all()

    with get_client(sync_client=True) as client:
        automation = client.read_automations_by_name(rule.name)[0]
        deadline = time.monotonic() + WAIT_SECONDS
        fired = _firings(client, automation.id, since)
        while silent not in fired and time.monotonic() < deadline:
            time.sleep(2.0)
            fired = _firings(client, automation.id, since)
        assert silent in fired, f"'{rule.name}' did not fire for {silent} within {WAIT_SECONDS:.0f} s: {sorted(fired)}"
        # Both windows opened together; the silent one has closed, so the stopped one's has too.
        time.sleep(5.0)
        assert stopped not in _firings(client, automation.id, since)
