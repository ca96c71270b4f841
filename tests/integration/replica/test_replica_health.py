"""Health shows the read replica's lag; a lag above database.read_replica.max_lag_seconds is a
health issue and a `replica-lagging` alert the health flow emits to Prefect (its automation exists),
made deterministic by pausing the standby's replay after it received a write."""

from __future__ import annotations

from typing import Any

from core.settings import load_settings
from db.connect import database_connection
from deployments.alerts import RULES, ensure_alert_automations
from pipeline.alerts import REPLICA_LAGGING
from pipeline.health import check_health, format_health
from stack.supervisor import Stack
from tests.support.replica import ReplicaStack, environment, received, replay_paused, replayed, wait_for

TIGHT = {"database": {"read_replica": {"max_lag_seconds": 0.05}}}


def lagging_write(stack: ReplicaStack) -> str:
    """A write the paused replica receives but does not apply; returns the primary's LSN after it."""
    from db.replica import primary_lsn, replica_connection, replica_state

    settings = stack.settings
    with database_connection(settings, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.health_probe (n int)")
        conn.execute("INSERT INTO public.health_probe VALUES (1)")
        lsn = primary_lsn(conn)
    wait_for("the replica receiving the write", lambda: received(settings, lsn))

    def lag() -> bool:
        with replica_connection(settings, autocommit=True) as conn:
            seconds = replica_state(conn).lag_seconds
        return seconds is not None and seconds > 0.1

    wait_for("the replica lagging more than 0.1 s", lag)
    return lsn


def test_health_shows_the_lag_and_a_lag_above_the_setting_is_an_issue(replica_stack: ReplicaStack) -> None:
    with environment(replica_stack.env):
        tight = load_settings(overrides=TIGHT)
        relaxed = load_settings()
    with replay_paused(replica_stack.settings):
        lsn = lagging_write(replica_stack)
        report = check_health(tight, status=Stack(tight).status())
    (issue,) = [i for i in report["issues"] if i.startswith("the read replica at")]
    assert "more than database.read_replica.max_lag_seconds (0.05 s)" in issue and "paused" in issue
    assert report["healthy"] is False and report["replication"]["lagging"] is True
    assert any(line.strip().startswith("replica lag:") and "LAGGING" in line for line in format_health(report))

    wait_for("the replica replaying the write", lambda: replayed(replica_stack.settings, lsn))
    report = check_health(relaxed, status=Stack(relaxed).status())
    assert not [i for i in report["issues"] if "read replica" in i]
    assert report["replication"]["lagging"] is False and report["replication"]["lag_seconds"] is not None


def test_a_lagging_replica_is_an_alert_the_health_flow_emits(replica_stack: ReplicaStack) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from flows.health import health_flow

    address = f"{replica_stack.settings.database.read_replica.host}:{replica_stack.settings.database.read_replica.port}"
    resource = f"marketpipe.replica.{address}"
    with environment(replica_stack.env), replay_paused(replica_stack.settings):
        lagging_write(replica_stack)
        result = health_flow(overrides=TIGHT)
    ours = [a for a in result["alerts"] if a["event"] == REPLICA_LAGGING]
    assert [a["resource_id"] for a in ours] == [resource]
    assert "lags" in ours[0]["message"] and result["healthy"] is False

    with environment(replica_stack.env):
        calm = health_flow()
    assert not [a for a in calm["alerts"] if a["event"] == REPLICA_LAGGING]

    ensure_alert_automations()
    (rule,) = [r for r in RULES if r.event == REPLICA_LAGGING]
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(rule.name)
        assert automation.trigger.expect == {REPLICA_LAGGING}

        def stored() -> Any:
            named = EventNameFilter(name=[REPLICA_LAGGING])
            page = client.read_events(EventFilter(event=named, resource=EventResourceFilter(id=[resource])), limit=5)
            return page.events[0] if page.events else None

        event = wait_for("the replica-lagging event in the events API", stored, timeout=120)
    assert event.payload["max_lag_seconds"] == 0.05 and event.payload["replay_paused"] is True
