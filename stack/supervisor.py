"""The embedded stack: PostgreSQL + TimescaleDB, the S3 lake, the Prefect server, the market sandbox.

``Stack.up()`` starts what is not running (PostgreSQL first, then the others in parallel), applies
migrations, creates the lake bucket and waits until every component reports healthy.
``Stack.down()`` stops what it started. ``Stack.status()`` asks each component for its health.
Components configured as external (``lake.endpoint``, ``prefect.api_url``, ``database.embedded:
false``) are not started, only health-checked.
"""

from __future__ import annotations

import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from db.connect import database_connection
from db.migrate import migrate
from stack.postgres import EmbeddedPostgres, TimescaleInfo, query_timescale
from core.errors import MarketpipeError, PortInUseError, ServiceError
from stack.daemon import ManagedProcess, port_free, tail
from core.settings import Settings
from storage.lake import Lake

GRPC_OFFSET = 10000  # SeaweedFS derives gRPC ports as HTTP port + 10000; we pass them explicitly


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    healthy: bool
    address: str
    pid: int | None
    detail: str


@dataclass(frozen=True)
class StackStatus:
    components: dict[str, ComponentStatus]
    timescaledb: TimescaleInfo | None = None

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components.values())

    def to_dict(self) -> dict:
        return {
            "healthy": self.healthy,
            "components": {
                name: {k: v for k, v in asdict(c).items() if k != "name"} for name, c in self.components.items()
            },
            "timescaledb": asdict(self.timescaledb) if self.timescaledb else {"version": None, "edition": None},
        }


@dataclass
class UpReport:
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    migrations_applied: list[str] = field(default_factory=list)
    bucket_created: bool = False
    seconds: float = 0.0


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.postgres = EmbeddedPostgres(settings.database, settings.state_dir)
        bin_dir = Path(sys.executable).parent
        run, log = self.state_dir / "run", self.state_dir / "log"
        lake = settings.lake
        self.lake_process = ManagedProcess(
            name="lake",
            argv=[
                _executable(bin_dir, "weed"), "mini",
                f"-dir={self.state_dir / 'lake'}",
                f"-bucket={lake.bucket}",
                f"-ip={lake.host}", f"-ip.bind={lake.host}",
                f"-s3.port={lake.port}", f"-s3.port.grpc={lake.port + GRPC_OFFSET}",
                *self._seaweed_internal_ports(),
                "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false",
                f"-filer.localSocket={run / 'seaweedfs-filer.sock'}",
            ],
            pid_file=run / "lake.pid",
            log_file=log / "lake.log",
            env=self._lake_env(),
            cwd=self.state_dir,
        )  # fmt: skip
        prefect = settings.prefect
        self.prefect_process = ManagedProcess(
            name="prefect",
            argv=[_executable(bin_dir, "prefect"), "server", "start",
                  "--host", prefect.host, "--port", str(prefect.port)],
            pid_file=run / "prefect.pid",
            log_file=log / "prefect.log",
            env=self._prefect_env(),
            cwd=self.state_dir,
        )
        sandbox = settings.sandbox
        self.sandbox_process = ManagedProcess(
            name="sandbox",
            argv=[sys.executable, "-m", "sandbox", "--host", sandbox.host, "--port", str(sandbox.port),
                  "--seed", str(sandbox.seed)],
            pid_file=run / "sandbox.pid",
            log_file=log / "sandbox.log",
            cwd=self.state_dir,
        )  # fmt: skip

    # -- which components this configuration embeds ------------------------------------------
    def _embedded(self) -> list[str]:
        names = []
        if self.settings.database.embedded:
            names.append("postgres")
        if self.settings.lake.endpoint is None:
            names.append("lake")
        if self.settings.prefect.embedded:
            names.append("prefect")
        if self.settings.sandbox.enabled:
            names.append("sandbox")
        return names

    def _processes(self) -> dict[str, ManagedProcess]:
        return {"lake": self.lake_process, "prefect": self.prefect_process, "sandbox": self.sandbox_process}

    def _ports(self, name: str) -> list[tuple[int, str]]:
        s = self.settings
        if name == "postgres":
            return [(s.database.port, "database.port")]
        if name == "lake":
            base = s.lake.internal_port_base
            http = [base, base + 1, base + 2, base + 3]
            return [(s.lake.port, "lake.port"), (s.lake.port + GRPC_OFFSET, "lake.port (+10000 for gRPC)")] + [
                (p, "lake.internal_port_base") for p in http
            ] + [(p + GRPC_OFFSET, "lake.internal_port_base (+10000 for gRPC)") for p in http]
        if name == "prefect":
            return [(s.prefect.port, "prefect.port")]
        if name == "sandbox":
            return [(s.sandbox.port, "sandbox.port")]
        return []

    def _host(self, name: str) -> str:
        s = self.settings
        return {"postgres": s.database.host, "lake": s.lake.host, "prefect": s.prefect.host,
                "sandbox": s.sandbox.host}[name]  # fmt: skip

    # -- up / down / status ----------------------------------------------------------------
    def up(self) -> UpReport:
        began = time.monotonic()
        self.settings.require_secrets()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        report = UpReport()
        embedded = self._embedded()
        running = {name for name in embedded if self._pid(name) is not None}
        for name in embedded:
            if name in running:
                continue
            for port, setting in self._ports(name):
                if not port_free(self._host(name), port):
                    raise PortInUseError(name, self._host(name), port, setting)

        if "postgres" in embedded:
            self.postgres.init()
            (report.started if self.postgres.start() else report.already_running).append("postgres")
            self.postgres.bootstrap()
        with database_connection(self.settings, autocommit=True) as conn:
            report.migrations_applied = [m.filename for m in migrate(conn)]

        processes = self._processes()
        for name in ("lake", "prefect", "sandbox"):
            if name in embedded:
                (report.started if processes[name].start() else report.already_running).append(name)

        status = self.wait_healthy(self.settings.startup_timeout_seconds)
        if not status.healthy:
            sick = [c for c in status.components.values() if not c.healthy]
            lines = []
            for c in sick:
                log_file = processes[c.name].log_file if c.name in processes else self.postgres.log_file
                lines.append(f"{c.name} at {c.address}: {c.detail}\n  last lines of {log_file}:\n"
                             + "\n".join("    " + line for line in tail(log_file).splitlines()))  # fmt: skip
            raise ServiceError(
                f"the stack did not become healthy within {self.settings.startup_timeout_seconds:.0f} s:\n"
                + "\n".join(lines)
                + "\nrun `marketpipe down` to stop what started, fix the cause, then `marketpipe up` again"
            )
        if "lake" in embedded or self.settings.lake.endpoint:
            report.bucket_created = Lake.from_settings(self.settings.lake).ensure_bucket()
        report.seconds = time.monotonic() - began
        return report

    def wait_healthy(self, timeout_seconds: float) -> StackStatus:
        deadline = time.monotonic() + timeout_seconds
        status = self.status()
        while not status.healthy and time.monotonic() < deadline:
            dead = [n for n in self._processes() if n in self._embedded() and self._pid(n) is None]
            if dead:  # a child exited: waiting longer will not help
                break
            time.sleep(0.3)
            status = self.status()
        return status

    def down(self) -> list[str]:
        """Stop every component this stack started; returns the names stopped."""
        stopped = [name for name, proc in self._processes().items() if proc.stop()]
        if self.postgres.initialized() and self.postgres.stop():
            stopped.append("postgres")
        return stopped

    def status(self) -> StackStatus:
        checks = {
            "postgres": self._postgres_status,
            "lake": self._lake_status,
            "prefect": self._prefect_status,
        }
        if self.settings.sandbox.enabled:
            checks["sandbox"] = self._sandbox_status
        with ThreadPoolExecutor(max_workers=len(checks)) as pool:
            futures = {name: pool.submit(check) for name, check in checks.items()}
            results = {name: future.result() for name, future in futures.items()}
        components = {name: result[0] for name, result in results.items()}
        return StackStatus(components=components, timescaledb=results["postgres"][1])

    # -- health checks ---------------------------------------------------------------------
    def _pid(self, name: str) -> int | None:
        if name == "postgres":
            return self.postgres.pid()
        return self._processes()[name].pid()

    def _postgres_status(self) -> tuple[ComponentStatus, TimescaleInfo | None]:
        db = self.settings.database
        address = f"{db.host}:{db.port}"
        pid = self.postgres.pid() if db.embedded else None
        if db.embedded and pid is None:
            return ComponentStatus("postgres", False, address, None, "not running"), None
        try:
            with database_connection(self.settings, autocommit=True) as conn:
                info = query_timescale(conn)
                server_version = conn.execute("SHOW server_version").fetchone()[0]
        except MarketpipeError as exc:
            return ComponentStatus("postgres", False, address, pid, str(exc)), None
        if info is None:
            return ComponentStatus("postgres", False, address, pid, "timescaledb extension missing"), None
        detail = f"PostgreSQL {server_version}, TimescaleDB {info.version} ({info.edition} edition)"
        return ComponentStatus("postgres", True, address, pid, detail), info

    def _lake_status(self) -> tuple[ComponentStatus, None]:
        lake = self.settings.lake
        pid = self.lake_process.pid() if lake.endpoint is None else None
        address = lake.endpoint_url
        if lake.endpoint is None and pid is None:
            return ComponentStatus("lake", False, address, None, "not running"), None
        try:
            client = Lake.from_settings(lake)
            with httpx.Client(timeout=2.0) as http:
                http.get(address)  # any answer means the S3 API is up; auth is checked next
            exists = client.bucket_exists()
        except (MarketpipeError, httpx.HTTPError) as exc:
            return ComponentStatus("lake", False, address, pid, f"{type(exc).__name__}: {exc}"), None
        detail = f"bucket {lake.bucket} " + ("ready" if exists else "missing (created by `marketpipe up`)")
        return ComponentStatus("lake", True, address, pid, detail), None

    def _prefect_status(self) -> tuple[ComponentStatus, None]:
        prefect = self.settings.prefect
        pid = self.prefect_process.pid() if prefect.embedded else None
        address = prefect.ui_url
        if prefect.embedded and pid is None:
            return ComponentStatus("prefect", False, address, None, "not running"), None
        return _http_health("prefect", f"{prefect.resolved_api_url}/health", address, pid, "UI and API ready"), None

    def _sandbox_status(self) -> tuple[ComponentStatus, None]:
        sandbox = self.settings.sandbox
        pid = self.sandbox_process.pid()
        if pid is None:
            return ComponentStatus("sandbox", False, sandbox.base_url, None, "not running"), None
        url = f"{sandbox.base_url}/_sandbox/health"
        return _http_health("sandbox", url, sandbox.base_url, pid, f"market seed {sandbox.seed}"), None

    # -- environment of the children ----------------------------------------------------------
    def _seaweed_internal_ports(self) -> list[str]:
        base = self.settings.lake.internal_port_base
        flags = []
        for offset, role in enumerate(("master", "volume", "filer", "admin")):
            flags += [f"-{role}.port={base + offset}", f"-{role}.port.grpc={base + offset + GRPC_OFFSET}"]
        return flags

    def _lake_env(self) -> dict[str, str]:
        secret = self.settings.lake.secret_key
        return {
            "AWS_ACCESS_KEY_ID": self.settings.lake.access_key,
            "AWS_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else "",
        }

    def _prefect_env(self) -> dict[str, str]:
        s = self.settings
        return {
            "PREFECT_HOME": str(self.state_dir / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": s.database.sqlalchemy_url(s.database.prefect_database),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": s.prefect.resolved_api_url,
            "PREFECT_UI_API_URL": s.prefect.resolved_api_url,
            "PREFECT_SERVER_API_HOST": s.prefect.host,
            "PREFECT_SERVER_API_PORT": str(s.prefect.port),
            "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
        }


def _http_health(name: str, url: str, address: str, pid: int | None, ok_detail: str) -> ComponentStatus:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        return ComponentStatus(name, False, address, pid, f"no answer from {url} ({type(exc).__name__})")
    if response.status_code != 200:
        return ComponentStatus(name, False, address, pid, f"{url} answered HTTP {response.status_code}")
    return ComponentStatus(name, True, address, pid, ok_detail)


def _executable(bin_dir: Path, name: str) -> str:
    candidate = bin_dir / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"the {name!r} executable is not installed; run `make install`")
    return found
