"""Alpaca and Yahoo through the real flows (ingest -> process -> features) on the stack's sandbox,
and ``pipeline.source: alpaca|yahoo`` through ``run_pipeline``'s flow.

The stored bars are compared with the Polygon adapter's unadjusted bars of the same sandbox market
(the same prices from every vendor; Yahoo stamps daily bars at the opening bell and serves split-
adjusted prices, which its parser turns into midnight-stamped raw bars). Each test ingests one
vendor into symbols of its own, so which vendor's rows a consolidated read prefers never matters.

The symbols are named (the sandbox's seed-42 market gives each its history); the pipeline test
picks VPA.. symbols with a dividend in its 60-day window, which moves with the day it runs. VFAC
splits 2-for-1 on 2026-02-18, after the daily window: Yahoo's prices for it are halved and its
volumes doubled, so its rows equal Polygon's only if the parser undoes the later split. VFUG splits
2-for-1 on 2026-01-16 (a Friday; Monday 19 is a holiday) and pays $1.1255 ex 2025-10-22, which
Yahoo lists as 0.56275: its minute bars of 2026-01-08..21 come in two 7-day requests, the first all
before the split (its events list none), the second with the split inside. Their rows are deleted
before and after each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from core.settings import Settings
from db.connect import database_connection
from flows.features_flow import features_flow
from flows.ingestion import ingest_flow
from flows.pipeline_flow import pipeline_flow
from sources.factory import build_source
from storage.hot import Adjustment, read_bars

DAILY = ("2024-01-02", "2024-06-28T23:59:59")
INTRADAY = ("2024-03-04", "2024-03-15T23:59:59")  # 10 sessions: more than one Yahoo 1-minute request
FLOW_SYMBOL = {"alpaca": "VPAB", "yahoo": "VPAD"}
VENDORS = tuple(FLOW_SYMBOL)
SPLIT_AFTER = "VFAC"  # see the module docstring
SPLIT_IN_MINUTES = "VFUG"
MINUTES_ACROSS_SPLIT = ("2026-01-08", "2026-01-21T23:59:59")
SPLIT_EX = pd.Timestamp("2026-01-16", tz="America/New_York")
PRICES = ["open", "high", "low", "close"]


def delete_rows(stack: Settings, symbols: list[str]) -> None:
    with database_connection(stack, autocommit=True) as conn:
        for table in (
            "market.bars_intraday",
            "market.bars_daily",
            "market.latest_bars",
            "market.corporate_actions",
            "features.bar_features",
            "features.bar_feature_values",
            "ops.watermarks",
            "ops.raw_pages",
        ):
            conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (symbols,))  # type: ignore[arg-type]


@pytest.fixture
def named(stack: Settings) -> Iterator[Callable[[str], str]]:
    """Named symbols (their corporate actions are known), their rows deleted before and after."""
    used: list[str] = []

    def use(symbol: str) -> str:
        delete_rows(stack, [symbol])
        used.append(symbol)
        return symbol

    yield use
    delete_rows(stack, used)


def polygon_bars(stack: Settings, symbol: str, start: str, end: str, timeframe: str) -> pd.DataFrame:
    """The same market's unadjusted bars as the Polygon adapter reads them (the reference)."""

    async def fetch() -> pd.DataFrame:
        async with build_source("polygon", stack) as source:
            return await source.client.aggregates(symbol, start, end, timeframe=timeframe, adjusted=False)

    return asyncio.run(fetch())


def stored_bars(
    stack: Settings, symbol: str, start: str, end: str, timeframe: str, adjustment: Adjustment = "raw"
) -> pd.DataFrame:
    lo = datetime.fromisoformat(start[:10]).replace(tzinfo=UTC)
    hi = datetime.fromisoformat(end[:10]).replace(tzinfo=UTC) + timedelta(days=1)
    with database_connection(stack) as conn:
        return read_bars(conn, [symbol], lo, hi, timeframe, adjustment=adjustment)


def assert_same_bars(stored: pd.DataFrame, reference: pd.DataFrame, source: str) -> None:
    """Same stamps, the same prices (Yahoo's to its 4-decimal rounding of adjusted prices) and volumes."""
    assert len(stored) > 0 and set(stored["source"]) == {source}
    left = stored.set_index("ts").sort_index()
    right = reference.set_index("ts").sort_index()
    assert list(left.index) == list(right.index)
    tolerance = 1e-3 if source == "yahoo" else 1e-9
    for column in PRICES:
        assert (left[column] - right[column]).abs().max() <= tolerance, column
    assert (left["volume"] - right["volume"]).abs().max() <= (2 if source == "yahoo" else 0)


def ingest(symbol: str, source: str, window: tuple[str, str], timeframe: str, data_type: str = "market_data") -> dict:
    start, end = window
    return asyncio.run(
        ingest_flow(
            symbols=[symbol], start_date=start, end_date=end, timeframe=timeframe, source=source, data_type=data_type
        )
    )


@pytest.mark.parametrize("source", VENDORS)
def test_daily_and_minute_bars_from_the_vendor_equal_polygon_and_get_features(
    stack: Settings, named, source: str
) -> None:
    symbol = named(FLOW_SYMBOL[source])
    daily = ingest(symbol, source, DAILY, "1day")
    minute = ingest(symbol, source, INTRADAY, "1min")
    features = asyncio.run(
        features_flow(symbols=[symbol], timeframe="1day", start_date=DAILY[0], end_date=DAILY[1][:10])
    )

    assert daily["failed"] == [] and minute["failed"] == [], [
        c["error"] for c in daily["collected"] + minute["collected"]
    ]
    assert daily["quality_score"] == pytest.approx(1.0) and minute["quality_score"] == pytest.approx(1.0)
    stored_daily = stored_bars(stack, symbol, *DAILY, "1day")
    stored_minute = stored_bars(stack, symbol, *INTRADAY, "1min")
    assert_same_bars(stored_daily, polygon_bars(stack, symbol, *DAILY, "1day"), source)
    assert_same_bars(stored_minute, polygon_bars(stack, symbol, *INTRADAY, "1min"), source)
    assert len(stored_minute) == 10 * 390
    assert sum(p["inserted"] for p in daily["processed"]) == len(stored_daily)
    with database_connection(stack) as conn:
        feature_rows = conn.execute(
            "SELECT count(*) FROM features.bar_features WHERE symbol = %s AND timeframe = '1day'", (symbol,)
        ).fetchone()[0]
    assert feature_rows == len(stored_daily) and sum(b["bars"] for b in features["batches"]) == len(stored_daily)

    again = ingest(symbol, source, DAILY, "1day")  # incremental: nothing new
    assert again["collected"] == [] and again["up_to_date"] == [symbol]


def test_yahoo_prices_before_a_later_split_are_stored_raw(stack: Settings, named) -> None:
    symbol = named(SPLIT_AFTER)
    ingest(symbol, "yahoo", DAILY, "1day")

    stored = stored_bars(stack, symbol, *DAILY, "1day")
    reference = polygon_bars(stack, symbol, *DAILY, "1day")
    assert_same_bars(stored, reference, "yahoo")
    assert reference["close"].min() > 0


def test_yahoo_minute_bars_across_a_split_are_stored_raw_and_adjusted_once(stack: Settings, named) -> None:
    symbol = named(SPLIT_IN_MINUTES)
    actions = ingest(symbol, "yahoo", ("2025-06-02", MINUTES_ACROSS_SPLIT[1]), "1day", "corporate_actions")
    minute = ingest(symbol, "yahoo", MINUTES_ACROSS_SPLIT, "1min")

    assert actions["failed"] == [] and minute["failed"] == [], [c["error"] for c in minute["collected"]]
    stored = stored_bars(stack, symbol, *MINUTES_ACROSS_SPLIT, "1min")
    reference = polygon_bars(stack, symbol, *MINUTES_ACROSS_SPLIT, "1min")
    assert_same_bars(stored, reference, "yahoo")  # the sandbox's raw truth, before and after the split
    before = stored["ts"] < SPLIT_EX
    assert before.sum() == 6 * 390 and (~before).sum() == 3 * 390
    split_adjusted = stored_bars(stack, symbol, *MINUTES_ACROSS_SPLIT, "1min", adjustment="split")
    assert (split_adjusted["ts"] == stored["ts"]).all()
    assert (split_adjusted["close"][before] - stored["close"][before] / 2).abs().max() < 1e-9  # once, not twice
    assert (split_adjusted["volume"][before] == stored["volume"][before] * 2).all()
    assert (split_adjusted["close"][~before] == stored["close"][~before]).all()


def test_yahoo_dividends_before_a_later_split_are_stored_in_cash_paid(stack: Settings, named) -> None:
    symbol = named(SPLIT_IN_MINUTES)
    ingest(symbol, "yahoo", ("2025-06-02", "2025-12-31"), "1day", "corporate_actions")

    with database_connection(stack) as conn:
        stored = conn.execute(
            "SELECT ex_date, amount FROM market.corporate_actions WHERE symbol = %s AND action = 'dividend' "
            "ORDER BY ex_date",
            (symbol,),
        ).fetchall()

    async def paid() -> pd.DataFrame:
        async with build_source("polygon", stack) as polygon:
            return await polygon.client.dividends(symbol, date(2025, 6, 2), date(2025, 12, 31))

    reference = asyncio.run(paid()).sort_values("ex_date")
    assert [(d.isoformat(), float(a)) for d, a in stored] == [
        (ts.date().isoformat(), pytest.approx(float(a)))
        for ts, a in zip(reference["ex_date"], reference["amount"], strict=True)
    ]
    assert (date(2025, 10, 22), pytest.approx(1.1255)) in [(d, float(a)) for d, a in stored]  # Yahoo: 0.56275


def dividend_payer(stack: Settings, start: date, end: date, skip: int) -> str:
    """The (skip+1)-th VPA.. symbol of the sandbox that pays a dividend in ``start``..``end`` and
    splits nowhere after 2023 (see the module docstring): the window moves with the date the test
    runs on, so a fixed symbol would have no action in it on some days."""

    async def search() -> str:
        found = 0
        async with build_source("polygon", stack) as polygon:
            client = polygon.client
            for letter in "BCDEFGHIJKLMNOPQRSTUVWXYZ":
                symbol = f"VPA{letter}"
                if symbol in FLOW_SYMBOL.values() or (await client.dividends(symbol, start, end)).empty:
                    continue
                if not (await client.splits(symbol, date(2024, 1, 1), end)).empty:
                    continue
                if found == skip:
                    return symbol
                found += 1
        raise AssertionError(f"no VPA.. symbol of the sandbox pays a dividend in {start}..{end} without a later split")

    return asyncio.run(search())


@pytest.mark.parametrize("source", VENDORS)
def test_the_pipeline_runs_from_the_configured_vendor(stack: Settings, named, source: str) -> None:
    today = datetime.now(UTC).date()
    symbol = named(dividend_payer(stack, today - timedelta(days=60), today, skip=VENDORS.index(source)))
    overrides = {
        "pipeline": {
            "source": source,
            "symbols": [symbol],
            "corporate_actions": True,
            "bars": [{"timeframe": "1day", "lookback_days": 60}, {"timeframe": "1min", "lookback_days": 14}],
        }
    }
    summary = asyncio.run(pipeline_flow(overrides=overrides))

    assert summary["stages"] == ["ingestion", "processing", "historical", "features"]
    assert summary["rejected"] == 0 and summary["quality_score"] == pytest.approx(1.0)
    assert all(run["failed"] == [] for run in summary["ingestion"])
    start = (today - timedelta(days=60)).isoformat()
    end = f"{today.isoformat()}T23:59:59"
    stored = stored_bars(stack, symbol, start, end, "1day")
    assert_same_bars(stored, polygon_bars(stack, symbol, start, end, "1day"), source)
    minute_start = (today - timedelta(days=14)).isoformat()
    minute = stored_bars(stack, symbol, minute_start, end, "1min")
    assert_same_bars(minute, polygon_bars(stack, symbol, minute_start, end, "1min"), source)
    with database_connection(stack) as conn:
        feature_rows = conn.execute(
            "SELECT count(*) FROM features.bar_features WHERE symbol = %s AND timeframe = '1day'", (symbol,)
        ).fetchone()[0]
        actions = conn.execute("SELECT count(*) FROM market.corporate_actions WHERE symbol = %s", (symbol,)).fetchone()[
            0
        ]
    assert feature_rows == len(stored)
    expected_actions = polygon_actions(stack, symbol, date.fromisoformat(start), today)
    assert actions == len(expected_actions) > 0


def polygon_actions(stack: Settings, symbol: str, start: date, end: date) -> pd.DataFrame:
    async def fetch() -> pd.DataFrame:
        async with build_source("polygon", stack) as source:
            client = source.client
            return pd.concat([await client.splits(symbol, start, end), await client.dividends(symbol, start, end)])

    return asyncio.run(fetch())
