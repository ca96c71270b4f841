"""Logging: secrets are redacted from every record; --debug only opens the marketpipe tree."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from loguru import logger

from core.logs import configure_logging, redact


@pytest.fixture(autouse=True)
def restore_log_sink() -> Iterator[None]:
    """configure_logging points loguru at pytest's captured stderr; later tests need a live one."""
    yield
    logger.remove()
    logger.add(sys.__stderr__, level="WARNING")


def test_redact_replaces_every_secret() -> None:
    assert redact("dsn postgresql://u:s3cret@h/db key=abc", ["s3cret", "abc"]) == (
        "dsn postgresql://u:**********@h/db key=**********"
    )


def test_secret_in_application_and_stdlib_logs_is_redacted(capsys) -> None:
    configure_logging("INFO", secrets=["topsecret-42"])
    logger.info("connecting with password topsecret-42")
    logging.getLogger("prefect.flow_runs").warning("url http://x/?apiKey=topsecret-42")
    err = capsys.readouterr().err
    assert "topsecret-42" not in err
    assert err.count("**********") == 2


def test_debug_applies_to_marketpipe_tree_only(capsys) -> None:
    configure_logging("INFO", debug=True)
    logging.getLogger("stack.supervisor").debug("ours-debug")
    logging.getLogger("prefect.engine").debug("theirs-debug")
    err = capsys.readouterr().err
    assert "ours-debug" in err
    assert "theirs-debug" not in err


def test_the_prefect_server_does_not_log_its_background_polls(tmp_path) -> None:
    """The server process runs with our Prefect logging file and the level the stack gives it
    (stack.supervisor: PREFECT_LOGGING_SERVER_LEVEL=WARNING): its docket services' per-poll DEBUG
    and INFO lines stay out of prefect.log, and a warning still gets through."""
    from core.logs import PREFECT_LOGGING_CONFIG

    probe = (
        "import logging\n"
        "from prefect.logging.configuration import setup_logging\n"
        "setup_logging()\n"
        "log = logging.getLogger('docket.worker')\n"
        "print(log.isEnabledFor(logging.DEBUG), log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.WARNING))\n"
    )
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_LOGGING_SETTINGS_PATH": str(PREFECT_LOGGING_CONFIG),
        "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
    }
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"]
