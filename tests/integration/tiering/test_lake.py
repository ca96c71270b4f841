"""The lake after tiering: features read back identically, compaction, other engines (pyarrow.dataset
and DuckDB over Hive partitioning) read the same rows, raw-zone retention, the edition check, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from uuid import UUID

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from fsspec.implementations.arrow import ArrowFSWrapper
from pandas.testing import assert_frame_equal
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from core.settings import Settings
from features import FeatureBuilder, FeatureParams, FeatureSet
from features.refresh import refresh_features
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.lifecycle import compact, orphans, prune_raw
from storage.raw import store_raw_page
from storage.router import StorageRouter
from storage.tiering import manifest_files, tier_chunks
from tests.support.cli import run_cli
from tests.support.tiering import make_bars, year_window


class CloseMA5(FeatureBuilder):
    lookback_bars = 4

    def calculate_features(self, data: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"close_ma5": data.groupby("symbol").close.transform(lambda s: s.rolling(5).mean())})


def tier_year(conn: psycopg.Connection, lake: Lake, settings: Settings, year: int, dataset: list[str]) -> int:
    start, _ = year_window(year)
    return tier_chunks(
        conn, lake, settings, dataset=dataset, older_than=start.replace(year=year + 1), newer_than=start
    ).rows


def test_features_read_identically_after_tiering_and_after_compaction(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(2))
    upsert_bars(conn, make_bars(names, "1998-05-01", 45, "1day", seed=8))
    refresh_features(conn, FeatureSet(FeatureParams(), {"ma5": CloseMA5()}), names, "1day", "1998-01-01", "1999-01-01")
    router = StorageRouter(conn, lake, stack)
    before = router.read_features(names, "1998-04-01", "1998-08-01", "1day")
    assert len(before) == 90 and "close_ma5" in before.columns and before["rsi"].notna().any()

    moved = tier_year(conn, lake, stack, 1998, ["features", "feature_values"])

    assert moved == 90 + 90  # wide rows, and one plugin value per bar
    files = manifest_files(conn, dataset="features", start=year_window(1998)[0], end=year_window(1998)[1])
    assert len(files) == 45  # a 1-day chunk each
    assert_frame_equal(router.read_features(names, "1998-04-01", "1998-08-01", "1day"), before)

    report = compact(conn, lake, stack, dataset=["features", "feature_values"], min_files=2)

    partitions = {(p.dataset, p.partition) for p in report.partitions}
    assert {("features", "month=1998-05"), ("features", "month=1998-06"), ("feature_values", "month=1998-07")} <= (
        partitions
    )
    after = manifest_files(conn, dataset="features", start=year_window(1998)[0], end=year_window(1998)[1])
    assert len(after) == 3 and all("/compact-" in f.key for f in after)
    assert not {f.key for f in files} & set(orphans(conn, lake)) and not lake.exists(files[0].key)
    assert_frame_equal(router.read_features(names, "1998-04-01", "1998-08-01", "1day"), before)


def lake_fs_for_duckdb(lake: Lake) -> ArrowFSWrapper:
    """The lake's pyarrow S3 filesystem as an fsspec filesystem under its own protocol name
    (DuckDB's own s3:// support is an extension downloaded at run time)."""

    class LakeFS(ArrowFSWrapper):
        protocol = "mplake"

        @classmethod
        def _strip_protocol(cls, path):  # type: ignore[override]
            if isinstance(path, list):
                return [cls._strip_protocol(p) for p in path]
            return path.removeprefix("mplake://").lstrip("/")

    return LakeFS(lake.filesystem())


def test_pyarrow_dataset_and_duckdb_read_the_same_rows_as_the_router(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(3))
    upsert_bars(
        conn,
        pd.concat(
            [
                make_bars(names, "1999-03-01", 4, "1min", 30, seed=11),
                make_bars(names, "1999-02-01", 50, "1day", seed=12),
            ]
        ),
    )
    tier_year(conn, lake, stack, 1999, ["bars_intraday", "bars_daily"])
    columns = ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count", "source"]
    for timeframe, start, end in (("1min", "1999-03-01", "1999-03-10"), ("1day", "1999-01-01", "1999-06-01")):
        routed = StorageRouter(conn, lake, stack).read_bars(names, start, end, timeframe)
        expected = routed[columns].astype({"symbol": object, "source": object, "trade_count": "int64"})
        expected["ts"] = expected["ts"].astype("datetime64[us, UTC]")

        hive = pads.partitioning(
            pa.schema([("timeframe", pa.string()), ("date", pa.string()), ("month", pa.string())]), flavor="hive"
        )
        dataset = pads.dataset(
            f"{lake.bucket}/cold/bars", filesystem=lake.filesystem(), format="parquet", partitioning=hive
        )
        table = dataset.to_table(filter=(pc.field("timeframe") == timeframe) & pc.field("symbol").isin(names))
        by_arrow = table.to_pandas()[columns].sort_values(["symbol", "ts"]).reset_index(drop=True)
        by_arrow = by_arrow.astype({"symbol": object, "source": object})

        con = duckdb.connect()
        con.register_filesystem(lake_fs_for_duckdb(lake))
        by_duckdb = con.execute(
            f"SELECT {', '.join(columns)} FROM read_parquet('mplake://{lake.bucket}/cold/bars/timeframe={timeframe}"
            "/*/*.parquet', hive_partitioning = true) WHERE symbol IN (SELECT unnest(?)) ORDER BY symbol, ts",
            [names],
        ).df()
        by_duckdb["ts"] = by_duckdb["ts"].dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        by_duckdb = by_duckdb.astype({"symbol": object, "source": object})

        assert len(expected) == (3 * 4 * 30 if timeframe == "1min" else 3 * 50)
        assert_frame_equal(by_arrow, expected, check_dtype=False)
        assert_frame_equal(by_duckdb, expected, check_dtype=False)


def test_raw_pages_past_retention_are_pruned_but_unprocessed_pages_stay(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    symbol = symbols()
    pages = {}
    for day, processed in ((date(2001, 1, 2), True), (date(2001, 1, 3), False), (date(2001, 5, 20), True)):
        stored = store_raw_page(
            lake,
            source="polygon",
            dataset="bars_1day",
            symbol=symbol,
            data_date=day,
            request={"url": f"/test/{day}"},
            payload={"results": [day.isoformat()]},
        )
        conn.execute(
            "INSERT INTO ops.raw_pages (key, source, dataset, symbol, data_date, records, checksum, processed_at)"
            " VALUES (%s, 'polygon', 'bars_1day', %s, %s, 1, %s, CASE WHEN %s THEN now() END)",
            (stored.key, symbol, day, stored.checksum, processed),
        )
        pages[day] = stored.key

    report = prune_raw(conn, lake, 30, now=datetime(2001, 6, 1, tzinfo=UTC))

    assert report.cutoff == date(2001, 5, 2) and report.pages == 1 and report.kept_unprocessed >= 1
    assert [lake.exists(pages[d]) for d in sorted(pages)] == [False, True, True]
    left = conn.execute("SELECT data_date FROM ops.raw_pages WHERE symbol = %s ORDER BY 1", (symbol,)).fetchall()
    assert [r[0] for r in left] == [date(2001, 1, 3), date(2001, 5, 20)]
    conn.execute("DELETE FROM ops.raw_pages WHERE symbol = %s", (symbol,))


def test_three_temperatures_hot_warm_cold_and_a_compressed_chunk_moves_to_the_lake_whole(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    names = sorted(symbols() for _ in range(3))
    upsert_bars(conn, make_bars(names, "1988-03-01", 3, "1min", 390))
    router = StorageRouter(conn, lake, stack)
    before = router.read_bars(names, "1988-03-01", "1988-03-05", "1min")
    assert len(before) == 3 * 3 * 390
    warm = conn.execute(
        "SELECT compress_chunk(format('%I.%I', chunk_schema, chunk_name)::regclass, if_not_compressed => true)::text"
        " FROM timescaledb_information.chunks WHERE hypertable_name = 'bars_intraday_store'"
        " AND range_start >= '1988-03-01' AND range_end <= '1988-03-04'"
    ).fetchall()
    assert len(warm) == 3
    parts = conn.execute(
        "SELECT format('%%I.%%I', p.schema_name, p.table_name) FROM _timescaledb_catalog.chunk c"
        " JOIN _timescaledb_catalog.chunk p ON p.id = c.compressed_chunk_id"
        " WHERE format('%%I.%%I', c.schema_name, c.table_name) = ANY(%s)",
        ([w[0] for w in warm],),
    ).fetchall()
    assert len(parts) == 3  # each warm chunk has its compressed part
    sizes = json.loads(run_cli("lake", "du", "--json").stdout)
    warm_bars = next(u for u in sizes if u["tier"] == "warm" and u["dataset"] == "bars_intraday")
    # other tests' warm chunks count too (a few rows each, where compression's fixed cost shows)
    assert warm_bars["files"] >= 3 and warm_bars["uncompressed_bytes"] > 0 and warm_bars["bytes"] > 0
    mine = conn.execute(
        "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes)"
        " FROM chunk_compression_stats('market.bars_intraday_store')"
        " WHERE format('%%I.%%I', chunk_schema, chunk_name) = ANY(%s)",
        ([w[0] for w in warm],),
    ).fetchone()
    assert mine is not None and mine[0] > mine[1] > 0  # 390 bars of 3 symbols a day: smaller compressed
    pd.testing.assert_frame_equal(router.read_bars(names, "1988-03-01", "1988-03-05", "1min"), before)

    older, _ = year_window(1988)
    report = tier_chunks(
        conn, lake, stack, dataset="bars_intraday", older_than=older.replace(year=1989), newer_than=older
    )

    assert report.as_dict()["compressed_chunks"] == 3 and report.rows == len(before)
    assert all(conn.execute("SELECT to_regclass(%s)", (p[0],)).fetchone()[0] is None for p in parts)
    pd.testing.assert_frame_equal(router.read_bars(names, "1988-03-01", "1988-03-05", "1min"), before)
    assert conn.execute("SELECT count(*) FROM market.bars_intraday WHERE symbol = ANY(%s)", (names,)).fetchone()[0] == 0


def test_cli_lists_sizes_and_refuses_mistakes(stack: Settings, conn, lake, symbols) -> None:
    names = [symbols()]
    upsert_bars(conn, make_bars(names, "2002-06-03", 1, "1min", 10))
    tiered = run_cli(
        "lake",
        "tier",
        "--dataset",
        "bars_intraday",
        "--older-than",
        "2003-01-01",
        "--newer-than",
        "2002-01-01",
        "--json",
    )
    assert tiered.returncode == 0, tiered.stderr[-2000:]
    assert json.loads(tiered.stdout)["rows"] == 10

    listed = run_cli(
        "lake", "ls", "--dataset", "bars_intraday", "--start", "2002-06-03", "--end", "2002-06-04", "--json"
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert [f["key"].split("/")[3] for f in json.loads(listed.stdout)] == ["date=2002-06-03"]
    sizes = run_cli("lake", "du", "--json")
    assert sizes.returncode == 0, sizes.stderr[-2000:]
    assert any(u["tier"] == "cold" and u["dataset"] == "bars_intraday" for u in json.loads(sizes.stdout))

    wrong = run_cli("lake", "compact", "--dataset", "options")
    assert wrong.returncode == 2 and "unknown lake dataset 'options'" in wrong.stderr and "bars_daily" in wrong.stderr
    future = run_cli("lake", "tier", "--older-than", "2999-01-01")
    assert future.returncode == 2 and "'2999-01-01' is in the future" in future.stderr


def test_the_tiering_flow_moves_a_range_and_reports_it(
    stack: Settings, conn: psycopg.Connection, lake: Lake, symbols: Callable[[], str]
) -> None:
    from flows.tiering import tiering_flow

    names = [symbols() for _ in range(2)]
    upsert_bars(conn, make_bars(names, "2003-06-02", 2, "5min", 12))

    result = tiering_flow(datasets=["bars_intraday"], older_than="2004-01-01", newer_than="2003-01-01")

    assert result["rows"] == 2 * 2 * 12 and result["bytes_written"] > 0
    # the full edition runs: the flow re-states the compression policies `marketpipe up` set
    assert result["native_compression"]["applied"] is True and result["native_compression"]["policies_set"] == []
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(result["run_id"])]))
        )
    summary = [a for a in artifacts if a.key == "tiering-summary"]
    assert len(summary) == 1 and "48 rows" in summary[0].description
    assert json.loads(summary[0].data)[0]["dataset"] == "bars_intraday"
    assert json.loads(summary[0].data)[0]["compressed_chunks"] == 0  # these chunks were hot
    assert conn.execute("SELECT count(*) FROM market.bars WHERE symbol = ANY(%s)", (names,)).fetchone()[0] == 0
    assert len(StorageRouter(conn, lake, stack).read_bars(names, "2003-06-01", "2003-07-01", "5min")) == 48
