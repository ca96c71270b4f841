"""Trades on the real stack: the idempotent writer, tiering to cold/trades/date=..., and the read
router returning the same frame before and after tiering (hot, cold, or both merged)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from core.errors import RequestError, StorageError
from core.model import TRADES, frame
from core.settings import Settings
from storage.lake import Lake
from storage.router import StorageRouter
from storage.tiering import DATASETS, manifest_files, table_checksum, tier_chunks
from storage.trades import read_trades, upsert_trades


def make_trades(symbols: list[str], start: str, sessions: int, per_session: int = 40, seed: int = 7) -> pd.DataFrame:
    """``per_session`` trades per symbol on each of ``sessions`` weekdays from 14:30 UTC, on two
    exchanges whose trade ids overlap (the key needs the exchange), some without conditions or tape."""
    rng = np.random.default_rng(seed)
    parts = []
    for symbol in symbols:
        for day in pd.bdate_range(start, periods=sessions, tz="UTC"):
            n = per_session
            offsets = pd.to_timedelta(np.sort(rng.integers(0, 3_600_000, n)), "ms")
            ts = day + pd.Timedelta(hours=14, minutes=30) + offsets
            exchange = np.where(np.arange(n) % 2 == 0, "4", "11")
            conditions = np.where(rng.random(n) < 0.2, None, "12,37")
            parts.append(
                frame(
                    TRADES,
                    {
                        "symbol": symbol,
                        "ts": ts,
                        "price": 100 + rng.normal(0, 1, n).cumsum(),
                        "size": rng.integers(1, 500, n),
                        "exchange": exchange,
                        "trade_id": [str(i // 2) for i in range(n)],
                        "conditions": conditions,
                        "tape": np.where(rng.random(n) < 0.1, None, "C"),
                        "source": "trades-test",
                    },
                    what="test trades",
                )
            )
    return pd.concat(parts, ignore_index=True)


def hot_count(conn: psycopg.Connection, symbols: list[str]) -> int:
    return conn.execute("SELECT count(*) FROM market.trades WHERE symbol = ANY(%s)", (symbols,)).fetchone()[0]


def strict(settings: Settings) -> Settings:
    routing = settings.storage.routing.model_copy(update={"cold_fallback_enabled": False})
    return settings.model_copy(update={"storage": settings.storage.model_copy(update={"routing": routing})})


def test_trades_are_upserted_idempotently_and_a_correction_rewrites_its_row(
    conn: psycopg.Connection, symbols: Callable[[], str]
) -> None:
    names = [symbols() for _ in range(2)]
    trades = make_trades(names, "1987-03-02", 2)

    first = upsert_trades(conn, trades)
    again = upsert_trades(conn, trades)
    corrected = upsert_trades(conn, trades.head(1).assign(price=1.25))

    assert (first.inserted, again.inserted, again.updated, again.unchanged) == (len(trades), 0, 0, len(trades))
    assert (corrected.inserted, corrected.updated) == (0, 1)
    stored = read_trades(conn, names, "1987-03-01", "1987-03-10")
    assert len(stored) == len(trades) == hot_count(conn, names)
    assert stored.loc[
        (stored["symbol"] == trades["symbol"][0])
        & (stored["ts"] == trades["ts"][0])
        & (stored["exchange"] == trades["exchange"][0]),
        "price",
    ].tolist() == [1.25]


def test_trades_without_an_identity_are_refused_before_anything_is_written(
    conn: psycopg.Connection, symbols: Callable[[], str]
) -> None:
    names = [symbols()]
    trades = make_trades(names, "1987-04-06", 1, per_session=4)
    trades.loc[1, "trade_id"] = None

    with pytest.raises(StorageError, match="1 trade\\(s\\) without trade_id"):
        upsert_trades(conn, trades)

    assert hot_count(conn, names) == 0


def test_trades_read_identically_before_and_after_tiering(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(3))
    trades = make_trades(names, "1986-06-02", 3)  # Mon..Wed
    upsert_trades(conn, trades)
    router = StorageRouter(conn, lake, stack)
    queries = [
        (names, "1986-06-01", "1986-06-10"),
        (names[:1], "1986-06-03 14:45", "1986-06-04 15:00"),
        (names[1:], "1986-06-02", "1986-06-03"),
    ]
    before = [router.read_trades(s, a, b) for s, a, b in queries]
    assert len(before[0]) == len(trades)
    assert_frame_equal(before[0], trades.sort_values(["symbol", "ts", "exchange", "trade_id"], ignore_index=True))

    monday, wednesday = datetime(1986, 6, 2, tzinfo=UTC), datetime(1986, 6, 4, tzinfo=UTC)
    report = tier_chunks(conn, lake, stack, dataset="trades", older_than=wednesday, newer_than=monday)

    assert report.rows == 2 * 3 * 40 and hot_count(conn, names) == 3 * 40  # Monday and Tuesday are cold
    files = manifest_files(conn, dataset="trades", symbols=names, start=monday, end=wednesday)
    assert sorted(f.key.split("/")[2] for f in files) == ["date=1986-06-02", "date=1986-06-03"]
    for f in files:
        assert f.key.startswith("cold/trades/date=1986-06-0") and f.timeframe == "tick"
        stored = pq.read_table(f"{lake.bucket}/{f.key}", filesystem=lake.filesystem())
        assert stored.num_rows == f.row_count and table_checksum(stored) == f.checksum
    assert router.plan(DATASETS["trades"], names, monday, datetime(1986, 6, 10, tzinfo=UTC), "tick").name == "hot+cold"
    after = [router.read_trades(s, a, b) for s, a, b in queries]
    for expected, actual in zip(before, after, strict=True):
        assert_frame_equal(actual, expected)

    late = before[0][before[0]["ts"] < wednesday].head(1).assign(price=777.0, size=1)
    upsert_trades(conn, late)  # a correction of a cold trade lands in a new hot chunk and wins
    expected = before[0].copy()
    expected.loc[late.index, ["price", "size"]] = [777.0, 1]
    assert_frame_equal(router.read_trades(names, "1986-06-01", "1986-06-10"), expected)


def test_cold_trades_are_refused_without_cold_fallback(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = [symbols()]
    upsert_trades(conn, make_trades(names, "1985-06-03", 1, per_session=5))
    monday = datetime(1985, 6, 3, tzinfo=UTC)
    tier_chunks(conn, lake, stack, dataset="trades", older_than=datetime(1985, 6, 4, tzinfo=UTC), newer_than=monday)
    router = StorageRouter(conn, lake, strict(stack), now=datetime(1985, 12, 1, tzinfo=UTC))

    with pytest.raises(RequestError) as refused:
        router.read_trades(names, "1985-06-01", "1985-06-30")

    assert "1985-06-01 00:00" in str(refused.value) and "cold_fallback_enabled" in str(refused.value)


@pytest.mark.parametrize(
    ("symbols_arg", "start", "end", "message"),
    [
        ("AAPL", "2024-01-01", "2024-01-02", "symbols must be a list"),
        ([], "2024-01-01", "2024-01-02", "symbols is empty"),
        (["AAPL"], "2024-01-02", "2024-01-01", "is not after start"),
    ],
)
def test_bad_trade_requests_are_refused_with_the_value(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols_arg: object, start: str, end: str, message: str
) -> None:
    with pytest.raises(RequestError, match=message):
        StorageRouter(conn, lake, stack).read_trades(symbols_arg, start, end)  # type: ignore[arg-type]
