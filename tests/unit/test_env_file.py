"""`make install` writes .env once with random secrets and, on a developer's older .env, adds the
keys it lacks (the Prefect auth string) without touching the values already there."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_env(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "-f", str(REPO / "Makefile"), "env-keys"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def entries(env_file: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line)


def test_a_fresh_env_file_holds_every_secret_private_to_its_owner(tmp_path: Path) -> None:
    make_env(tmp_path)

    written = entries(tmp_path / ".env")
    assert set(written) == {
        "MARKETPIPE_DATABASE__PASSWORD",
        "MARKETPIPE_LAKE__SECRET_KEY",
        "PREFECT_DB_PASSWORD",
        "MARKETPIPE_PREFECT__AUTH_STRING",
        "MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD",
    }
    assert len(written["MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD"]) == 32
    user, password = written["MARKETPIPE_PREFECT__AUTH_STRING"].split(":")
    assert user == "marketpipe" and len(password) == 32
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


def test_an_older_env_file_gains_the_auth_string_and_keeps_its_values(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MARKETPIPE_DATABASE__PASSWORD=kept-db\nMARKETPIPE_LAKE__SECRET_KEY=kept-lake\n")

    first = make_env(tmp_path)
    after_first = env_file.read_text()
    second = make_env(tmp_path)

    written = entries(env_file)
    assert written["MARKETPIPE_DATABASE__PASSWORD"] == "kept-db"
    assert written["MARKETPIPE_LAKE__SECRET_KEY"] == "kept-lake"
    assert written["MARKETPIPE_PREFECT__AUTH_STRING"].startswith("marketpipe:")
    assert "adding MARKETPIPE_PREFECT__AUTH_STRING" in first.stdout
    assert written["MARKETPIPE_PREFECT__AUTH_STRING"] not in first.stdout  # the value is never printed
    assert "adding MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD" in first.stdout
    assert written["MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD"] not in first.stdout
    assert env_file.read_text() == after_first and second.stdout == ""  # a second run changes nothing
