"""Logging: secrets are redacted from every record; --debug only opens the marketpipe tree."""

from __future__ import annotations

import logging
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
