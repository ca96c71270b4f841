"""A run's heap: what was alive before it is out of the cyclic collector's walks until it ends."""

from __future__ import annotations

import gc

from core.heap import frozen_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_objects_alive_before_the_run_are_frozen_until_it_ends() -> None:
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the imported modules' objects, at least
        with frozen_heap():  # a sub-flow's run inside: nothing more frozen, nothing released
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
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
