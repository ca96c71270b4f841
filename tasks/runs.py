"""What every recorded flow run does around its work: time it, load its settings once, build its
resources, and record the summary it produced in ``ops.pipeline_runs``.

A flow body reads::

    with recorded_run("process", overrides) as run:
        ...  # the stages, on run.resources
        run.summary = ProcessSummary(...)
    return run.summary.to_dict()

The summary's ``seconds`` is stamped when the body ends, just before it is recorded. A body that
raises records nothing (the facade records the failed run; see ``marketpipe.api``), as before.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from prefect.runtime import flow_run

from core.heap import frozen_heap
from core.settings import Settings, load_settings
from pipeline.metrics import RunFigures, record_run, run_metrics
from tasks.resources import RunResources


class TimedSummary(Protocol):
    """A typed flow summary (see :class:`pipeline.metrics.RunSummary`) that carries its run time."""

    seconds: float

    def figures(self) -> RunFigures: ...

    def record(self) -> dict[str, Any]: ...


@dataclass
class RecordedRun:
    """One flow run in progress: its settings, resources and id; the body sets ``summary``."""

    flow: str
    resources: RunResources
    run_id: str
    began: float = field(default_factory=time.monotonic)
    summary: Any = None  # the flow's TimedSummary, set by the body

    @property
    def settings(self) -> Settings:
        return self.resources.settings

    def elapsed(self) -> float:
        return time.monotonic() - self.began


@contextmanager
def recorded_run(flow: str, overrides: dict[str, Any] | None) -> Iterator[RecordedRun]:
    """Time the body, give it the run's settings and resources, record its ``summary`` at the end
    (as a sub-flow of the parent run, if any); close the run's connections whatever happens. What
    was alive before the run is out of the garbage collector's walks meanwhile (:mod:`core.heap`)."""
    began = time.monotonic()
    settings = load_settings(overrides=overrides)
    with frozen_heap(), RunResources.from_settings(settings) as resources:
        run = RecordedRun(flow, resources, str(flow_run.get_id() or uuid.uuid4()), began)
        yield run
        summary: TimedSummary | None = run.summary
        if summary is None:
            return
        summary.seconds = run.elapsed()
        metrics = run_metrics(summary, flow, parent_run_id=flow_run.parent_flow_run_id)
        with run.resources.connect() as conn:
            record_run(conn, metrics)
