"""The stack's components as the pipeline sees them: does PostgreSQL, the lake, Prefect's API and
the market sandbox answer?

A worker asks these probes without managing any process (its stack may be docker compose's or a
cloud's). The supervisor (:class:`stack.supervisor.Stack`) runs the same probes and adds what only
it knows: the pids of the processes it started, and "not running" for one of them that is gone.
Either way the answer is a :class:`StackStatus`, the value :func:`pipeline.health.check_health`
takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

from core.errors import MarketpipeError
from db.connect import database_connection
from db.replica import ReplicaState, replica_connection, replica_state
from pipeline.jobs import JobsReport, read_jobs
from storage.lake import Lake

if TYPE_CHECKING:
    from core.settings import Settings


@dataclass(frozen=True)
class TimescaleInfo:
    version: str
    edition: str  # 'apache' (Debian's build, no compression) or 'timescale' (full edition)
    jobs: JobsReport | None = field(default=None, compare=False)  # its background jobs (pipeline.jobs)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    healthy: bool
    address: str
    pid: int | None
    detail: str


@dataclass(frozen=True)
class ReplicationInfo:
    """The read replica's lag as the standby reports it (:func:`db.replica.replica_state`) and the
    primary's WAL position when the probe read it (``behind_bytes``: primary's minus replayed)."""

    state: ReplicaState
    max_lag_seconds: float
    behind_bytes: int | None = None

    @property
    def lagging(self) -> bool:
        """Lag above ``database.read_replica.max_lag_seconds`` (or unknown: nothing replayed)."""
        lag = self.state.lag_seconds
        return lag is None or lag > self.max_lag_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.state.to_dict(),
            "behind_bytes": self.behind_bytes,
            "max_lag_seconds": self.max_lag_seconds,
            "lagging": self.lagging,
        }


@dataclass(frozen=True)
class StackStatus:
    components: dict[str, ComponentStatus]
    timescaledb: TimescaleInfo | None = None
    replication: ReplicationInfo | None = None  # when a read replica is configured or run

    @property
    def healthy(self) -> bool:
        """Whether every component answers. A failed background job is reported in ``jobs`` and
        is a health issue (``marketpipe health``), but the database serving it is still up."""
        return all(c.healthy for c in self.components.values())

    @property
    def jobs(self) -> JobsReport | None:
        return self.timescaledb.jobs if self.timescaledb else None

    def to_dict(self) -> dict[str, Any]:
        ts = self.timescaledb
        return {
            "healthy": self.healthy,
            "components": {
                name: {k: v for k, v in asdict(c).items() if k != "name"} for name, c in self.components.items()
            },
            "timescaledb": {"version": ts.version, "edition": ts.edition} if ts else {"version": None, "edition": None},
            "jobs": self.jobs.to_dict() if self.jobs else None,
            "replication": self.replication.to_dict() if self.replication else None,
        }


def query_timescale(conn: psycopg.Connection) -> TimescaleInfo | None:
    """The extension's version and edition, and the background jobs of that edition."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if row is None:
        return None
    license_row = conn.execute("SHOW timescaledb.license").fetchone()
    edition = license_row[0] if license_row else "unknown"
    return TimescaleInfo(version=row[0], edition=edition, jobs=read_jobs(conn, edition))


# ---------------------------------------------------------------------------------------------
# One probe per component: is it answering?

COMPONENTS = ("postgres", "replica", "lake", "prefect", "sandbox")


def component_address(settings: Settings, name: str) -> str:
    """Where component ``name`` answers, as reported."""
    return {
        "postgres": f"{settings.database.host}:{settings.database.port}",
        "replica": f"{settings.database.read_replica.host}:{settings.database.read_replica.port}",
        "lake": settings.lake.endpoint_url,
        "prefect": settings.prefect.ui_url,
        "sandbox": settings.sandbox.base_url,
    }[name]


def probe_postgres(settings: Settings) -> tuple[ComponentStatus, TimescaleInfo | None]:
    address = component_address(settings, "postgres")
    try:
        with database_connection(settings, autocommit=True) as conn:
            info = query_timescale(conn)
            row = conn.execute("SHOW server_version").fetchone()
    except MarketpipeError as exc:
        return ComponentStatus("postgres", False, address, None, str(exc)), None
    if info is None:
        return ComponentStatus("postgres", False, address, None, "timescaledb extension missing"), None
    server_version = row[0] if row else "unknown"
    detail = f"PostgreSQL {server_version}, TimescaleDB {info.version} ({info.edition} edition)"
    return ComponentStatus("postgres", True, address, None, detail), info


def probe_replica(settings: Settings) -> tuple[ComponentStatus, ReplicationInfo | None]:
    """Healthy when the replica answers as a standby; its lag is judged by the health check."""
    address = component_address(settings, "replica")
    replica = settings.database.read_replica
    try:
        with replica_connection(settings, autocommit=True) as conn:
            state = replica_state(conn)
    except (MarketpipeError, psycopg.Error) as exc:
        return ComponentStatus("replica", False, address, None, str(exc)), None
    if not state.in_recovery:
        detail = "answers but is not a standby (pg_is_in_recovery() is false): reads would miss the primary's writes"
        return ComponentStatus("replica", False, address, None, detail), None
    behind = None
    if state.replay_lsn is not None:
        try:
            with database_connection(settings, autocommit=True) as primary:
                row = primary.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (state.replay_lsn,)
                ).fetchone()
            behind = max(0, int(row[0])) if row else None
        except (MarketpipeError, psycopg.Error):
            behind = None  # the primary's own probe reports it
    info = ReplicationInfo(state, replica.max_lag_seconds, behind)
    lag = "unknown (nothing replayed yet)" if state.lag_seconds is None else f"{state.lag_seconds:.1f} s"
    detail = f"standby of {component_address(settings, 'postgres')}, replay lag {lag}" + (
        f", {behind:,} bytes behind" if behind is not None else ""
    )
    if state.replay_paused:
        detail += ", replay PAUSED"
    return ComponentStatus("replica", True, address, None, detail), info


def probe_lake(settings: Settings) -> ComponentStatus:
    lake = settings.lake
    address = component_address(settings, "lake")
    try:
        client = Lake.from_settings(lake)
        with httpx.Client(timeout=2.0) as http:
            http.get(address)  # any answer means the S3 API is up; auth is checked next
        exists = client.bucket_exists()
    except (MarketpipeError, httpx.HTTPError) as exc:
        return ComponentStatus("lake", False, address, None, f"{type(exc).__name__}: {exc}")
    detail = f"bucket {lake.bucket} " + ("ready" if exists else "missing (created by `marketpipe up`)")
    return ComponentStatus("lake", True, address, None, detail)


def probe_prefect(settings: Settings) -> ComponentStatus:
    url = f"{settings.prefect.resolved_api_url}/health"
    return probe_http("prefect", url, component_address(settings, "prefect"), "UI and API ready")


def probe_sandbox(settings: Settings) -> ComponentStatus:
    url = f"{settings.sandbox.base_url}/_sandbox/health"
    return probe_http("sandbox", url, component_address(settings, "sandbox"), f"market seed {settings.sandbox.seed}")


def probe_http(name: str, url: str, address: str, ok_detail: str) -> ComponentStatus:
    """Healthy when ``url`` answers HTTP 200 within two seconds."""
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        return ComponentStatus(name, False, address, None, f"no answer from {url} ({type(exc).__name__})")
    if response.status_code != 200:
        return ComponentStatus(name, False, address, None, f"{url} answered HTTP {response.status_code}")
    return ComponentStatus(name, True, address, None, ok_detail)


def probe_component(settings: Settings, name: str) -> tuple[ComponentStatus, TimescaleInfo | ReplicationInfo | None]:
    """The probe of component ``name``, and the TimescaleDB (PostgreSQL) or the lag (replica) it found."""
    if name == "postgres":
        return probe_postgres(settings)
    if name == "replica":
        return probe_replica(settings)
    probe = {"lake": probe_lake, "prefect": probe_prefect, "sandbox": probe_sandbox}[name]
    return probe(settings), None


def probe_components(settings: Settings, pids: Mapping[str, int | None] | None = None) -> StackStatus:
    """Probe every component the settings use (the sandbox only when enabled), in parallel.

    ``pids`` is for a caller that runs some components itself (the supervisor): the pid of each, or
    None when it should run but does not; such a component is reported "not running" without a
    probe, the others carry their pid. The read replica is probed when ``database.read_replica``
    is enabled or the caller runs one."""
    running = pids or {}
    optional = {"sandbox": settings.sandbox.enabled, "replica": settings.database.read_replica.enabled}
    names = [n for n in COMPONENTS if optional.get(n, True) or n in running]

    def one(name: str) -> tuple[ComponentStatus, TimescaleInfo | ReplicationInfo | None]:
        if name in running and running[name] is None:
            return ComponentStatus(name, False, component_address(settings, name), None, "not running"), None
        status, info = probe_component(settings, name)
        return replace(status, pid=running.get(name)), info

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = dict(zip(names, pool.map(one, names), strict=True))
    components = {name: status for name, (status, _) in results.items()}
    timescaledb, replication = results["postgres"][1], results["replica"][1] if "replica" in results else None
    return StackStatus(
        components=components,
        timescaledb=timescaledb if isinstance(timescaledb, TimescaleInfo) else None,
        replication=replication if isinstance(replication, ReplicationInfo) else None,
    )
