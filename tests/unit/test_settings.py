"""Settings: precedence defaults < YAML < .env < environment < CLI, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.settings import load_settings, parse_overrides


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_match_the_seed(isolated: Path) -> None:
    settings = load_settings()
    assert settings.collection.max_parallel_symbols == 5
    assert settings.collection.batch_size == 50
    assert settings.collection.retry_attempts == 3
    assert settings.rate_limits["polygon"].requests_per_second == 50
    assert settings.rate_limits["alpaca"].requests_per_second == 150
    assert settings.storage.routing.hot_data_days == 30
    assert settings.streaming.buffer_size == 10000
    assert settings.state_dir == isolated / ".state"
    assert (settings.compute.task_runner, settings.compute.dask_address) == ("threads", "")


def test_seed_yaml_with_data_pipeline_root_is_accepted(isolated: Path) -> None:
    config = write(
        isolated / "c.yaml",
        """
data_pipeline:
  collection: {max_parallel_symbols: 8, batch_size: 25, retry_attempts: 4, exponential_backoff: false}
  rate_limits: {polygon: {requests_per_second: 10}}
  storage:
    routing: {hot_data_days: 7, cold_fallback_enabled: false}
    data_lake: {compression: zstd}
  streaming: {buffer_size: 500, window_seconds: 5}
  quality: {validation_mode: lenient}
""",
    )
    settings = load_settings(config_path=config)
    assert settings.collection.max_parallel_symbols == 8
    assert settings.collection.exponential_backoff is False
    assert settings.rate_limits["polygon"].requests_per_second == 10
    assert settings.rate_limits["alpaca"].requests_per_second == 150  # defaults kept for other vendors
    assert settings.storage.data_lake.compression == "zstd"
    assert settings.quality.validation_mode == "lenient"


def test_shipped_config_file_loads(isolated: Path) -> None:
    repo_config = Path(__file__).resolve().parents[2] / "config" / "data_pipeline_config.yaml"
    settings = load_settings(config_path=repo_config)
    assert settings.database.port == 5433
    assert settings.prefect.port == 4200


def test_precedence_yaml_dotenv_env_cli(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(isolated / "c.yaml", "collection: {batch_size: 11, retry_attempts: 1, max_parallel_symbols: 2}\n")
    dotenv = write(
        isolated / "x.env",
        "MARKETPIPE_COLLECTION__BATCH_SIZE=22\nMARKETPIPE_COLLECTION__RETRY_ATTEMPTS=2\n",
    )
    monkeypatch.setenv("MARKETPIPE_COLLECTION__BATCH_SIZE", "33")

    settings = load_settings(config_path=config, env_file=dotenv)
    assert settings.collection.max_parallel_symbols == 2  # YAML over default
    assert settings.collection.retry_attempts == 2  # .env over YAML
    assert settings.collection.batch_size == 33  # environment over .env

    cli = load_settings(config_path=config, env_file=dotenv, overrides=parse_overrides(["collection.batch_size=44"]))
    assert cli.collection.batch_size == 44  # CLI over environment
    assert cli.collection.retry_attempts == 2  # sibling keys untouched by the CLI flag


def test_config_path_from_environment(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(isolated / "elsewhere.yaml", "streaming: {window_seconds: 9}\n")
    monkeypatch.setenv("MARKETPIPE_CONFIG", str(config))
    assert load_settings().streaming.window_seconds == 9


@pytest.mark.parametrize(
    ("yaml_text", "key", "value", "allowed"),
    [
        ("quality: {validation_mode: sloppy}", "quality.validation_mode", "'sloppy'", "'strict' or 'lenient'"),
        ("collection: {batch_size: 0}", "collection.batch_size", "0", "greater than 0"),
        ("collection: {max_parallel_symbols: many}", "collection.max_parallel_symbols", "'many'", "integer"),
        ("storage: {data_lake: {compression: lz4}}", "storage.data_lake.compression", "'lz4'", "'snappy' or 'zstd'"),
        ("database: {port: 70000}", "database.port", "70000", "between 1 and 65535"),
        (
            "rate_limits: {polygon: {requests_per_second: -1}}",
            "rate_limits.polygon.requests_per_second",
            "-1",
            "greater than 0",
        ),
        ("quality: {min_quality_score: 1.5}", "quality.min_quality_score", "1.5", "less than or equal to 1"),
        ("lake: {bucket: Bad_Bucket}", "lake.bucket", "'Bad_Bucket'", "pattern"),
        ("log_level: LOUD", "log_level", "'LOUD'", "'DEBUG'"),
        ("compute: {task_runner: ray}", "compute.task_runner", "'ray'", "'threads' or 'dask'"),
        ("compute: {dask_address: 'http://x:8786'}", "compute.dask_address", "'http://x:8786'", "tcp://HOST:PORT"),
        ("sandbox: {now: 'at four'}", "sandbox.now", "'at four'", "ISO 8601"),
    ],
)
def test_invalid_value_names_key_value_and_what_is_allowed(
    isolated: Path, yaml_text: str, key: str, value: str, allowed: str
) -> None:
    config = write(isolated / "bad.yaml", yaml_text + "\n")
    with pytest.raises(ConfigurationError) as err:
        load_settings(config_path=config)
    message = str(err.value)
    assert key in message
    assert value in message
    assert allowed in message
    assert "MARKETPIPE_" + key.upper().replace(".", "__") in message  # says how to fix it


def test_invalid_environment_value_is_reported(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_STREAMING__BUFFER_SIZE", "lots")
    with pytest.raises(ConfigurationError, match=r"streaming\.buffer_size = 'lots'"):
        load_settings()


def test_unknown_key_is_refused(isolated: Path) -> None:
    config = write(isolated / "typo.yaml", "collection: {batch_sise: 10}\n")
    with pytest.raises(ConfigurationError, match=r"unknown setting 'collection\.batch_sise'"):
        load_settings(config_path=config)


def test_unreadable_and_malformed_yaml(isolated: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read config file"):
        load_settings(config_path=isolated / "missing.yaml")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_settings(config_path=write(isolated / "broken.yaml", "collection: [unclosed\n"))
    with pytest.raises(ConfigurationError, match="must hold a mapping"):
        load_settings(config_path=write(isolated / "list.yaml", "- a\n- b\n"))


@pytest.mark.parametrize("flag", ["collection.batch_size", "=5", ""])
def test_malformed_set_flag(flag: str) -> None:
    with pytest.raises(ConfigurationError, match="KEY=VALUE"):
        parse_overrides([flag])


def test_secrets_never_print(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_DATABASE__PASSWORD", "hunter2-db")
    monkeypatch.setenv("MARKETPIPE_VENDORS__POLYGON__API_KEY", "pk-live-123")
    monkeypatch.setenv("MARKETPIPE_PREFECT__AUTH_STRING", "marketpipe:prefect-login")
    settings = load_settings()
    text = repr(settings) + str(settings) + settings.model_dump_json()
    assert "hunter2-db" not in text
    assert "pk-live-123" not in text
    assert "prefect-login" not in text
    assert settings.database.password.get_secret_value() == "hunter2-db"
    assert set(settings.secret_values()) == {"hunter2-db", "pk-live-123", "marketpipe:prefect-login"}


def test_invalid_secret_value_is_not_echoed(isolated: Path) -> None:
    config = write(isolated / "s.yaml", "vendors: {polygon: {api_key: [not, a, string]}}\n")
    with pytest.raises(ConfigurationError) as err:
        load_settings(config_path=config)
    assert "vendors.polygon.api_key" in str(err.value)
    assert "not" not in str(err.value).split("=", 1)[1].split(":")[0]


def test_missing_secrets_say_how_to_provide_them(isolated: Path) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings().require_secrets()
    assert "MARKETPIPE_DATABASE__PASSWORD" in str(err.value)
    assert "MARKETPIPE_LAKE__SECRET_KEY" in str(err.value)
    assert "MARKETPIPE_PREFECT__AUTH_STRING" in str(err.value)  # the embedded Prefect server's login
    assert "make install" in str(err.value)  # which adds the keys an older .env lacks


def test_the_prefect_client_environment_carries_the_auth_string(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARKETPIPE_PREFECT__AUTH_STRING", "marketpipe:prefect-login")
    monkeypatch.setenv("MARKETPIPE_PREFECT__PORT", "4321")
    assert load_settings().prefect.client_environment() == {
        "PREFECT_API_URL": "http://127.0.0.1:4321/api",
        "PREFECT_API_AUTH_STRING": "marketpipe:prefect-login",
    }


def test_dotenv_lines_of_other_programs_are_ignored_but_our_typos_are_not(isolated: Path) -> None:
    shared = write(isolated / "shared.env", "PREFECT_DB_PASSWORD=x\nMARKETPIPE_DATABASE__PASSWORD=pw\n")
    assert load_settings(env_file=shared).database.password.get_secret_value() == "pw"
    typo = write(isolated / "typo.env", "MARKETPIPE_DATABSE__PORT=1\n")
    with pytest.raises(ConfigurationError, match="unknown setting"):
        load_settings(env_file=typo)


def test_an_external_prefect_server_needs_no_auth_string_of_ours(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARKETPIPE_DATABASE__PASSWORD", "pw")
    monkeypatch.setenv("MARKETPIPE_LAKE__SECRET_KEY", "lake-secret")
    monkeypatch.setenv("MARKETPIPE_PREFECT__API_URL", "https://prefect.example.internal/api")
    load_settings().require_secrets()  # its credentials are its own (PREFECT_API_KEY or auth string)
    monkeypatch.delenv("MARKETPIPE_PREFECT__API_URL")
    with pytest.raises(ConfigurationError, match="MARKETPIPE_PREFECT__AUTH_STRING"):
        load_settings().require_secrets()


def test_the_read_replica_is_off_by_default_and_its_password_is_a_secret(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().database.read_replica.enabled is False
    monkeypatch.setenv("MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD", "repl-hunter2")
    monkeypatch.setenv("MARKETPIPE_DATABASE__READ_REPLICA__PORT", "6543")
    settings = load_settings()
    assert "repl-hunter2" not in repr(settings) + settings.model_dump_json()
    assert "repl-hunter2" in settings.secret_values()
    assert "port=6543" in settings.database.replica_conninfo()
    with pytest.raises(ConfigurationError, match=r"database\.read_replica\.slot"):
        load_settings(overrides=parse_overrides(["database.read_replica.slot=Bad-Slot"]))
