"""The cyclic garbage collector during a run: what was alive when the run began is not walked again.

A run allocates many objects that live until its end (parsed frames, per-symbol results, the
Prefect client's state), so the collector's oldest generation grows and a full collection is
triggered every so often. Each full collection walks every tracked object of the process, most of
them the imported libraries' (pandas, Prefect, pydantic: ~220,000 objects in a flow process):
measured on the ingest plain path, 2 full collections of ~140 ms each for 100 symbols, 8.5 % of the
run's CPU. :func:`frozen_heap` moves the objects alive at the start of a run out of the collector's
view (``gc.freeze``) and back at its end (``gc.unfreeze``), so a full collection walks only what the
run made and nothing is kept from the collector for longer than the run.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_DEPTH = 0  # runs inside runs (a pipeline's sub-flows) freeze once, unfreeze at the outermost end


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Objects alive now are ignored by the cyclic collector until the outermost block ends."""
    global _DEPTH
    with _LOCK:
        if _DEPTH == 0:
            gc.freeze()
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                gc.unfreeze()
