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
a worker), and each process publishes its breakers' changes of state to ``ops.circuit_breakers``
(:mod:`sources.breaker_store`). The check reports the breakers of the sources handed to it
(``sources=``: those built in this process) and, for the others, what was last published: an
open breaker is an issue, a half-open one (its cool-down passed, no request has tried since) a
warning. Only when breakers are not shared (``collection.circuit_share_refresh_seconds: 0``) does
it say ``unknown``. :func:`format_health` is the report's human form (``marketpipe health``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psycopg

from core.calendar import local_dates, nyse_sessions
from core.errors import MarketpipeError
from pipeline.jobs import job_issues, job_warnings
from sources.breaker_store import read_breakers
from sources.resilience import BreakerRecord, BreakerState
from storage.stream_gaps import StreamGap, read_unfilled_gaps
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
    "replica": "the read replica",
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


def replication_issues(status: StackStatus, settings: Settings) -> list[str]:
    """The read replica lagging more than ``database.read_replica.max_lag_seconds`` (or having
    replayed nothing): its reads go to the primary meanwhile, so the primary carries every read."""
    replication = status.replication
    if replication is None or not replication.lagging:
        return []
    replica = settings.database.read_replica
    lag = replication.state.lag_seconds
    behind = f"{lag:.1f} s" if lag is not None else "an unknown time (it has replayed nothing yet)"
    paused = (
        " (its replay is paused: SELECT pg_wal_replay_resume() as its superuser)"
        if replication.state.replay_paused
        else ""
    )
    return [
        f"the read replica at {replica.host}:{replica.port} lags {behind} behind the primary, more than "
        f"database.read_replica.max_lag_seconds ({replication.max_lag_seconds:g} s){paused}; reads go to the primary "
        "until it catches up: check its log (<state_dir>/log/replica.log) and the primary's pg_stat_replication"
    ]


def source_states(
    settings: Settings,
    sources: Mapping[str, BaseSource] | None,
    dead_letters: Iterable[DeadLetterCounts],
    shared: Mapping[str, BreakerRecord] | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Breaker state of each configured source: the one built in this process (``sources``), else the
    one last published by any process (``shared``: None when breakers are not shared or could not
    be read, then ``unknown``); a source no process published a change for is closed."""
    now = now or datetime.now(UTC)
    recent = {c.source: c.last_hour for c in dead_letters}
    names = sorted({settings.pipeline.source, *settings.vendors, *settings.sources, *(sources or {}), *(shared or {})})
    states, issues = {}, []
    for name in names:
        source = (sources or {}).get(name)
        if source is not None:
            state: dict[str, Any] = {**source.health(), "observed": True}
        elif shared is None:
            state = {
                "source": name,
                "state": "unknown",
                "observed": False,
                "healthy": None,
                "detail": "breakers are not shared (collection.circuit_share_refresh_seconds: 0) or unreadable",
            }
        elif name in shared:
            state = published_breaker_state(shared[name], now)
        else:
            state = {
                "source": name,
                "state": BreakerState.CLOSED.value,
                "observed": True,
                "healthy": True,
                "detail": "no opening published by any process",
            }
        if state.get("state") == BreakerState.OPEN.value:
            issues.append(open_breaker_issue(name, state))
        state["dead_letters_last_hour"] = recent.get(name, 0)
        states[name] = state
    return states, issues


def published_breaker_state(record: BreakerRecord, now: datetime) -> dict[str, Any]:
    """A published breaker as the health report shows it, its state as of ``now``."""
    state = record.state_at(now)
    return {
        "source": record.source,
        "state": state.value,
        "observed": True,
        "healthy": state is BreakerState.CLOSED,
        "consecutive_failures": record.consecutive_failures,
        "cooldown_seconds": record.cooldown_seconds,
        "retry_in_seconds": round(record.retry_in_seconds(now), 3),
        "opened_at": record.opened_at.isoformat() if record.opened_at else None,
        "last_error": record.last_error,
        "seen_by": record.written_by,
        "updated_at": record.updated_at.isoformat(),
    }


def open_breaker_issue(name: str, state: Mapping[str, Any]) -> str:
    opened = state.get("opened_at")
    since = f" since {datetime.fromisoformat(opened):%Y-%m-%d %H:%M:%S} UTC" if opened else ""
    error = state.get("last_error")
    return (
        f"the circuit breaker of {name} is open{since} after {state.get('consecutive_failures')} consecutive "
        f"failures (requests resume in {state.get('retry_in_seconds')} s"
        + (f"; seen by {state['seen_by']}" if state.get("seen_by") else "")
        + ")"
        + (f"; last error: {error}" if error else "")
        + f"; check the vendor's status and `marketpipe dlq list --source {name}`"
    )


def breaker_warnings(states: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A half-open breaker: its cool-down passed and no request has tried the vendor since (or a
    trial is out); the next request finds out, so it is news, not yet a failure."""
    return [
        f"the circuit breaker of {name} is half-open: it opened at {state.get('opened_at')} after "
        f"{state.get('consecutive_failures')} consecutive failures and its cool-down has passed; the next "
        f"request to {name} is a trial that closes it or opens it again"
        for name, state in states.items()
        if state.get("state") == BreakerState.HALF_OPEN.value
    ]


STREAM_SILENT_AFTER = timedelta(seconds=60)  # a running stream reports every few seconds
STREAM_LOSS_COUNTERS = ("spilled", "dropped")  # malformed frames are dead letters: their own alert
STREAM_LOSS_WINDOW = timedelta(hours=1)  # a stopped stream's losses age out like dead-letter growth
STREAM_FUTURE_WINDOW = timedelta(minutes=15)  # a batch mostly stamped in the future this recent: a clock


STREAM_GAP_AFTER = timedelta(minutes=10)  # a hybrid stream's span unfilled this long: past its retries' first


def stream_gap_issues(gaps: Iterable[StreamGap], now: datetime, older_than: timedelta = STREAM_GAP_AFTER) -> list[str]:
    """The spans a hybrid stream missed that are still unfilled ``older_than`` after they were
    recorded (ops.stream_gaps, storage.stream_gaps): read from the table, so a span its process
    left open is named after the process is gone. One sentence per span."""
    spans: dict[str, list[StreamGap]] = {}
    for gap in gaps:
        if gap.recorded_at is not None and now - gap.recorded_at > older_than:
            spans.setdefault(gap.span_id, []).append(gap)
    issues = []
    for rows in spans.values():
        first = rows[0]
        symbols = sorted({r.symbol for r in rows})
        named = ", ".join(symbols[:5]) + (f" and {len(symbols) - 5} more" if len(symbols) > 5 else "")
        start, end = min(r.span_start for r in rows), max(r.span_end for r in rows)
        state = "given up by the run that recorded it" if first.state == "given_up" else "open"
        issues.append(
            f"stream {first.stream}: the span of {named} ({', '.join(sorted({r.dataset for r in rows}))}) "
            f"from {start.isoformat()} to {end.isoformat()} (after a {first.cause}), recorded "
            f"{first.recorded_at:%Y-%m-%d %H:%M:%S} UTC, is not filled ({state}; {first.retries} failed "
            f"retr{'y' if first.retries == 1 else 'ies'}, last error: {first.error or 'none recorded'}): run "
            f"`marketpipe stream --hybrid` for {named}, which fetches it first"
        )
    return issues


def all_stream_issues(streams: Sequence[StreamStatus], gaps: Iterable[StreamGap], now: datetime) -> list[str]:
    """:func:`stream_issues` and :func:`stream_gap_issues`, a span named once: the spans of a stream
    whose status row already names them (alive, or stopped within the hour, with spans its catch-up
    could not fill: :func:`_held_issue`) are not named again from ops.stream_gaps."""
    named = {s.stream for s in streams if _held_issue(s, now) is not None}
    return stream_issues(streams, now) + stream_gap_issues([g for g in gaps if g.stream not in named], now)


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
        unconnected = _unconnected_issue(s, now)
        if unconnected is not None:
            issues.append(unconnected)
        skewed = _future_issue(s, now)
        if skewed is not None:
            issues.append(skewed)
        held = _held_issue(s, now)
        if held is not None:
            issues.append(held)
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


def _future_issue(s: StreamStatus, now: datetime) -> str | None:
    """A stream a recent micro-batch of which was mostly stamped in the future (sources.stream
    ``future_heavy_ns``): every such row is refused, so it stores next to nothing while it reports
    and beats as usual."""
    at_ns = s.counters.get("future_heavy_ns")
    if not at_ns:
        return None
    at = datetime.fromtimestamp(int(at_ns) / 1e9, tz=UTC)
    if now - at > STREAM_FUTURE_WINDOW:
        return None
    share = float(s.counters.get("future_heavy_share") or 0)
    return (
        f"stream {s.stream}: {share:.0%} of a micro-batch at {at:%Y-%m-%d %H:%M:%S} UTC was stamped more than "
        f"streaming.max_event_skew_seconds after it was received ({int(s.counters.get('future_events') or 0)} "
        "such rows in this run, refused and dead-lettered, so no bars come from them): this host's clock most "
        "likely runs behind the vendor's; check its time sync (NTP: timedatectl, chronyc tracking), then "
        "`marketpipe dlq list` for the refused rows"
    )


def _held_issue(s: StreamStatus, now: datetime) -> str | None:
    """A hybrid stream with a span its REST catch-up could not fill, past one retry (its counters
    ``open_spans``, ``open_span``, ...; streaming.service): the data after it is stored, but the
    trades and bars watermarks of its symbols stay before it, so their freshness looks stale."""
    if not int(s.counters.get("open_spans") or 0) or not int(s.counters.get("open_span_retries") or 0):
        return None
    if s.state != "running" and now - s.updated_at > STREAM_LOSS_WINDOW:
        return None
    since = (
        datetime.fromisoformat(str(s.counters.get("open_span_since"))) if s.counters.get("open_span_since") else None
    )
    when = f" since {since:%Y-%m-%d %H:%M:%S} UTC" if since is not None else ""
    return (
        f"stream {s.stream} ({s.state}) has {s.counters['open_spans']} span(s) its REST catch-up could not fill"
        f"{when}, the earliest {s.counters.get('open_span')}, tried again {s.counters['open_span_retries']} "
        f"time(s) (last error: {s.counters.get('open_span_error') or 'no answer in time'}): the trades and bars "
        "watermarks of its symbols stay before it, so they look stale; check the vendor's REST API and key; the "
        "stream retries a few times, then leaves the span to the next `marketpipe stream --hybrid` run"
    )


def _unconnected_issue(s: StreamStatus, now: datetime) -> str | None:
    """A running stream without a connection for longer than ``STREAM_SILENT_AFTER``: it reports
    (its process lives) but reads nothing, and sends no heartbeat."""
    since_text = s.counters.get("unconnected_since")
    if s.state != "running" or s.counters.get("connected", True) or not since_text:
        return None
    since = datetime.fromisoformat(str(since_text))
    if now - since <= STREAM_SILENT_AFTER:
        return None
    error = s.counters.get("last_error") or "none recorded"
    if not int(s.counters.get("connects") or 0):
        what = f"has not connected since it started at {since:%Y-%m-%d %H:%M:%S} UTC: every connect failed"
    else:
        what = f"has had no connection since {since:%Y-%m-%d %H:%M:%S} UTC"
    return (
        f"stream {s.stream} {what} (last error: {error}); it keeps retrying, but reads nothing: check "
        f"vendors.{s.source}.stream_url (or the flow's url), the key, and the vendor's status"
    )


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
    gaps: list[StreamGap] = []
    shared: dict[str, BreakerRecord] | None = None
    if status.components["postgres"].healthy:
        try:
            with database_connection(settings) as conn:
                marks = read_watermarks(conn).values()
                dead = read_dead_letter_counts(conn, now)
                streams = read_stream_status(conn)
                gaps = read_unfilled_gaps(conn)
                if settings.collection.circuit_share_refresh_seconds:
                    shared = read_breakers(conn)
        except (MarketpipeError, psycopg.Error) as exc:
            issues.append(
                f"the database answers but the pipeline's tables cannot be read ({exc}); "
                "apply migrations with `marketpipe db migrate`"
            )
        else:
            freshness = dataset_freshness(marks, now, thresholds)
            issues += [f.issue() for f in freshness if f.stale]
            issues += dead_letter_issues(dead)
            issues += all_stream_issues(streams, gaps, now)
    states, source_issues = source_states(settings, sources, dead, shared, now)
    issues += source_issues
    jobs = status.jobs
    warnings: list[str] = breaker_warnings(states)
    if jobs is not None:
        issues += job_issues(jobs)
        warnings += job_warnings(jobs)
    issues += replication_issues(status, settings)
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
        "replication": (
            {"address": status.components["replica"].address, **status.replication.to_dict()}
            if status.replication is not None and "replica" in status.components
            else None
        ),
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


def _when(iso: str | None) -> str:
    return "-" if not iso else f"{datetime.fromisoformat(iso).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _breaker_line(name: str, state: Mapping[str, Any]) -> str:
    value = str(state.get("state"))
    mark = value if state.get("healthy") is not False else value.upper()
    dead = f"dead letters: {state.get('dead_letters_last_hour', 0)} in the last hour"
    if value in (BreakerState.OPEN.value, BreakerState.HALF_OPEN.value):
        seen = f", seen by {state['seen_by']}" if state.get("seen_by") else ""
        error = f"; last error: {state['last_error']}" if state.get("last_error") else ""
        what = (
            f"opened {_when(state.get('opened_at'))} after {state.get('consecutive_failures')} failures, "
            f"resumes in {state.get('retry_in_seconds')} s{seen}{error}"
        )
    else:
        what = str(state.get("detail") or f"{state.get('consecutive_failures', 0)} consecutive failures")
    return f"  {name:<10} {mark:<10} {dead}; {what}"


def format_health(report: Mapping[str, Any]) -> list[str]:
    """The health report as ``marketpipe health`` prints it: the verdict, then everything that was
    checked (components, TimescaleDB's jobs, each source's breaker and dead letters, each dataset's
    freshness against the sessions it may miss, the streams), then the issues and warnings."""
    from pipeline.jobs import JobsReport

    issues, warnings = report["issues"], report["warnings"]
    verdict = "healthy" if report["healthy"] else f"UNHEALTHY: {len(issues)} issue(s)"
    lines = [
        f"{verdict} (checked at {_when(report['checked_at'])}" + (f", {len(warnings)} warning(s))" if warnings else ")")
    ]
    lines += ["", "components:"]
    for name, c in report["components"].items():
        lines.append(f"  {name:<10} {'healthy' if c['healthy'] else 'UNHEALTHY':<10} {c['address']:<28} {c['detail']}")
    ts = report.get("timescaledb")
    if ts:
        lines.append(f"  TimescaleDB {ts['version']}, edition: {ts['edition']}")
    if report.get("jobs"):
        lines += [f"  {line}" for line in JobsReport.from_dict(report["jobs"]).lines()]
    replication = report.get("replication")
    if replication:
        lag = replication["lag_seconds"]
        mark = "LAGGING" if replication["lagging"] else "ok"
        lines.append(
            f"  replica lag: {'unknown' if lag is None else f'{lag:.1f} s'} of {replication['max_lag_seconds']:g} s "
            f"allowed ({mark}), replayed up to {replication['replay_lsn']}"
            + (f", {replication['behind_bytes']:,} bytes behind" if replication.get("behind_bytes") is not None else "")
        )
    dead = report["dead_letters"]
    lines += [
        "",
        f"sources (circuit breaker; dead letters: {dead['open']} open, {dead['last_hour']} in the last hour):",
    ]
    lines += [_breaker_line(name, state) for name, state in report["sources"].items()]
    freshness = report.get("freshness")
    lines += ["", "datasets (closed NYSE sessions missed since the last committed data, against those allowed):"]
    if freshness is None:
        lines.append("  not checked: the database cannot be read")
    elif not freshness:
        lines.append("  none collected yet")
    for f in freshness or []:
        label = " ".join(p for p in (f["source"], f["dataset"], f["timeframe"]) if p)
        allowed = f["allowed_missed_sessions"]
        judged = "not judged" if allowed is None else f"missed {f['missed_sessions']} of {allowed} allowed"
        verdict = "STALE: " + ", ".join(f["stale_symbols"][:10]) if f["stale"] else "fresh"
        lines.append(f"  {label:<24} {f['symbols']:>5} symbol(s), newest {_when(f['newest_ts'])}, {judged}: {verdict}")
    if report.get("streams"):
        lines += ["", "streams:"]
        lines += [
            f"  {st['stream']:<10} {st['state']:<10} {st['symbols']} symbol(s), last report {_when(st['updated_at'])}"
            for st in report["streams"]
        ]
    if issues:
        lines += ["", "issues:"] + [f"- {issue}" for issue in issues]
    if warnings:
        lines += ["", "warnings:"] + [f"- {warning}" for warning in warnings]
    return lines
