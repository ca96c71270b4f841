"""A lagging read replica: the health issue and the alert built from the health report."""

from __future__ import annotations

from core.settings import Settings
from db.replica import ReplicaState
from pipeline.alerts import REPLICA_LAGGING, replica_alerts
from pipeline.components import ComponentStatus, ReplicationInfo, StackStatus
from pipeline.health import replication_issues


def status(lag: float | None, max_lag: float = 30.0, paused: bool = False) -> StackStatus:
    state = ReplicaState(True, "0/5000000", "0/4000000", lag, None, paused)
    replica = ComponentStatus("replica", True, "127.0.0.1:5434", 11, "standby")
    return StackStatus({"replica": replica}, replication=ReplicationInfo(state, max_lag, 1024))


def test_a_lag_within_the_setting_is_no_issue() -> None:
    assert replication_issues(status(3.0), Settings()) == []
    assert replication_issues(StackStatus({}), Settings()) == []


def test_a_lag_above_the_setting_or_unknown_is_an_issue_naming_it() -> None:
    (issue,) = replication_issues(status(45.25, paused=True), Settings())
    assert "lags 45.2 s" in issue and "max_lag_seconds (30 s)" in issue and "pg_wal_replay_resume" in issue
    (unknown,) = replication_issues(status(None), Settings())
    assert "replayed nothing" in unknown


def test_the_alert_is_about_the_replica_with_the_reports_issue() -> None:
    replication = {"address": "127.0.0.1:5434", **status(45.0).replication.to_dict()}  # type: ignore[union-attr]
    issue = "the read replica at 127.0.0.1:5434 lags 45.0 s behind the primary"
    (alert,) = replica_alerts(replication, ["something else", issue])
    assert (alert.event, alert.message) == (REPLICA_LAGGING, issue)
    assert alert.resource_id == "marketpipe.replica.127.0.0.1:5434"
    assert alert.details["behind_bytes"] == 1024
    assert replica_alerts({**replication, "lagging": False}, [issue]) == []
    assert replica_alerts(None, []) == []
