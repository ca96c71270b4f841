"""The option analytics recompute over stored snapshots on the real stack: chains ingested from the
sandbox, then some stored IV and greeks corrupted and the chain features deleted; the recompute
(threads, then a LocalCluster of two worker processes through prefect-dask) stores exactly what the
ingest path stored, and a rerun changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from core.settings import Settings
from db.connect import database_connection
from flows.options import options_analytics_flow
from tests.support.options import forget_options, ingest_options, stored_quotes

SYMBOLS = ["OPTRA", "OPTRB"]


def stored(conn: psycopg.Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both underlyings' quotes (without ingested_at) and option feature values, in key order."""
    quotes = pd.concat([stored_quotes(conn, s) for s in SYMBOLS], ignore_index=True).drop(columns=["ingested_at"])
    cur = conn.execute(
        "SELECT symbol, timeframe, ts, feature_set, name, value FROM features.bar_feature_values"
        " WHERE symbol = ANY(%s) AND feature_set = 'options1' ORDER BY symbol, timeframe, ts, name",
        (SYMBOLS,),
    )
    features = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description or []])
    return quotes, features


@pytest.fixture(scope="module")
def ingested(stack: Settings) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    with database_connection(stack, autocommit=True) as conn:
        for symbol in SYMBOLS:
            forget_options(conn, symbol)
    for symbol in SYMBOLS:
        ingest_options(stack, symbol)
    with database_connection(stack, autocommit=True) as conn:
        reference = stored(conn)
    yield reference
    with database_connection(stack, autocommit=True) as conn:
        for symbol in SYMBOLS:
            forget_options(conn, symbol)


def corrupt(conn: psycopg.Connection) -> tuple[int, int]:
    """Forget the IV of some solved quotes, spoil the greeks of others, delete the chain features;
    returns (quotes spoiled, feature values deleted)."""
    forgot = conn.execute(
        "UPDATE market.option_quotes SET iv = NULL, delta = NULL, iv_reason = 3"
        " WHERE underlying = ANY(%s) AND iv_reason = 0 AND strike::int %% 3 = 0",
        (SYMBOLS,),
    ).rowcount
    spoiled = conn.execute(
        "UPDATE market.option_quotes SET delta = 9.9, gamma = -1, rate = 0.5 WHERE underlying = ANY(%s)"
        " AND strike::int %% 3 = 1",
        (SYMBOLS,),
    ).rowcount
    deleted = conn.execute(
        "DELETE FROM features.bar_feature_values WHERE symbol = ANY(%s) AND feature_set = 'options1'", (SYMBOLS,)
    ).rowcount
    assert forgot > 10 and spoiled > 10 and deleted > 0
    return forgot + spoiled, deleted


def recompute(quotes: pd.DataFrame, compute: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    days = pd.to_datetime(quotes["ts"], utc=True)
    start, end = (days.min() - pd.Timedelta(days=1)).date(), (days.max() + pd.Timedelta(days=1)).date()
    overrides = {"compute": {"symbols_per_shard": 1, **compute}}
    state = asyncio.run(
        options_analytics_flow(
            symbols=SYMBOLS,
            start_date=start.isoformat(),
            end_date=end.isoformat(),
            overrides=overrides,
            return_state=True,
        )
    )
    return state.result(), state.state_details.flow_run_id


def shard_task_names(flow_run_id: Any) -> list[str]:
    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return sorted(r.name for r in runs)

    return asyncio.run(read())


def assert_restored(conn: psycopg.Connection, reference: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    quotes, features = stored(conn)
    pd.testing.assert_frame_equal(quotes, reference[0], check_exact=True)
    pd.testing.assert_frame_equal(features, reference[1], check_exact=True)


@pytest.mark.parametrize(
    "compute", [{"task_runner": "threads"}, {"task_runner": "dask", "n_workers": 2}], ids=["threads", "dask"]
)
def test_the_recompute_restores_exactly_the_ingest_paths_values_and_a_rerun_changes_nothing(
    stack: Settings, ingested: tuple[pd.DataFrame, pd.DataFrame], compute: dict[str, Any]
) -> None:
    quotes, features = ingested
    assert quotes["iv"].notna().sum() > 50 and len(features) > 0
    with database_connection(stack, autocommit=True) as conn:
        spoiled, deleted = corrupt(conn)

        summary, run_id = recompute(quotes, compute)

        assert_restored(conn, ingested)
        assert (
            summary["quotes"] == len(quotes)
            and summary["snapshots"] == quotes.groupby("underlying")["ts"].nunique().sum()
        )
        assert summary["quotes_updated"] == spoiled
        assert summary["features_inserted"] == deleted and summary["features_updated"] == 0
        assert [s["underlyings"] for s in summary["shards"]] == [[s] for s in sorted(SYMBOLS)]
        kind = "option-analytics-shard-" if compute["task_runner"] == "dask" else "option-analytics-"
        assert shard_task_names(run_id) == sorted(f"{kind}{s}" for s in SYMBOLS)  # ran on that runner

        again, _ = recompute(quotes, compute)

        assert_restored(conn, ingested)
        assert again["quotes_updated"] == 0 and again["quotes_unchanged"] == len(quotes)
        assert again["features_inserted"] == again["features_updated"] == 0 and again["features_unchanged"] == deleted
