"""The production topology (docker-compose.yml, deployments/Dockerfile, .env.example) agrees with settings.

No Docker engine runs here, so these tests read the files: the roles and images, health checks and
start order, volumes, that every ${VAR} is documented in .env.example, that published ports and
defaults are the settings defaults, and that the worker's MARKETPIPE_* environment is accepted by
the real settings object and points at the compose services.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from core.settings import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deployments" / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
CONFIG_FILE = REPO / "config" / "data_pipeline_config.yaml"

LONG_RUNNING = {
    "timescaledb",
    "standby",
    "minio",
    "prefect-db",
    "prefect-server",
    "worker",
    "dask-scheduler",
    "dask-worker",
}
ONE_SHOT = {"minio-init", "migrate", "deployments"}
SECRETS = {
    "MARKETPIPE_DATABASE__PASSWORD",
    "MARKETPIPE_LAKE__SECRET_KEY",
    "MARKETPIPE_VENDORS__POLYGON__API_KEY",
    "MARKETPIPE_VENDORS__ALPACA__API_KEY",
    "MARKETPIPE_VENDORS__ALPACA__SECRET_KEY",
    "MARKETPIPE_PREFECT__AUTH_STRING",
    "MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD",
}
# ${PUBLISH_ADDRESS:-127.0.0.1}:${VAR:-default}:container
PUBLISHED_PORT = re.compile(r"^\$\{PUBLISH_ADDRESS:-([0-9.]+)\}:\$\{(\w+):-(\d+)\}:(\d+)$")

# ${NAME}, ${NAME:-default}, ${NAME:?message} ...; "$${...}" is compose's escape for a literal "$".
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
_ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


# ---- helpers -------------------------------------------------------------------------------------


def read_env_example() -> tuple[dict[str, str], dict[str, str]]:
    """(active KEY=VALUE lines, commented-out '# KEY=VALUE' lines) of .env.example."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            (commented if match.group(1) else active)[match.group(2)] = match.group(3)
    return active, commented


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Resolve compose interpolation the way `docker compose config` would, for one value."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        present = env.get(name)
        if operator in (":-", "-") and not present:
            return argument
        if operator in (":?", "?") and not present:
            raise AssertionError(f"{name} is required by docker-compose.yml: {argument}")
        return present or ""

    return _INTERPOLATION.sub(replace, value).replace("$$", "$")


def names_setting(env_key: str) -> bool:
    """Does MARKETPIPE_A__B__C name a field of Settings (dict-typed sections accept any key)?"""
    if not env_key.startswith(ENV_PREFIX):
        return False
    parts = env_key[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER)
    return _resolves(Settings, parts)


def _resolves(annotation: Any, parts: list[str]) -> bool:
    if not parts:
        return True
    origin = typing.get_origin(annotation)
    if origin is dict:
        return bool(parts[0]) and _resolves(typing.get_args(annotation)[1], parts[1:])
    if origin in (typing.Union, types.UnionType):
        return any(_resolves(arg, parts) for arg in typing.get_args(annotation) if arg is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(parts[0])
        return field is not None and _resolves(field.annotation, parts[1:])
    return False


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ENV":
            for pair in arguments.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def clear_marketpipe_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def defaults() -> Settings:
    """The repository's configuration with no environment: what a fresh checkout runs with."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        clear_marketpipe_env(monkeypatch)
        return load_settings(config_path=CONFIG_FILE, env_file=Path("/nonexistent/.env"))


@pytest.fixture()
def worker_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The worker container's environment: Dockerfile ENV < env_file (.env.example) < environment."""
    active, _ = read_env_example()
    environment = interpolate(services["worker"]["environment"], active)
    return {**dockerfile_env(), **active, **{key: str(value) for key, value in environment.items()}}


# ---- the helpers can fail ------------------------------------------------------------------------


def test_names_setting_accepts_real_fields_and_rejects_others() -> None:
    assert names_setting("MARKETPIPE_DATABASE__PORT")
    assert names_setting("MARKETPIPE_VENDORS__SOMEVENDOR__API_KEY")
    assert names_setting("MARKETPIPE_RATE_LIMITS__POLYGON__REQUESTS_PER_SECOND")
    assert not names_setting("MARKETPIPE_DATABASE__PORTT")
    assert not names_setting("MARKETPIPE_DATABASE__PORT__EXTRA")
    assert not names_setting("MARKETPIPE_VENDORS__POLYGON__TOKEN")
    assert not names_setting("PREFECT_API_URL")


# ---- services and roles --------------------------------------------------------------------------


def test_services_are_the_roles_of_the_embedded_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == LONG_RUNNING | ONE_SHOT


def test_images_fill_their_roles(services: dict[str, dict[str, Any]]) -> None:
    timescale = services["timescaledb"]["image"]
    assert timescale.startswith(("timescale/timescaledb:", "timescale/timescaledb-ha:"))
    assert "oss" not in timescale, "the -oss images are the Apache edition: no compression policies"
    embedded = re.search(
        r'TS_VERSION="\$\{MARKETPIPE_TIMESCALEDB_VERSION:-([0-9.]+)\}"',
        (REPO / "scripts/install-system.sh").read_text(),
    )
    assert embedded is not None
    assert timescale.split(":")[1].split("-")[0] == embedded[1], (
        "production runs the TimescaleDB the embedded stack builds"
    )
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["minio-init"]["image"].startswith("minio/mc:")
    assert services["prefect-db"]["image"].startswith("postgres:")
    assert services["prefect-server"]["image"].startswith("prefecthq/prefect:3-")


def test_worker_is_built_from_the_dockerfile_and_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "deployments/Dockerfile"
    assert (COMPOSE_FILE.parent / worker["build"]["context"]).resolve() == REPO
    assert worker["command"] == ["marketpipe", "worker"]
    # `docker compose up --scale worker=N` fails on a fixed name or host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert ".env" in ([worker["env_file"]] if isinstance(worker["env_file"], str) else worker["env_file"])


def test_dask_scheduler_and_workers_run_from_the_prefect_workers_image(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    for name in ("dask-scheduler", "dask-worker"):
        assert (services[name]["build"], services[name]["image"]) == (worker["build"], worker["image"]), name
    scheduler, dask_worker = services["dask-scheduler"]["command"], services["dask-worker"]["command"]
    assert scheduler[:2] == ["dask", "scheduler"] and scheduler[scheduler.index("--port") + 1] == "8786"
    assert dask_worker[:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    # `--scale dask-worker=N` fails on a fixed name or host port.
    assert "container_name" not in services["dask-worker"] and "ports" not in services["dask-worker"]
    assert set(services["dask-worker"]["depends_on"]) >= {"timescaledb", "minio-init", "migrate", "dask-scheduler"}


def test_dask_workers_get_the_prefect_workers_settings_from_the_environment(
    services: dict[str, dict[str, Any]], worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    active, _ = read_env_example()
    environment = interpolate(services["dask-worker"]["environment"], active)
    dask_env = {**dockerfile_env(), **active, **{key: str(value) for key, value in environment.items()}}
    shared = {key: value for key, value in worker_env.items() if "COMPUTE" not in key}
    assert {key: dask_env.get(key) for key in shared} == shared  # the same database, lake, Prefect and secrets
    clear_marketpipe_env(monkeypatch)
    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(config_path=CONFIG_FILE, env_file=tmp_path / "absent.env")
    assert settings.compute.task_runner == "dask"
    assert urlsplit(settings.compute.dask_address).hostname == "dask-scheduler"
    assert "dask-scheduler" in services["worker"]["depends_on"]


def test_prefect_server_runs_on_its_own_postgres(services: dict[str, dict[str, Any]]) -> None:
    server = services["prefect-server"]
    assert server["command"][:3] == ["prefect", "server", "start"]
    assert server["command"][server["command"].index("--host") + 1] == "0.0.0.0"
    env = interpolate(server["environment"], {"PREFECT_DB_PASSWORD": "pw", "MARKETPIPE_PREFECT__AUTH_STRING": "a:b"})
    url = urlsplit(env["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert url.scheme == "postgresql+asyncpg"
    assert (url.hostname, url.port, url.path) == ("prefect-db", 5432, "/prefect")
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert services["prefect-db"]["environment"]["POSTGRES_DB"] == "prefect"


def test_the_standby_is_a_read_replica_of_the_hot_store(
    services: dict[str, dict[str, Any]], defaults: Settings, worker_env: dict[str, str]
) -> None:
    standby = services["standby"]
    assert standby["image"] == services["timescaledb"]["image"]  # the same PostgreSQL and TimescaleDB
    assert standby["depends_on"] == {"timescaledb": {"condition": "service_healthy"}}
    script = standby["command"][0]
    replica = defaults.database.read_replica
    assert f'pg_basebackup -U "$$REPLICATION_USER" -D "$$PGDATA" -X stream -S {replica.slot} -R' in script
    assert "hot_standby=on" in script and "hot_standby_feedback=on" in script
    env = interpolate(
        standby["environment"],
        {"MARKETPIPE_DATABASE__PASSWORD": "pw", "MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD": "rpw"},
    )
    assert (env["PGHOST"], env["REPLICATION_USER"], env["REPLICATION_PASSWORD"]) == (
        "timescaledb",
        replica.replication_user,
        "rpw",
    )
    assert "REPLICATION_PASSWORD" not in script.replace("$$REPLICATION_PASSWORD", "").replace(
        "getenv password REPLICATION_PASSWORD", ""
    )  # the password is read from the environment only, never spelled on a command line
    published = [m for p in standby["ports"] if (m := PUBLISHED_PORT.match(str(p)))]
    assert [m.groups()[1:] for m in published] == [
        ("MARKETPIPE_DATABASE__READ_REPLICA__PORT", str(replica.port), "5432")
    ]
    assert "standby" in services["worker"]["depends_on"]
    assert worker_env["MARKETPIPE_DATABASE__READ_REPLICA__HOST"] == "standby"
    assert worker_env["MARKETPIPE_DATABASE__READ_REPLICA__ENABLED"] == "true"


def test_hot_store_and_lake_defaults_are_the_settings_defaults(
    services: dict[str, dict[str, Any]], defaults: Settings
) -> None:
    timescale = interpolate(services["timescaledb"]["environment"], {"MARKETPIPE_DATABASE__PASSWORD": "pw"})
    assert timescale["POSTGRES_DB"] == defaults.database.name
    assert timescale["POSTGRES_USER"] == defaults.database.user
    minio_init = interpolate(services["minio-init"]["environment"], {"MARKETPIPE_LAKE__SECRET_KEY": "pw"})
    assert minio_init["LAKE_BUCKET"] == defaults.lake.bucket
    assert minio_init["LAKE_ACCESS_KEY"] == defaults.lake.access_key


# ---- health and start order ----------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name in LONG_RUNNING:
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert services[name].get("restart") == "unless-stopped", name
    probes = {name: " ".join(services[name]["healthcheck"]["test"]) for name in LONG_RUNNING}
    assert "pg_isready" in probes["timescaledb"]
    assert "pg_isready" in probes["prefect-db"]
    assert "mc ready local" in probes["minio"]
    assert "/api/health" in probes["prefect-server"]


def test_one_shot_services_do_not_restart(services: dict[str, dict[str, Any]]) -> None:
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no", name
        assert "healthcheck" not in services[name], name


def test_depends_on_waits_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must state conditions"
        for dependency, spec in depends_on.items():
            expected = "service_healthy" if dependency in LONG_RUNNING else "service_completed_successfully"
            assert spec["condition"] == expected, f"{name} -> {dependency}"


def test_worker_starts_after_storage_schema_and_orchestrator(services: dict[str, dict[str, Any]]) -> None:
    assert set(services["worker"]["depends_on"]) >= {"timescaledb", "minio-init", "prefect-server", "migrate"}


# ---- volumes -------------------------------------------------------------------------------------


def test_data_lives_in_declared_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            assert not source.startswith((".", "/", "~")), f"{name} bind-mounts {source}: use a named volume"
            assert source in declared, f"{name} uses undeclared volume {source}"
            used.add(source)
    assert used == declared
    data_dirs = {"timescaledb": "/var/lib/postgresql/data", "prefect-db": "/var/lib/postgresql/data", "minio": "/data"}
    for name, path in data_dirs.items():
        targets = [volume.split(":")[1] for volume in compose["services"][name]["volumes"]]
        assert path in targets, f"{name} keeps its data outside a volume"


# ---- credentials and .env.example ----------------------------------------------------------------


def test_every_interpolated_variable_is_in_env_example() -> None:
    active, commented = read_env_example()
    used = {match.group(1) for match in _INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    assert used, "docker-compose.yml interpolates nothing: credentials are hard-coded?"
    assert used - (set(active) | set(commented)) == set()


def test_required_variables_are_set_in_env_example() -> None:
    active, _ = read_env_example()
    required = {
        match.group(1) for match in _INTERPOLATION.finditer(COMPOSE_FILE.read_text()) if match.group(2) in (":?", "?")
    }
    assert {
        "MARKETPIPE_DATABASE__PASSWORD",
        "MARKETPIPE_LAKE__SECRET_KEY",
        "PREFECT_DB_PASSWORD",
        "MARKETPIPE_PREFECT__AUTH_STRING",
    } <= required
    for name in required:
        assert active.get(name), f"{name} is required by docker-compose.yml but has no placeholder"


def test_passwords_are_never_literal_in_compose(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if any(word in key for word in ("PASSWORD", "SECRET", "AUTH_STRING")):
                assert _INTERPOLATION.search(str(value)), f"{name}.{key} is hard-coded"


def test_env_example_lists_every_secret_with_a_comment() -> None:
    active, commented = read_env_example()
    assert set(active) | set(commented) >= SECRETS
    lines = [line.strip() for line in ENV_EXAMPLE.read_text().splitlines()]
    for index, line in enumerate(lines):
        if _ENV_LINE.match(line):
            previous = lines[index - 1]
            assert previous.startswith("#") and not _ENV_LINE.match(previous), f"no comment above {line!r}"


def test_env_example_marketpipe_keys_are_settings_fields() -> None:
    active, commented = read_env_example()
    for key in set(active) | set(commented):
        if key.startswith(ENV_PREFIX):
            assert names_setting(key), f".env.example sets {key}, which is no setting"


def test_env_example_settings_values_are_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    active, commented = read_env_example()
    env_file = tmp_path / ".env"
    lines = [f"{key}={value}" for key, value in {**commented, **active}.items() if key.startswith(ENV_PREFIX)]
    env_file.write_text("\n".join(lines) + "\n")
    clear_marketpipe_env(monkeypatch)
    settings = load_settings(config_path=CONFIG_FILE, env_file=env_file)
    assert settings.database.password is not None
    assert settings.vendors["alpaca"].secret_key is not None


def test_env_example_as_is_is_accepted_by_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    clear_marketpipe_env(monkeypatch)
    settings = load_settings(config_path=CONFIG_FILE, env_file=env_file)
    assert settings.database.password is not None


# ---- ports ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "setting", "container_port"),
    [
        ("timescaledb", "database.port", 5432),
        ("minio", "lake.port", 9000),
        ("prefect-server", "prefect.port", 4200),
    ],
)
def test_published_port_is_the_settings_port(
    services: dict[str, dict[str, Any]], defaults: Settings, service: str, setting: str, container_port: int
) -> None:
    section, field = setting.split(".")
    expected_variable = f"{ENV_PREFIX}{section.upper()}{ENV_NESTED_DELIMITER}{field.upper()}"
    published = [match for port in services[service]["ports"] if (match := PUBLISHED_PORT.match(str(port)))]
    assert len(published) == 1, f"{service} should publish its main port as ${{VAR:-default}}:container"
    _, variable, default, target = published[0].groups()
    assert variable == expected_variable
    assert int(default) == getattr(getattr(defaults, section), field)
    assert int(target) == container_port


def test_published_ports_listen_on_loopback_unless_publish_address_says_otherwise(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            # "HOST:CONTAINER" without an address listens on every interface.
            address, *_ = interpolate(str(port), {}).split(":")
            assert address == "127.0.0.1", f"{name} publishes {port} beyond this host by default"
            if PUBLISHED_PORT.match(str(port)):
                chosen = interpolate(str(port), {"PUBLISH_ADDRESS": "0.0.0.0"})
                assert chosen.split(":")[0] == "0.0.0.0", chosen
    assert {"timescaledb", "minio", "prefect-server"} <= {
        name
        for name, service in services.items()
        if any(PUBLISHED_PORT.match(str(p)) for p in service.get("ports", []))
    }


def test_prefect_server_requires_the_auth_string_every_client_sends(services: dict[str, dict[str, Any]]) -> None:
    env = {"PREFECT_DB_PASSWORD": "pw", "MARKETPIPE_PREFECT__AUTH_STRING": "marketpipe:s3cret"}
    server = interpolate(services["prefect-server"]["environment"], env)
    assert server["PREFECT_SERVER_API_AUTH_STRING"] == "marketpipe:s3cret"
    for name in ("worker", "migrate", "deployments"):
        assert interpolate(services[name]["environment"], env)["PREFECT_API_AUTH_STRING"] == "marketpipe:s3cret"
    with pytest.raises(AssertionError, match="MARKETPIPE_PREFECT__AUTH_STRING is required"):
        interpolate(services["prefect-server"]["environment"], {"PREFECT_DB_PASSWORD": "pw"})


# ---- the worker's settings -----------------------------------------------------------------------


def test_worker_marketpipe_env_names_real_settings(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "migrate", "deployments"):
        for key in services[name]["environment"]:
            if key.startswith(ENV_PREFIX):
                assert names_setting(key), f"{name} sets {key}, which is no setting"
    for key in dockerfile_env():
        if key.startswith(ENV_PREFIX):
            assert names_setting(key), f"the Dockerfile sets {key}, which is no setting"


def test_worker_env_points_settings_at_the_compose_services(
    services: dict[str, dict[str, Any]],
    worker_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    clear_marketpipe_env(monkeypatch)
    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)

    settings = load_settings(config_path=CONFIG_FILE, env_file=tmp_path / "absent.env")

    assert settings.database.embedded is False
    assert (settings.database.host, settings.database.port) == ("timescaledb", 5432)
    assert settings.database.password is not None
    lake = urlsplit(settings.lake.endpoint_url)
    assert (lake.hostname, lake.port) == ("minio", 9000)
    assert settings.lake.secret_key is not None
    api = urlsplit(settings.prefect.resolved_api_url)
    assert (api.hostname, api.port, api.path) == ("prefect-server", 4200, "/api")
    assert worker_env["PREFECT_API_URL"] == settings.prefect.resolved_api_url
    assert settings.sandbox.enabled is False
    assert settings.sandbox.route_vendors is False
    for host in (settings.database.host, lake.hostname, api.hostname):
        assert host in services


# ---- the Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_runs_the_worker_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    installs_project = re.compile(r"pip install (--?[\w-]+ )*\.(\s|$)")
    assert any(i == "RUN" and installs_project.search(args) for i, args in instructions)
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    entrypoint = [json.loads(a) for i, a in instructions if i == "ENTRYPOINT"]
    cmd = [json.loads(a) for i, a in instructions if i == "CMD"]
    argv = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    assert argv[:2] == ["marketpipe", "worker"]


def test_dockerfile_bakes_in_no_secrets() -> None:
    for instruction, arguments in dockerfile_instructions():
        if instruction in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|SECRET|API_KEY|TOKEN", arguments, re.IGNORECASE), arguments
        if instruction in ("COPY", "ADD"):
            assert ".env" not in arguments.split(), arguments
    ignored = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert {".env", ".venv", ".state"} <= set(ignored)


def test_worker_image_does_not_carry_the_sandbox() -> None:
    lines = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    ignored = {line.strip().strip("/") for line in lines}
    assert "sandbox" in ignored, "the build context must exclude sandbox/ (the optional extra marketpipe[sandbox])"
    installs = " ".join(args for instruction, args in dockerfile_instructions() if instruction == "RUN")
    assert "[sandbox]" not in installs
