"""The features flow on a Dask cluster, from the lake: bars/s on 1 and 2 workers (or on the workers of
an existing cluster), the scaling between them and, on paper, a large universe.

``marketpipe bench features --cluster local|tcp://HOST:PORT [--cluster-symbols N] [--sessions N]``

Synthetic 1-minute bars (``symbols`` x ``sessions`` NYSE sessions of 390 bars, the storage bench's
price model) go into a throwaway database (``bench_features_cluster`` on the stack's PostgreSQL,
migrated by the real migrator) and are tiered, every chunk, into a bucket of their own
(``marketpipe-bench-features``), so the real tables and lake are never touched. Then, per worker
count, the real ``features`` flow runs with ``compute.task_runner=dask`` on a LocalCluster of that
many one-thread worker processes (their numba kernels one thread each): each shard reads its
symbols' history from the lake's Parquet through the StorageRouter, computes on its worker and
upserts its feature rows. The clock covers the flow only: the cluster is started and every worker
warmed (imports, the kernels' compiled cache) before it, and the feature tables are emptied between
runs so each run writes every row.

``bars_per_s`` counts bars featurised end to end (lake read, kernels, the database write) per
wall-clock second; ``per_worker_bars_per_s`` divides by the workers; ``scaling`` is the 2-worker
rate over the 1-worker rate. The projection divides the bars of 10,000 symbols x 10 years of
1-minute bars by the per-worker rate times N workers times the measured efficiency (scaling / 2),
which assumes the database keeps up with N writers: on paper, not measured. The 1-minute load
averages before and after each run are in the report: on a shared machine they say what a figure
is worth. The database and the bucket's objects are removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from core.settings import Settings, load_settings

DATABASE = "bench_features_cluster"
BUCKET = "marketpipe-bench-features"
UNIVERSE_SYMBOLS, UNIVERSE_YEARS, SESSIONS_PER_YEAR, BARS_PER_SESSION = 10_000, 10, 252, 390
PROJECTED_WORKERS = (1, 2, 8, 32)


def universe_bars() -> int:
    return UNIVERSE_SYMBOLS * UNIVERSE_YEARS * SESSIONS_PER_YEAR * BARS_PER_SESSION


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pure: per-worker rate, scaling from the fewest to the most workers measured, and the
    projected hours of the 10k-symbol x 10-year universe on N workers."""
    by_workers = {r["workers"]: r for r in runs}
    fewest, most = by_workers[min(by_workers)], by_workers[max(by_workers)]
    per_worker = fewest["bars_per_s"] / fewest["workers"]
    scaling = most["bars_per_s"] / fewest["bars_per_s"] if most is not fewest else None
    efficiency = min(1.0, scaling * fewest["workers"] / most["workers"]) if scaling else 1.0
    bars = universe_bars()
    return {
        "per_worker_bars_per_s": round(per_worker),
        "scaling": round(scaling, 2) if scaling else None,
        "scaling_of": f"{most['workers']} vs {fewest['workers']} worker(s)" if scaling else None,
        "efficiency": round(efficiency, 2),
        "projection": {
            "universe": f"{UNIVERSE_SYMBOLS} symbols x {UNIVERSE_YEARS} years x {SESSIONS_PER_YEAR} sessions x "
            f"{BARS_PER_SESSION} 1-minute bars",
            "bars": bars,
            "hours_on_workers": {
                str(n): round(bars / (per_worker * (1 if n == 1 else n * efficiency)) / 3600, 1)
                for n in PROJECTED_WORKERS
            },
        },
    }


def bench_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The run's overrides pointed at the throwaway database and bucket."""
    base = dict(overrides or {})
    return {
        **base,
        "database": {**base.get("database", {}), "name": DATABASE},
        "lake": {**base.get("lake", {}), "bucket": BUCKET},
    }


def warm_worker() -> str:
    """Run on each worker before the clock starts: the modules a shard imports and the kernels'
    compiled cache (a first call on a tiny layout)."""
    from bench.features import synthetic_layout
    from features.builder import standard_values
    from features.kernels import FeatureParams
    from tasks import features  # noqa: F401  (the shard task's module and everything it imports)

    standard_values(synthetic_layout(2, 50), FeatureParams())
    return "warm"


def load_history(settings: Settings, symbols: int, sessions: int) -> dict[str, Any]:
    """The throwaway database, migrated, with ``symbols`` x ``sessions`` sessions of 1-minute bars,
    every chunk tiered to the bench bucket; returns what was stored and the features' date range."""
    from bench.storage import LAST_DAY, session_days, synthetic_session
    from db.connect import database_connection
    from db.migrate import migrate
    from stack.scratch import create_database
    from storage.hot import upsert_bars
    from storage.lake import Lake
    from storage.tiering import tier_chunks

    create_database(settings, DATABASE)
    lake = Lake.from_settings(settings.lake)
    lake.ensure_bucket()
    days = session_days(sessions, LAST_DAY)
    began = time.perf_counter()
    with database_connection(settings, autocommit=True) as conn:
        migrate(conn)
        for k, (open_utc, close_utc) in enumerate(days):
            upsert_bars(conn, synthetic_session(symbols, k, open_utc, close_utc))
        loaded = time.perf_counter() - began
        after_last_session = datetime.combine(days[-1][0].date() + timedelta(days=1), datetime.min.time(), UTC)
        report = tier_chunks(conn, lake, settings, dataset="bars_intraday", older_than=after_last_session)
        hot_left = conn.execute("SELECT count(*) FROM market.bars_intraday").fetchone()
    return {
        "bars": report.rows,
        "lake_files": report.files,
        "lake_bytes": report.bytes_written,
        "hot_rows_left": int(hot_left[0]) if hot_left else 0,
        "load_s": round(loaded, 2),
        "tier_s": round(report.seconds, 2),
        "start": days[0][0].date().isoformat(),
        "end": (days[-1][0] + timedelta(days=1)).date().isoformat(),
    }


def forget(settings: Settings) -> None:
    from stack.scratch import drop_database
    from storage.lake import Lake

    lake = Lake.from_settings(settings.lake)
    if lake.bucket_exists():
        for obj in list(lake.list("")):
            lake.delete(obj.key)
    drop_database(settings, DATABASE)


@contextmanager
def cluster_at(cluster: str, workers: int) -> Iterator[tuple[str, int]]:
    """(scheduler address, worker count): a LocalCluster of ``workers`` one-thread processes for
    ``cluster == "local"``, else the running cluster at that address with the workers it has."""
    from distributed import Client, LocalCluster

    if cluster == "local":
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env={"NUMBA_NUM_THREADS": "1"},
            ) as local,
            Client(local.scheduler_address) as client,
        ):
            client.wait_for_workers(workers, timeout=120)
            client.run(warm_worker)
            yield local.scheduler_address, workers
        return
    with Client(cluster, timeout=30) as client:
        count = len(client.scheduler_info(n_workers=-1)["workers"])
        client.run(warm_worker)
        yield cluster, count


def measure(
    settings: Settings,
    address: str,
    workers: int,
    symbols: list[str],
    history: dict[str, Any],
    overrides: dict[str, Any],
    symbols_per_shard: int,
) -> dict[str, Any]:
    from db.connect import database_connection
    from flows.features_flow import features_flow

    with database_connection(settings, autocommit=True) as conn:
        conn.execute("TRUNCATE features.bar_features, features.bar_feature_values")
    compute = {"task_runner": "dask", "dask_address": address, "symbols_per_shard": symbols_per_shard}
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    summary = asyncio.run(
        features_flow(
            symbols=symbols,
            timeframe="1min",
            start_date=history["start"],
            end_date=history["end"],
            overrides={**overrides, "compute": compute},
        )
    )
    seconds = time.perf_counter() - began
    return {
        "workers": workers,
        "bars": summary["bars"],
        "shards": len(summary["batches"]),
        "seconds": round(seconds, 2),
        "bars_per_s": round(summary["bars"] / seconds),
        "per_worker_bars_per_s": round(summary["bars"] / seconds / workers),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def run(
    settings: Settings,
    cluster: str = "local",
    symbols: int = 200,
    sessions: int = 20,
    workers: Sequence[int] = (1, 2),
    symbols_per_shard: int = 25,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from bench.storage import symbol_names

    run_overrides = bench_overrides(overrides)
    bench_settings = load_settings(overrides=run_overrides)
    load_start = [round(x, 2) for x in os.getloadavg()]
    try:
        history = load_history(bench_settings, symbols, sessions)
        names = symbol_names(symbols)
        runs = []
        for count in workers if cluster == "local" else (0,):
            with cluster_at(cluster, count) as (address, actual):
                runs.append(measure(bench_settings, address, actual, names, history, run_overrides, symbols_per_shard))
    finally:
        forget(bench_settings)
    return {
        "cluster": cluster,
        "symbols": symbols,
        "sessions": sessions,
        "symbols_per_shard": symbols_per_shard,
        "history": history,
        "runs": runs,
        **summarize(runs),
        "cpus": os.cpu_count(),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
    }


def render_table(report: dict[str, Any]) -> str:
    runs = pd.DataFrame(report["runs"]).set_index("workers")
    head = {k: v for k, v in report.items() if k not in ("runs", "projection", "history")}
    lines = [
        pd.Series(head, dtype=object).to_frame("value").to_string(),
        "",
        f"history: {report['history']}",
        "",
        runs.to_string(),
        "",
        f"projection ({report['projection']['universe']}, {report['projection']['bars']:,} bars), hours on N workers: "
        + ", ".join(f"{n}: {h:,}" for n, h in report["projection"]["hours_on_workers"].items()),
    ]
    return "\n".join(lines)
