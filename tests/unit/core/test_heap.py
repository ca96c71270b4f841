"""A run's heap: what was alive before it is out of the cyclic collector's walks until it ends."""

from __future__ import annotations

import gc

from core.heap import frozen_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_objects_alive_before_the_run_are_frozen_until_it_ends() -> None:
    """(The frozen count can only fall meanwhile: a frozen object freed by its reference count
    leaves it, as other tests' objects do when the whole suite runs.)"""
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the imported modules' objects, at least
        made = [[i] for i in range(10_000)]  # tracked objects made during the run
        with frozen_heap():  # a sub-flow's run inside: nothing more frozen, nothing released
            assert 1000 < gc.get_freeze_count() <= frozen
        assert 1000 < gc.get_freeze_count() <= frozen
        assert len(made) == 10_000
    assert gc.get_freeze_count() == 0


def test_garbage_made_during_the_run_is_still_collected() -> None:
    with frozen_heap():
        gc.collect()
        Node()  # unreachable at once, kept alive only by its own cycle
        assert gc.collect() >= 1


def test_an_exception_in_the_run_unfreezes_the_heap() -> None:
    try:
        with frozen_heap():
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0
