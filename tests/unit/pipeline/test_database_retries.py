"""Which failures the flows' tasks retry: a lost database connection, nothing else."""

from __future__ import annotations

import psycopg
import pytest
from prefect.states import Failed

from core.errors import DataQualityError, ServiceError, StorageError
from db.connect import connection_lost
from tasks.retries import retry_on_lost_database


def raised_from(outer: type[Exception], inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer("wrapped") from exc
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.ConnectionFailure("connection failure"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
        raised_from(StorageError, psycopg.errors.AdminShutdown("terminating connection")),
        raised_from(ServiceError, psycopg.OperationalError("connection refused")),
    ],
)
def test_lost_connections_are_retried(exc: Exception) -> None:
    assert connection_lost(exc)
    assert retry_on_lost_database(None, None, Failed(data=exc))


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad bar"),
        DataQualityError("quality below threshold"),
        psycopg.errors.UniqueViolation("duplicate key"),
        raised_from(StorageError, psycopg.errors.UndefinedTable("relation does not exist")),
        # operational, but the work's own: a new connection fails the same way
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.DiskFull("could not extend file: No space left on device"),
        psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"),
        raised_from(StorageError, psycopg.errors.OutOfMemory("out of memory")),
    ],
)
def test_other_failures_are_not_retried(exc: Exception) -> None:
    assert not connection_lost(exc)
    assert not retry_on_lost_database(None, None, Failed(data=exc))


def test_a_failed_state_without_an_exception_is_not_retried() -> None:
    assert not retry_on_lost_database(None, None, Failed(message="cancelled"))
