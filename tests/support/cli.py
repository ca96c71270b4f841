"""Run the ``marketpipe`` command line in the test process, as the console script would run it.

``run_cli("scan", "latest")`` invokes the real root app (global options, error translation, exit
codes) through Typer's CliRunner and returns a ``subprocess.CompletedProcess``, so a test reads the
same whether it runs a command here or through the console script (``marketpipe_cli`` in
tests/conftest.py, kept for what needs a process of its own: the entry point itself, kill -9,
``worker``'s exec, a fresh interpreter).

A command changes process-wide state that a subprocess would have taken with it: the environment
(PREFECT_API_URL, MARKETPIPE_CONFIG, ...), the working directory it expects (the repository),
loguru's sinks and the standard library's logging. All of it is put back afterwards, so the next
test sees the session as it was.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess

from loguru import logger
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> CompletedProcess[str]:
    """``marketpipe ARGS`` in this process, with ENV added to the environment, from the repository.

    A bug (an exception the CLI does not translate) ends like it would in a process: exit code 1
    and the traceback on stderr.
    """
    from marketpipe.cli import app

    with _process_state_restored():
        os.environ.update(env or {})
        os.chdir(REPO)
        result = CliRunner().invoke(app, list(args), prog_name="marketpipe")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return CompletedProcess(["marketpipe", *args], result.exit_code, result.stdout, stderr)


@contextmanager
def _process_state_restored() -> Iterator[None]:
    environ = dict(os.environ)
    cwd = Path.cwd()
    loggers = {
        name: (log.level, list(log.handlers), log.propagate, log.disabled)
        for name, log in logging.root.manager.loggerDict.items()
        if isinstance(log, logging.Logger)
    }
    root = (logging.root.level, list(logging.root.handlers))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        for name, (level, handlers, propagate, disabled) in loggers.items():
            log = logging.getLogger(name)
            log.setLevel(level)
            log.handlers[:] = handlers
            log.propagate, log.disabled = propagate, disabled
        logging.root.setLevel(root[0])
        logging.root.handlers[:] = root[1]
        # The command's sink wrote to the runner's captured stderr, gone now: back to a live
        # stderr at WARNING, as tests/conftest.py and tests/unit/test_logs.py leave it.
        logger.remove()
        logger.configure(patcher=None)
        logger.add(sys.__stderr__, level="WARNING")
