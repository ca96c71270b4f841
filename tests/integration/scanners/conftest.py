"""The scanner tests' market, written through the hot writer for symbols no other test uses.

Tests share one database, so every assertion is scoped to this module's symbols; scanners are
called with limits large enough that other tests' symbols cannot push these out of the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from db.connect import database_connection
from storage.hot import upsert_bars
from tests.support.scanners import (
    Market,
    daily_bars,
    delete_symbols,
    feature_rows,
    intraday_bars,
    unique_symbols,
    write_features,
)


@pytest.fixture(scope="module")
def market(stack) -> Iterator[Market]:
    """Six symbols: 1-minute bars over two sessions, 60 daily bars, RSI in two feature sets."""
    rng = np.random.default_rng(6)
    symbols = unique_symbols(6)
    intraday, daily = intraday_bars(symbols, rng), daily_bars(symbols, rng)
    features = feature_rows(daily, rng)
    with database_connection(stack, autocommit=True) as connection:
        try:
            upsert_bars(connection, intraday)
            upsert_bars(connection, daily)
            write_features(connection, features)
            yield Market(symbols, intraday, daily, features)
        finally:
            delete_symbols(connection, symbols)


@pytest.fixture
def fresh_symbols(symbols: Callable[[], str]) -> list[str]:
    """Three symbols from the session's ``symbols`` factory (deleted afterwards), for tests that
    write their own bars."""
    return [symbols() for _ in range(3)]
