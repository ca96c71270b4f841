"""The pipeline's health: the stack's components, the sources' circuit breakers, data freshness
per dataset and timeframe, dead-letter growth, TimescaleDB's background jobs and the live streams
(spills, drops, a stream that stopped reporting), as one dict with
``healthy``, ``issues`` and ``warnings`` (the seed's ``trigger_health_check()``; ``marketpipe health``).
A warning is reported and leaves the pipeline healthy (a background job overdue: see
:mod:`pipeline.jobs`).

Each issue is a sentence saying what is wrong and what to do. The decisions are pure functions
(:func:`dataset_freshness`, :func:`stale_datasets`, :func:`dead_letter_issues`); :func:`check_health`
only gathers their inputs.

Circuit breakers live in memory, inside the process whose sources made the requests (a flow run,
a worker). The check reports the breakers of the sources handed to it (``sources=``: those built in
this process); for the others it says ``unknown`` and shows the cross-process evidence instead:
the source's dead letters of the last hour.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psycopg

from core.calendar import local_dates, nyse_sessions
from core.errors import MarketpipeError
from pipeline.jobs import job_issues, job_warnings
from storage.streams import StreamStatus, read_stream_status
from storage.watermarks import Watermark, read_watermarks

if TYPE_CHECKING:
    from core.settings import Settings
    from pipeline.components import StackStatus
    from sources.base import BaseSource

# Closed NYSE sessions a series may miss before it is stale: a daily series may lag two sessions
# (data older than ~3 trading days is stale: a nightly job that failed once is not yet an alarm);
# an intraday series one (yesterday's session not collected by tonight's run is stale).
DEFAULT_ALLOWED_MISSED_SESSIONS: dict[str, int] = {"1day": 2, "1hour": 1, "15min": 1, "5min": 1, "1min": 1}
MAX_LOOKBACK = timedelta(days=366)  # older watermarks count "at least" a year of missed sessions
COMPONENT_ROLES = {
    "postgres": "the database",
    "lake": "the lake",
    "prefect": "Prefect",
    "sandbox": "the market sandbox",
}


@dataclass(frozen=True)
class DatasetFreshness:
    """How current one (source, dataset, timeframe) is across its symbols."""

    source: str
    dataset: str
    timeframe: str
    symbols: int
    newest_ts: datetime
    oldest_ts: datetime
    oldest_symbol: str
    missed_sessions: int  # closed sessions after the one the most lagging symbol's watermark covers
    allowed_missed_sessions: int | None  # None: not checked (datasets without a timeframe)
    stale_symbols: tuple[str, ...]

    @property
    def stale(self) -> bool:
        return bool(self.stale_symbols)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            newest_ts=self.newest_ts.isoformat(),
            oldest_ts=self.oldest_ts.isoformat(),
            stale_symbols=list(self.stale_symbols),
            stale=self.stale,
        )
        return data

    def issue(self) -> str:
        label = f"{self.source} {self.dataset}" + (f" {self.timeframe}" if self.timeframe else "")
        return (
            f"{label} data is stale: {len(self.stale_symbols)} of {self.symbols} symbol(s) miss closed sessions "
            f"(up to {self.missed_sessions}, at most {self.allowed_missed_sessions} allowed; {self.oldest_symbol} "
            f"was last committed at {self.oldest_ts:%Y-%m-%d %H:%M} UTC); run `marketpipe run` to catch up "
            "(`marketpipe backfill --gaps` repairs older holes)"
        )


def dataset_freshness(
    watermarks: Iterable[Watermark], now: datetime, thresholds: Mapping[str, int] | None = None
) -> list[DatasetFreshness]:
    """Freshness of every (source, dataset, timeframe) among ``watermarks``, calendar-aware.

    A symbol misses the NYSE sessions that have closed by ``now`` and come after the session its
    watermark falls in (weekends and holidays never count; a session still trading never counts).
    It is stale when it misses more than ``thresholds[timeframe]`` sessions; timeframes without a
    threshold (corporate actions) are reported, never stale.
    """
    thresholds = DEFAULT_ALLOWED_MISSED_SESSIONS if thresholds is None else thresholds
    marks = list(watermarks)
    if not marks:
        return []
    now_ts = pd.Timestamp(now)
    now_ts = now_ts.tz_localize(UTC) if now_ts.tzinfo is None else now_ts.tz_convert(UTC)
    stamps = pd.to_datetime([m.high_water_ts for m in marks], utc=True)
    schedule = nyse_sessions(max(stamps.min(), now_ts - MAX_LOOKBACK), now_ts)
    closed = schedule.dates[schedule.close_ns <= now_ts.value]
    session_of = local_dates(stamps)
    missed = len(closed) - np.searchsorted(closed, session_of, side="right")

    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, m in enumerate(marks):
        groups[(m.source, m.dataset, m.timeframe)].append(i)
    result = []
    for (source, dataset, timeframe), rows in sorted(groups.items()):
        allowed = thresholds.get(timeframe)
        laggard = min(rows, key=lambda i: marks[i].high_water_ts)
        stale = () if allowed is None else tuple(sorted(marks[i].symbol for i in rows if missed[i] > allowed))
        result.append(
            DatasetFreshness(
                source=source,
                dataset=dataset,
                timeframe=timeframe,
                symbols=len(rows),
                newest_ts=max(marks[i].high_water_ts for i in rows),
                oldest_ts=marks[laggard].high_water_ts,
                oldest_symbol=marks[laggard].symbol,
                missed_sessions=int(max(missed[i] for i in rows)),
                allowed_missed_sessions=allowed,
                stale_symbols=stale,
            )
        )
    return result


def stale_datasets(
    watermarks: Iterable[Watermark], now: datetime, thresholds: Mapping[str, int] | None = None
) -> list[DatasetFreshness]:
    """The datasets of :func:`dataset_freshness` with at least one stale symbol."""
    return [f for f in dataset_freshness(watermarks, now, thresholds) if f.stale]


@dataclass(frozen=True)
class DeadLetterCounts:
    """Open dead letters of one source: in total, failed (again) in the last hour, the hour before."""

    source: str
    open: int
    last_hour: int
    previous_hour: int


def dead_letter_issues(counts: Iterable[DeadLetterCounts]) -> list[str]:
    """One issue per source whose dead letters grew in the last hour."""
    return [
        f"dead letters of {c.source} are growing: {c.last_hour} request(s) failed for good in the last hour "
        f"({c.previous_hour} in the hour before, {c.open} open in total); inspect them with `marketpipe dlq list "
        f"--source {c.source}` and, once the cause is fixed, replay them with `marketpipe dlq replay`"
        for c in counts
        if c.last_hour > 0
    ]


def read_dead_letter_counts(conn: psycopg.Connection, now: datetime) -> list[DeadLetterCounts]:
    rows = conn.execute(
        """
        SELECT source, count(*),
               count(*) FILTER (WHERE last_seen > %(now)s - interval '1 hour' AND last_seen <= %(now)s),
               count(*) FILTER (WHERE last_seen > %(now)s - interval '2 hours'
                                  AND last_seen <= %(now)s - interval '1 hour')
        FROM ops.dead_letters WHERE resolved_at IS NULL GROUP BY source ORDER BY source
        """,
        {"now": now},
    ).fetchall()
    return [DeadLetterCounts(str(s), int(o), int(h), int(p)) for s, o, h, p in rows]


def component_issues(status: StackStatus, settings: Settings) -> list[str]:
    issues = []
    for name, c in status.components.items():
        if c.healthy or (name == "sandbox" and not settings.sandbox.route_vendors):
            continue
        role = COMPONENT_ROLES.get(name, name)
        issues.append(
            f"{role} ({name} at {c.address}) is not healthy: {c.detail}; start the stack with "
            "`marketpipe up` and check `marketpipe status` and its log in <state_dir>/log/"
        )
    return issues


def source_states(
    settings: Settings, sources: Mapping[str, BaseSource] | None, dead_letters: Iterable[DeadLetterCounts]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Breaker state of each configured source (observed only for ``sources`` built in this process)."""
    recent = {c.source: c.last_hour for c in dead_letters}
    names = sorted({settings.pipeline.source, *settings.vendors, *settings.sources, *(sources or {})})
    states, issues = {}, []
    for name in names:
        source = (sources or {}).get(name)
        if source is None:
            state: dict[str, Any] = {
                "source": name,
                "state": "unknown",
                "observed": False,
                "healthy": None,
                "detail": "no breaker in this process: breakers live in the process that runs the flow",
            }
        else:
            state = {**source.health(), "observed": True}
            if not state.get("healthy", True):
                issues.append(
                    f"the circuit breaker of {name} is {state.get('state')} after "
                    f"{state.get('consecutive_failures')} consecutive failures (requests resume in "
                    f"{state.get('retry_in_seconds')} s); check the vendor's status and `marketpipe dlq list "
                    f"--source {name}`"
                )
        state["dead_letters_last_hour"] = recent.get(name, 0)
        states[name] = state
    return states, issues


STREAM_SILENT_AFTER = timedelta(seconds=60)  # a running stream reports every few seconds
STREAM_LOSS_COUNTERS = ("spilled", "dropped")  # malformed frames are dead letters: their own alert
STREAM_LOSS_WINDOW = timedelta(hours=1)  # a stopped stream's losses age out like dead-letter growth


def stream_issues(streams: Iterable[StreamStatus], now: datetime) -> list[str]:
    """A running stream that stopped reporting, and a stream that spilled or dropped frames in its
    current run (or in its last one, ended within the hour): one sentence each, saying what to do."""
    issues = []
    for s in streams:
        if s.state == "running" and now - s.updated_at > STREAM_SILENT_AFTER:
            issues.append(
                f"stream {s.stream} has not reported since {s.updated_at:%Y-%m-%d %H:%M:%S} UTC although it is "
                "marked running: its process stalled or died; check the `stream` flow run (or restart "
                "`marketpipe stream --hybrid`, which fills the gap over REST)"
            )
        lost = {k: int(s.counters.get(k) or 0) for k in STREAM_LOSS_COUNTERS}
        if any(lost.values()) and (s.state == "running" or now - s.updated_at <= STREAM_LOSS_WINDOW):
            told = ", ".join(f"{n} {k}" for k, n in lost.items() if n)
            issues.append(
                f"stream {s.stream} ({s.state}, started {s.started_at:%Y-%m-%d %H:%M} UTC) lost frames: {told}; "
                "spilled frames are in the lake's raw zone (raw/source=<vendor>/dataset=stream/), dead letters in "
                "`marketpipe dlq list`; a stream that cannot keep up needs a larger streaming.buffer_size or "
                "fewer symbols per connection"
            )
    return issues


def check_health(
    settings: Settings,
    *,
    status: StackStatus,
    now: datetime | None = None,
    sources: Mapping[str, BaseSource] | None = None,
    thresholds: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Everything the health check looks at, ``healthy`` and the ``issues`` found.

    ``status`` is the stack's components as the caller found them: the supervisor's
    ``Stack.status()`` where it runs the stack, :func:`pipeline.components.probe_components` in a
    worker; its TimescaleDB background jobs, read by the same probe, are judged here."""
    from db.connect import database_connection

    now = now or datetime.now(UTC)
    issues = component_issues(status, settings)
    freshness: list[DatasetFreshness] | None = None
    dead: list[DeadLetterCounts] = []
    streams: list[StreamStatus] = []
    if status.components["postgres"].healthy:
        try:
            with database_connection(settings) as conn:
                marks = read_watermarks(conn).values()
                dead = read_dead_letter_counts(conn, now)
                streams = read_stream_status(conn)
        except (MarketpipeError, psycopg.Error) as exc:
            issues.append(
                f"the database answers but the pipeline's tables cannot be read ({exc}); "
                "apply migrations with `marketpipe db migrate`"
            )
        else:
            freshness = dataset_freshness(marks, now, thresholds)
            issues += [f.issue() for f in freshness if f.stale]
            issues += dead_letter_issues(dead)
            issues += stream_issues(streams, now)
    states, source_issues = source_states(settings, sources, dead)
    issues += source_issues
    jobs = status.jobs
    warnings: list[str] = []
    if jobs is not None:
        issues += job_issues(jobs)
        warnings += job_warnings(jobs)
    components = {
        name: {"healthy": c.healthy, "address": c.address, "detail": c.detail} for name, c in status.components.items()
    }
    ts = status.timescaledb
    return {
        "healthy": not issues,
        "issues": issues,
        "warnings": warnings,
        "checked_at": now.isoformat(),
        "components": components,
        "timescaledb": {"version": ts.version, "edition": ts.edition} if ts else None,
        "jobs": jobs.to_dict() if jobs else None,
        "sources": states,
        "streams": [s.to_dict() for s in streams],
        "freshness": None if freshness is None else [f.to_dict() for f in freshness],
        "dead_letters": {
            "open": sum(c.open for c in dead),
            "last_hour": sum(c.last_hour for c in dead),
            "previous_hour": sum(c.previous_hour for c in dead),
            "by_source": {c.source: asdict(c) for c in dead},
        },
    }
