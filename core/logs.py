"""Logging: loguru for the application, with the standard library and Prefect routed through it.

Called once by the entry point. Every record passes a redactor that replaces the values of the
configured secrets, so a password that slips into a message (a DSN, an URL) never reaches a sink.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

REDACTED = "**********"
PREFECT_LOGGING_CONFIG = Path(__file__).with_name("prefect_logging.yml")
# marketpipe's top-level packages (the README's layout): --debug opens their loggers only.
OUR_PACKAGES = frozenset(
    {
        "marketpipe",
        "bench",
        "deployments",
        "stack",
        "flows",
        "tasks",
        "pipeline",
        "features",
        "storage",
        "quality",
        "sources",
        "db",
        "core",
        "sandbox",
    }
)


class InterceptHandler(logging.Handler):
    """Forwards standard-library records (Prefect, httpx, psycopg, ...) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame: FrameType | None = logging.currentframe()
        depth = 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        logger.opt(depth=depth, exception=record.exc_info).bind(logger_name=record.name).log(level, record.getMessage())


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def configure_logging(level: str = "INFO", debug: bool = False, secrets: Iterable[str] = ()) -> None:
    """Route every logger through loguru; ``debug`` turns on DEBUG for the marketpipe tree only."""
    # Prefect (re)configures the standard library's logging on import and when runs start; point
    # it at our config so its loggers stay routed here (and to its API).
    os.environ["PREFECT_LOGGING_SETTINGS_PATH"] = str(PREFECT_LOGGING_CONFIG)
    secret_list = sorted({s for s in secrets if s}, key=len, reverse=True)

    def patch(record: Record) -> None:
        record["extra"].setdefault("logger_name", record["name"])
        record["message"] = redact(record["message"], secret_list)
        if record["exception"] is not None and secret_list:
            # Exception text is rendered later; redact its args now.
            exc = record["exception"].value
            if exc is not None and exc.args:
                exc.args = tuple(redact(str(a), secret_list) if isinstance(a, str) else a for a in exc.args)

    def keep(record: Record) -> bool:
        name = record["extra"]["logger_name"] or ""
        ours = name.split(".")[0] in OUR_PACKAGES
        threshold = "DEBUG" if (debug and ours) else level
        return record["level"].no >= logger.level(threshold).no

    logger.remove()
    logger.configure(patcher=patch)
    logger.add(
        sys.stderr,
        level="TRACE",
        filter=keep,
        format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> <cyan>{extra[logger_name]}</cyan> {message}",
        backtrace=False,
        diagnose=False,
    )
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else level)
    # Chatty clients: one line per HTTP request is noise unless debugging.
    for name in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
