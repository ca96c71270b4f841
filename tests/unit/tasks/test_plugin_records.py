"""A plugin's ``fetch_data`` at the collection's seam: its failures become SourceErrors that name
what was asked (so the collection dead-letters them and a replay can ask again)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pandas as pd
import pytest

from core import model
from core.errors import ConfigurationError, RetryableSourceError, SourceError
from sources.base import BaseSource
from sources.http import Request
from sources.records import records_request
from tasks.collection import fetch_records

START, END = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 8, 23, 59, 59, tzinfo=UTC)


class Flaky(BaseSource):
    """Raises what it is told to, else echoes what it was asked."""

    name = "flaky"

    def __init__(self, error: BaseException | None = None) -> None:
        super().__init__()
        self.error = error
        self.asked: list[tuple] = []

    async def fetch_data(self, symbol, start_date, end_date):
        self.asked.append((symbol, start_date, end_date))
        if self.error is not None:
            raise self.error
        return model.empty_frame(model.BARS)


def asked() -> Request:
    return records_request("flaky", symbol="AAPL", start=START, end=END, timeframe="1day", schema="bars")


def test_fetch_data_is_asked_for_the_symbol_and_range_of_the_request() -> None:
    source = Flaky()
    frame = asyncio.run(fetch_records(source, asked()))
    assert source.asked == [("AAPL", START, END)] and isinstance(frame, pd.DataFrame)


def test_a_plugins_own_exception_becomes_a_source_error_naming_the_request() -> None:
    with pytest.raises(SourceError, match=r"source 'flaky' failed to fetch AAPL .*ConnectionError: down") as err:
        asyncio.run(fetch_records(Flaky(ConnectionError("down")), asked()))
    assert err.value.request == asked() and isinstance(err.value.__cause__, ConnectionError)


def test_a_source_error_without_a_request_gets_the_one_asked() -> None:
    with pytest.raises(RetryableSourceError) as err:
        asyncio.run(fetch_records(Flaky(RetryableSourceError("429")), asked()))
    assert err.value.request == asked()


def test_a_configuration_error_is_not_a_fetch_failure() -> None:
    with pytest.raises(ConfigurationError):
        asyncio.run(fetch_records(Flaky(ConfigurationError("no key")), asked()))
