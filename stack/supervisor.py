"""The embedded stack: PostgreSQL + TimescaleDB, the S3 lake, the Prefect server, the market sandbox.

``Stack.up()`` starts what is not running (PostgreSQL first, then the others in parallel), applies
migrations, creates the lake bucket and waits until every component reports healthy.
``Stack.down()`` stops what it started. ``Stack.status()`` asks each component for its health.
Components configured as external (``lake.endpoint``, ``prefect.api_url``, ``database.embedded:
false``) are not started, only health-checked.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigurationError, PortInUseError, ServiceError
from core.settings import Settings
from db.connect import database_connection
from db.migrate import migrate
from pipeline.components import StackStatus, probe_components
from stack.daemon import ManagedProcess, port_free, tail
from stack.postgres import EmbeddedPostgres
from stack.standby import EmbeddedStandby
from storage.lake import Lake
from storage.tiering import ensure_native_compression

GRPC_OFFSET = 10000  # SeaweedFS derives gRPC ports as HTTP port + 10000; we pass them explicitly
SANDBOX_MODULES = ("sandbox", "starlette", "uvicorn")  # the package and pyproject's `sandbox` extra


@dataclass
class UpReport:
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    migrations_applied: list[str] = field(default_factory=list)
    routines_applied: list[str] = field(default_factory=list)
    extensions_updated: list[str] = field(default_factory=list)  # "db: 2.19.3 -> 2.28.3"
    compression_policies_set: list[str] = field(default_factory=list)
    bucket_created: bool = False
    seconds: float = 0.0


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.postgres = EmbeddedPostgres(settings.database, settings.state_dir)
        self.standby = EmbeddedStandby(settings.database, settings.state_dir)
        bin_dir = Path(sys.executable).parent
        run, log = self.state_dir / "run", self.state_dir / "log"
        lake = settings.lake
        self.lake_process = ManagedProcess(
            name="lake",
            argv=[
                _executable(bin_dir, "weed"),
                "mini",
                f"-dir={self.state_dir / 'lake'}",
                f"-bucket={lake.bucket}",
                f"-ip={lake.host}",
                f"-ip.bind={lake.host}",
                f"-s3.port={lake.port}",
                f"-s3.port.grpc={lake.port + GRPC_OFFSET}",
                *self._seaweed_internal_ports(),
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-admin.ui=false",
                f"-filer.localSocket={run / 'seaweedfs-filer.sock'}",
            ],
            pid_file=run / "lake.pid",
            log_file=log / "lake.log",
            env=self._lake_env(),
            cwd=self.state_dir,
        )
        prefect = settings.prefect
        self.prefect_process = ManagedProcess(
            name="prefect",
            argv=[
                _executable(bin_dir, "prefect"),
                "server",
                "start",
                "--host",
                prefect.host,
                "--port",
                str(prefect.port),
            ],
            pid_file=run / "prefect.pid",
            log_file=log / "prefect.log",
            env=self._prefect_env(),
            cwd=self.state_dir,
        )
        sandbox = settings.sandbox
        self.sandbox_process = ManagedProcess(
            name="sandbox",
            argv=[
                sys.executable,
                "-m",
                "sandbox",
                "--host",
                sandbox.host,
                "--port",
                str(sandbox.port),
                "--seed",
                str(sandbox.seed),
                *(["--now", sandbox.now] if sandbox.now else []),
            ],
            pid_file=run / "sandbox.pid",
            log_file=log / "sandbox.log",
            env={"PYTHONFAULTHANDLER": "1"},  # a fatal signal leaves its traceback in the log
            cwd=self.state_dir,
        )

    # -- which components this configuration embeds ------------------------------------------
    def _embedded(self) -> list[str]:
        names = []
        if self.settings.database.embedded:
            names.append("postgres")
            if self.standby.initialized() or self._replica_configured():
                names.append("replica")
        if self.settings.lake.endpoint is None:
            names.append("lake")
        if self.settings.prefect.embedded:
            names.append("prefect")
        if self.settings.sandbox.enabled:
            names.append("sandbox")
        return names

    def _replica_configured(self) -> bool:
        """Whether the settings ask for the embedded read replica (`marketpipe up --replica` does too)."""
        replica = self.settings.database.read_replica
        return replica.enabled and replica.embedded and self.settings.database.embedded

    def _processes(self) -> dict[str, ManagedProcess]:
        return {"lake": self.lake_process, "prefect": self.prefect_process, "sandbox": self.sandbox_process}

    def _ports(self, name: str) -> list[tuple[int, str]]:
        s = self.settings
        if name == "postgres":
            return [(s.database.port, "database.port")]
        if name == "replica":
            return [(s.database.read_replica.port, "database.read_replica.port")]
        if name == "lake":
            base = s.lake.internal_port_base
            http = [base, base + 1, base + 2, base + 3]
            return (
                [(s.lake.port, "lake.port"), (s.lake.port + GRPC_OFFSET, "lake.port (+10000 for gRPC)")]
                + [(p, "lake.internal_port_base") for p in http]
                + [(p + GRPC_OFFSET, "lake.internal_port_base (+10000 for gRPC)") for p in http]
            )
        if name == "prefect":
            return [(s.prefect.port, "prefect.port")]
        if name == "sandbox":
            return [(s.sandbox.port, "sandbox.port")]
        return []

    def _host(self, name: str) -> str:
        s = self.settings
        hosts = {"postgres": s.database.host, "replica": s.database.read_replica.host, "lake": s.lake.host}
        return {**hosts, "prefect": s.prefect.host, "sandbox": s.sandbox.host}[name]

    # -- up / down / status ----------------------------------------------------------------
    def up(self, replica: bool = False) -> UpReport:
        """``replica`` (``marketpipe up --replica``) also starts the read replica, as
        ``database.read_replica.enabled`` with the embedded cluster does."""
        began = time.monotonic()
        self.settings.require_secrets()
        if replica and not self.settings.database.embedded:
            raise ConfigurationError(
                "`marketpipe up --replica` runs a standby of the embedded cluster, but database.embedded is false: "
                "run the standby beside your server (docker compose's `standby` service) and point "
                "database.read_replica.host/port at it"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        report = UpReport()
        embedded = self._embedded()
        if replica and "replica" not in embedded:
            embedded.append("replica")
        if "replica" in embedded:
            self.standby._password()  # refuse before anything starts when its secret is missing
        running = {name for name in embedded if self._pid(name) is not None}
        if "sandbox" in embedded and "sandbox" not in running:
            require_sandbox()
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
            report.extensions_updated = self.postgres.update_extensions()
            if "replica" in embedded:
                self.standby.prepare_primary(self.postgres)
                self.standby.init()
                (report.started if self.standby.start() else report.already_running).append("replica")
        with database_connection(self.settings, autocommit=True) as conn:
            applied = migrate(conn)
            report.compression_policies_set = list(ensure_native_compression(conn, self.settings).policies_set)
        report.migrations_applied = [m.filename for m in applied.migrations]
        report.routines_applied = [r.filename for r in applied.routines]

        processes = self._processes()
        for name in ("lake", "prefect", "sandbox"):
            if name in embedded:
                (report.started if processes[name].start() else report.already_running).append(name)

        status = self.wait_healthy(self.settings.startup_timeout_seconds)
        if not status.healthy:
            sick = [c for c in status.components.values() if not c.healthy]
            lines = []
            for c in sick:
                servers = {"postgres": self.postgres.log_file, "replica": self.standby.log_file}
                log_file = processes[c.name].log_file if c.name in processes else servers[c.name]
                lines.append(
                    f"{c.name} at {c.address}: {c.detail}\n  last lines of {log_file}:\n"
                    + "\n".join("    " + line for line in tail(log_file).splitlines())
                )
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
        stopped = ["replica"] if self.standby.initialized() and self.standby.stop() else []
        stopped += [name for name, proc in self._processes().items() if proc.stop()]
        if self.postgres.initialized() and self.postgres.stop():
            stopped.append("postgres")
        return stopped

    def status(self) -> StackStatus:
        """Each component's probe; a process this stack runs and cannot find is "not running"."""
        return probe_components(self.settings, {name: self._pid(name) for name in self._embedded()})

    def _pid(self, name: str) -> int | None:
        if name == "postgres":
            return self.postgres.pid()
        if name == "replica":
            return self.standby.pid()
        return self._processes()[name].pid()

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
        """The server's environment. Its auth string (required by ``up``) guards every API call
        and the UI's login; the server's own client sends it too (PREFECT_API_AUTH_STRING)."""
        s = self.settings
        client = s.prefect.client_environment()
        env = {
            "PREFECT_HOME": str(self.state_dir / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": s.database.sqlalchemy_url(s.database.prefect_database),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **client,
            "PREFECT_UI_API_URL": s.prefect.resolved_api_url,
            "PREFECT_SERVER_API_HOST": s.prefect.host,
            "PREFECT_SERVER_API_PORT": str(s.prefect.port),
            "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
        }
        if "PREFECT_API_AUTH_STRING" in client:
            env["PREFECT_SERVER_API_AUTH_STRING"] = client["PREFECT_API_AUTH_STRING"]
        return env


def require_sandbox() -> None:
    """Refuse to start the market sandbox when it is not installed (workers and `pip install
    marketpipe` do without it), saying what to install instead of the child's traceback."""
    missing = [name for name in SANDBOX_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ServiceError(
            f"the market sandbox is enabled (sandbox.enabled) but not installed (no module {missing[0]!r}): "
            "run `pip install 'marketpipe[sandbox]'` (`make install` does), or set sandbox.enabled: false"
        )


def _executable(bin_dir: Path, name: str) -> str:
    candidate = bin_dir / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"the {name!r} executable is not installed; run `make install`")
    return found
