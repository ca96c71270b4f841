"""The ingest bench's rate-limit utilization: the rate sustained over the whole seconds of a run,
not diluted by the partial seconds it starts and ends in."""

from __future__ import annotations

import pytest

from bench.ingest import utilization


def test_a_run_at_the_limit_is_fully_used_whatever_its_edges() -> None:
    # 400 requests at exactly 50/s from second 10.5: half seconds at both ends
    counts = {10: 25, **dict.fromkeys(range(11, 18), 50), 18: 25}
    report = utilization({}, counts, 50.0)
    assert report["requests"] == 400 and report["seconds"] == 9
    assert report["utilization"] == 1.0 and report["sustained_requests_per_second"] == 50.0
    assert report["utilization_with_edges"] == pytest.approx(400 / 450, abs=1e-4)


def test_an_idle_second_inside_the_run_counts_against_it() -> None:
    counts = {0: 10, 1: 50, 2: 0, 3: 50, 4: 10}
    before = {1: 0}
    report = utilization(before, counts, 50.0)
    assert report["utilization"] == pytest.approx(100 / 150, abs=1e-4)
    assert report["per_second"] == [10, 50, 0, 50, 10]  # the run's shape, idle second included


def test_only_what_was_served_between_the_two_counts_is_judged() -> None:
    before = {5: 40, 6: 10}
    after = {5: 40, 6: 30, 7: 45, 8: 45, 9: 5}
    report = utilization(before, after, 50.0)
    assert report["requests"] == 20 + 45 + 45 + 5 and report["utilization"] == pytest.approx(90 / 100)


def test_a_run_too_short_for_whole_seconds_is_judged_with_its_edges() -> None:
    report = utilization({}, {3: 20, 4: 30}, 50.0)
    assert report["utilization"] == report["utilization_with_edges"] == 0.5
    assert report["sustained_requests_per_second"] is None
    assert utilization({}, {}, 50.0)["utilization"] == 0.0
