"""The seed's integration test command:
``pytest tests/integration/test_data_pipeline_full_integration.py -m integration``.

The whole batch pipeline on the embedded stack, fed by the Polygon adapter from the market sandbox:
all three stages, corporate actions and adjusted reads, the run recorded in the metrics, and an
incremental second run that stores nothing.

The third symbol of the universe is one with a split and a dividend in the daily window (found
through the Polygon adapter's reference endpoints, since the window ends today), so the adjusted
reads are checked against factors computed here and against the vendor's own adjusted bars.
"""

from __future__ import annotations

import asyncio
import string
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pandas as pd
import pytest
from prefect import get_client

from core.calendar import nyse_sessions
from core.settings import Settings
from db.connect import database_connection
from flows.pipeline_flow import pipeline_flow
from sources.factory import build_source
from storage.hot import read_bars

SERIES = [{"timeframe": "1day", "lookback_days": 120}, {"timeframe": "1min", "lookback_days": 5}]


def with_split_and_dividend(stack: Settings, start: date, end: date) -> tuple[str, pd.DataFrame]:
    """The first of FIAA, FIAB, ... with a split and a dividend on different days inside
    ``start``..``end`` (a week clear of ``start``, so each has a stored close before it), and every
    action of it in ``start``..``end`` as the vendor lists them."""

    async def search() -> tuple[str, pd.DataFrame]:
        async with build_source("polygon", stack) as polygon:
            client = polygon.client
            for second in string.ascii_uppercase:
                for third in string.ascii_uppercase:
                    symbol = f"FI{second}{third}"
                    splits = await client.splits(symbol, start + timedelta(days=7), end)
                    if splits.empty:
                        continue
                    dividends = await client.dividends(symbol, start + timedelta(days=7), end)
                    if not dividends.empty and not set(dividends["ex_date"]) & set(splits["ex_date"]):
                        every = [await client.splits(symbol, start, end), await client.dividends(symbol, start, end)]
                        return symbol, pd.concat(every, ignore_index=True)
        raise AssertionError(f"no FI.. symbol of the sandbox has a split and a dividend in {start}..{end}")

    return asyncio.run(search())


def expected_factors(raw: pd.DataFrame, actions: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(split, total) price factor of each raw daily bar, computed independently of the database:
    the product over later ex dates of old/new shares, and of 1 - dividend / the raw close of the
    session before the ex date."""
    days = raw["ts"].dt.tz_convert("America/New_York").dt.date
    split = pd.Series(1.0, index=raw.index)
    total = pd.Series(1.0, index=raw.index)
    for action in actions.itertuples():
        ex = action.ex_date.date()
        before = days < ex
        if action.action == "split":
            split[before] *= action.old_rate / action.new_rate
            total[before] *= action.old_rate / action.new_rate
        elif before.any():  # a dividend with no stored close before it adjusts nothing
            prev_close = raw.loc[before, "close"].iloc[-1]
            total[before] *= 1 - action.amount / prev_close
    return split, total


def completed_sessions(start, end, as_of: datetime) -> int:
    """Sessions closed by ``as_of`` (the run's start: a session closing during the run may be
    stored forming, or not yet)."""
    schedule = nyse_sessions(start, end)
    return int((schedule.close_ns <= int(as_of.timestamp() * 1e9)).sum())


def completed_session_minutes(start, end, as_of: datetime) -> int:
    """Minutes of the sessions closed by ``as_of`` (a half day has 210, not 390)."""
    schedule = nyse_sessions(start, end)
    closed = schedule.close_ns <= int(as_of.timestamp() * 1e9)
    return int(((schedule.close_ns[closed] - schedule.open_ns[closed]) // 60_000_000_000).sum())


def test_full_pipeline_then_an_incremental_rerun(stack: Settings) -> None:
    today = datetime.now(UTC).date()
    acting, actions = with_split_and_dividend(stack, today - timedelta(days=120), today)
    universe = ["FIA", "FIB", acting]
    overrides = {"pipeline": {"symbols": universe, "corporate_actions": True, "bars": SERIES}}
    started = datetime.now(UTC)
    first = asyncio.run(pipeline_flow(overrides=overrides))
    assert first["stages"] == ["ingestion", "processing", "historical", "features"]
    assert first["rejected"] == 0 and first["quality_score"] == pytest.approx(1.0)

    daily_expected = completed_sessions(today - timedelta(days=120), today, started)
    with database_connection(stack) as conn:
        per_symbol = dict(
            conn.execute(
                "SELECT symbol, count(*) FROM market.bars WHERE symbol = ANY(%s) AND timeframe = '1day' GROUP BY 1",
                (universe,),
            ).fetchall()
        )
        minute = conn.execute(
            "SELECT count(*) FROM market.bars WHERE symbol = ANY(%s) AND timeframe = '1min'", (universe,)
        ).fetchone()[0]
        feature_rows = conn.execute(
            "SELECT count(*) FROM features.bar_features WHERE symbol = ANY(%s) AND timeframe = '1day'", (universe,)
        ).fetchone()[0]
        runs = conn.execute(
            "SELECT records_ingested, records_stored FROM ops.pipeline_runs WHERE run_id = %s", (first["run_id"],)
        ).fetchone()
    # today's session, if still trading, may be partly there: at least every completed session
    assert all(n >= daily_expected for n in per_symbol.values()) and set(per_symbol) == set(universe)
    assert minute >= completed_session_minutes(today - timedelta(days=5), today, started) * len(universe)
    assert runs == (first["records_ingested"], first["records_stored"])
    assert feature_rows == sum(per_symbol.values())  # one feature row per stored daily bar

    # whole days around the window, so the read does not depend on the time of day
    since = datetime.combine(today - timedelta(days=121), datetime.min.time(), UTC)
    until = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    with database_connection(stack) as conn:
        raw = read_bars(conn, [acting], since, until, "1day")
        split_adjusted = read_bars(conn, [acting], since, until, "1day", adjustment="split")
        adjusted = read_bars(conn, [acting], since, until, "1day", adjustment="all")
        stored_actions = conn.execute(
            "SELECT action, ex_date FROM market.corporate_actions WHERE symbol = %s ORDER BY ex_date, action",
            (acting,),
        ).fetchall()
    assert len(raw) == len(adjusted) == len(split_adjusted) == per_symbol[acting]
    assert sorted((a.action, a.ex_date.date()) for a in actions.itertuples()) == sorted(stored_actions)
    split_factor, total_factor = expected_factors(raw, actions)
    assert split_factor.iloc[0] != 1.0 and total_factor.iloc[0] < split_factor.iloc[0]  # both act on the first bar
    assert split_adjusted["close"].to_numpy() == pytest.approx((raw["close"] * split_factor).to_numpy(), rel=1e-12)
    assert adjusted["close"].to_numpy() == pytest.approx((raw["close"] * total_factor).to_numpy(), rel=1e-12)
    assert adjusted["volume"].to_numpy() == pytest.approx((raw["volume"] / split_factor).round().to_numpy())
    # and the vendor's own total-return adjusted bars (Alpaca's adjustment=all: rounded to 4 decimals)
    vendor = vendor_adjusted_closes(stack, acting, raw["ts"].iloc[0], raw["ts"].iloc[-1])
    assert list(vendor.index) == list(adjusted["ts"])
    assert (vendor.to_numpy() - adjusted["close"].to_numpy()) == pytest.approx(0, abs=1e-3)

    # every stage's sub-flow run is tagged with its source and dataset (UI filters, automations)
    with get_client(sync_client=True) as client:
        ingest_tags = [set(client.read_flow_run(UUID(run["run_id"])).tags) for run in first["ingestion"]]
    assert all({"source:polygon"} <= t for t in ingest_tags)
    assert {"dataset:market_data", "timeframe:1day"} in [t - {"source:polygon"} for t in ingest_tags]
    assert {"dataset:market_data", "timeframe:1min"} in [t - {"source:polygon"} for t in ingest_tags]
    assert any("dataset:corporate_actions" in t for t in ingest_tags)

    second = asyncio.run(pipeline_flow(overrides=overrides))
    assert second["records_stored"] == 0
    # at most the session still trading is fetched again
    refetched = [sum(c["records"] for c in run["collected"]) for run in second["ingestion"]]
    assert all(n <= 390 * len(universe) for n in refetched)


def vendor_adjusted_closes(stack: Settings, symbol: str, first: datetime, last: datetime) -> pd.Series:
    async def fetch() -> pd.DataFrame:
        async with build_source("alpaca", stack, options={"adjustment": "all"}) as alpaca:
            return await alpaca.fetch_data(symbol, first, last + timedelta(hours=23), "1day")

    bars = asyncio.run(fetch())
    return bars.set_index("ts")["close"]
