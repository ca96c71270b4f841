"""Delivery faults: seeded, and they disturb frames without losing a message."""

from __future__ import annotations

from sandbox.streams.faults import DeliveryFaults, drawn


def test_delivery_faults_are_seeded_and_keep_every_message() -> None:
    frame = [{"n": i} for i in range(200)]
    faults = DeliveryFaults(seed=5, duplicate=0.1, reorder=0.1)
    sent, again = faults.disturb(7, frame)
    assert sorted(m["n"] for m in sent) == list(range(200)) and sent != frame
    assert 0 < len(again) < 60 and faults.disturb(7, frame) == (sent, again)
    assert DeliveryFaults(malformed=1.0).corrupt(0, '[{"a":1}]') == '[{"a'
    assert DeliveryFaults(malformed=0.0).corrupt(0, "[]") is None


def test_drawn_hits_about_the_fraction_and_depends_on_the_salt() -> None:
    hits = drawn(10_000, 0.1, 1, "late")
    assert 800 < int(hits.sum()) < 1200
    assert (hits == drawn(10_000, 0.1, 1, "late")).all() and not (hits == drawn(10_000, 0.1, 2, "late")).all()
    assert not drawn(100, 0.0, 1).any()
