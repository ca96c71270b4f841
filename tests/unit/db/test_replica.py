"""Which reads the replica may serve: its lag against the read's bound, and read-your-writes."""

from __future__ import annotations

from db.replica import ReplicaState, replica_refusal


def state(lag: float | None, *, in_recovery: bool = True, replayed: bool | None = None) -> ReplicaState:
    return ReplicaState(in_recovery, "0/3000100", "0/3000000", lag, None, False, replayed)


def test_a_replica_within_the_bound_serves_the_read() -> None:
    assert replica_refusal(state(0.0), 30.0) is None
    assert replica_refusal(state(12.5), 30.0) is None


def test_a_replica_lagging_more_than_the_bound_does_not() -> None:
    refusal = replica_refusal(state(12.5), 5.0)
    assert refusal is not None and "12.500 s" in refusal and "bound of 5 s" in refusal


def test_a_read_of_ones_own_write_needs_its_lsn_replayed() -> None:
    assert replica_refusal(state(0.1, replayed=True), 30.0, "0/3000000") is None
    refusal = replica_refusal(state(0.1, replayed=False), 30.0, "0/3000100")
    assert refusal is not None and "0/3000100" in refusal


def test_a_server_out_of_recovery_or_that_replayed_nothing_serves_nothing() -> None:
    assert "not a standby" in str(replica_refusal(state(0.0, in_recovery=False), 30.0))
    assert "replayed nothing" in str(replica_refusal(state(None), 30.0))
