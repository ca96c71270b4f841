"""The automations that turn the health flow's events into alerts, created idempotently.

One automation per alert event (``pipeline.alerts``): low quality, stale data, growing dead
letters, a failed TimescaleDB background job. Each fires on the first event about a resource (a
dataset, a source, a run, a job) and then keeps
quiet about that resource for :data:`QUIET_PERIOD`: the health check runs every 5 minutes and
reports a condition for as long as it lasts, which would otherwise notify twelve times an hour. Its action sends
a notification through the notification block ``custom-webhook/marketpipe-alerts`` (any HTTP
endpoint: Slack-compatible, a pager, an internal service), which ``marketpipe deploy
--alert-webhook URL`` creates or updates. Until such a block exists the action is Prefect's
``do-nothing``: the automation still fires and the UI's event feed records it
(``prefect.automation.action.executed``), so nothing is lost, it is just not pushed anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from loguru import logger

from core.errors import ServiceError
from pipeline.alerts import (
    BREAKER_OPEN,
    DATA_STALE,
    DEAD_LETTERS_GROWING,
    JOB_FAILED,
    QUALITY_LOW,
    REPLICA_LAGGING,
    RESOURCE_PREFIX,
    STREAM_DEGRADED,
    STREAM_HEARTBEAT,
    STREAM_STOPPED,
)

QUIET_PERIOD = timedelta(hours=1)
BLOCK_TYPE = "custom-webhook"
BLOCK_NAME = "marketpipe-alerts"
SUBJECT = "marketpipe alert: {{ event.resource['prefect.resource.name'] }}"
BODY = (
    "{{ event.payload.message }}\n\nevent: {{ event.event }} at {{ event.occurred }}\nresource: {{ event.resource.id }}"
)


STREAM_SILENCE = timedelta(seconds=30)  # heartbeats come every 5 s


@dataclass(frozen=True)
class AlertRule:
    """``event`` fires the rule (Reactive), or, with ``after``, its ABSENCE does: after an ``after``
    event, none of ``expect`` (default: ``event``) within ``within`` (Proactive)."""

    name: str
    event: str
    description: str
    after: str | None = None
    also_expect: tuple[str, ...] = ()
    within: timedelta = QUIET_PERIOD

    @property
    def expect(self) -> set[str]:
        return {self.event, *self.also_expect}


RULES = (
    AlertRule(
        "marketpipe: data quality below threshold",
        QUALITY_LOW,
        "A top-level pipeline run scored below quality.min_quality_score.",
    ),
    AlertRule(
        "marketpipe: stale data",
        DATA_STALE,
        "A dataset's symbols miss more closed NYSE sessions than the health check allows.",
    ),
    AlertRule(
        "marketpipe: dead letters growing", DEAD_LETTERS_GROWING, "A source dead-lettered requests in the last hour."
    ),
    AlertRule(
        "marketpipe: TimescaleDB job failed",
        JOB_FAILED,
        "A TimescaleDB background job (compression or continuous-aggregate policy) failed its last run.",
    ),
    AlertRule(
        "marketpipe: stream degraded",
        STREAM_DEGRADED,
        "A live stream spilled, dropped or dead-lettered frames, stopped reporting while marked running, or has "
        "had no connection for over a minute.",
    ),
    AlertRule(
        "marketpipe: circuit breaker open",
        BREAKER_OPEN,
        "A source's circuit breaker is open: a process found the vendor failing and every process holds off.",
    ),
    AlertRule(
        "marketpipe: read replica lagging",
        REPLICA_LAGGING,
        "The read replica lags more than database.read_replica.max_lag_seconds behind the primary; its reads go "
        "to the primary meanwhile.",
    ),
    AlertRule(
        "marketpipe: stream stalled",
        STREAM_HEARTBEAT,
        "A live stream's heartbeat was followed by no heartbeat (and no clean stop) within 30 s.",
        after=STREAM_HEARTBEAT,
        also_expect=(STREAM_STOPPED,),
        within=STREAM_SILENCE,
    ),
)


def save_webhook_block(url: str) -> UUID:
    """Create or update the notification block ``custom-webhook/marketpipe-alerts`` posting JSON
    ``{"subject", "text"}`` to ``url``; returns its block document id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name=BLOCK_NAME, url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
    )
    return block.save(BLOCK_NAME, overwrite=True)


def _existing_block_id() -> UUID | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_block_document_by_name(BLOCK_NAME, BLOCK_TYPE).id
        except ObjectNotFound:
            return None


def automation_for(rule: AlertRule, block_id: UUID | None):  # -> prefect.automations.AutomationCore
    from prefect.automations import AutomationCore, DoNothing, EventTrigger, SendNotification

    action = SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY) if block_id else DoNothing()
    return AutomationCore(
        name=rule.name,
        description=rule.description,
        enabled=True,
        trigger=EventTrigger(
            expect=rule.expect,
            after={rule.after} if rule.after else set(),
            match={"prefect.resource.id": f"{RESOURCE_PREFIX}*"},
            for_each={"prefect.resource.id"},
            posture="Proactive" if rule.after else "Reactive",
            threshold=1,
            # Reactive: fires at once, then waits out the period; Proactive: fires when nothing expected
            # followed the `after` event within it.
            within=rule.within,
        ),
        actions=[action],
    )


ZOMBIE_RULE = "marketpipe: crash zombie flow runs"
ZOMBIE_SILENCE = timedelta(seconds=90)  # three missed heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30)


def zombie_automation():  # -> prefect.automations.AutomationCore
    """Prefect's zombie-run pattern: a flow run whose heartbeat (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``,
    set on the long-running stream deployments) is followed by neither another heartbeat nor a
    final state within 90 s is marked Crashed (its host died: the run is not left Running forever)."""
    from prefect.automations import AutomationCore, EventTrigger
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState

    return AutomationCore(
        name=ZOMBIE_RULE,
        description="A flow run stopped sending heartbeats without reaching a final state: mark it Crashed.",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture="Proactive",
            threshold=1,
            within=ZOMBIE_SILENCE,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {ZOMBIE_SILENCE.seconds} s: the flow run's process is gone",
            )
        ],
    )


def ensure_alert_automations(webhook_url: str | None = None) -> dict[str, str]:
    """Create the alert automations, or bring existing ones (matched by name) up to date.

    Returns ``{name: "created" | "updated"}``. With ``webhook_url`` the notification block is
    created or repointed first; without it an existing block is kept in use.
    """
    from prefect.client.orchestration import get_client

    try:
        block_id = save_webhook_block(webhook_url) if webhook_url else _existing_block_id()
        outcome: dict[str, str] = {}
        with get_client(sync_client=True) as client:
            wanted_all = [(rule.name, automation_for(rule, block_id)) for rule in RULES]
            for name, wanted in [*wanted_all, (ZOMBIE_RULE, zombie_automation())]:
                existing = client.read_automations_by_name(name)
                if not existing:
                    client.create_automation(wanted)
                    outcome[name] = "created"
                    continue
                keep, *duplicates = existing  # newest first; duplicates come from racing deploys
                client.update_automation(keep.id, wanted)
                for extra in duplicates:
                    client.delete_automation(extra.id)
                outcome[name] = "updated"
    except Exception as exc:  # httpx / Prefect errors: the server is down, refuses, or the URL is wrong
        raise ServiceError(f"cannot create the alert automations: {type(exc).__name__}: {exc}") from exc
    created = [n for n, o in outcome.items() if o == "created"]
    if created:
        logger.info("created automations {}", ", ".join(created))
    return outcome
