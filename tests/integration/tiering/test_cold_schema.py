"""The router reads every lake object with the dataset's current columns, not the oldest object's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pyarrow as pa

from core.settings import Settings
from storage.lake import Lake
from storage.router import StorageRouter
from storage.tiering import DATASETS, LakeFile, arrow_schema, parquet_bytes, sort_rows
from tests.support.tiering import make_bars


def lake_file(key: str, rows: pa.Table) -> LakeFile:
    """A manifest row of ``rows`` at ``key`` (only what ``read_cold`` needs is real)."""
    ts = rows["ts"].to_pylist()
    return LakeFile(key, "bars_intraday", "1min", "date=-", (), min(ts), max(ts), "", "", rows.num_rows, 0, "", "zstd")


def test_a_column_missing_from_the_oldest_object_is_read_from_the_newer_ones(
    stack: Settings, conn: psycopg.Connection, lake: Lake
) -> None:
    ds = DATASETS["bars_intraday"]
    bars = make_bars(["TCOLD"], "1979-10-01", 2, "1min", 5)
    stored = bars.drop(columns="timeframe").assign(quality_flags=0, ingested_at=pd.Timestamp("1979-10-03", tz="UTC"))
    schema = arrow_schema(ds.file_columns)
    rows = sort_rows(ds, pa.Table.from_pandas(stored[schema.names], preserve_index=False).cast(schema))
    monday, tuesday = rows.slice(0, 5), rows.slice(5, 5)
    prefix = f"tests/cold-schema/{uuid.uuid4().hex}"  # outside cold/: objects no manifest lists or sweep touches
    older = lake_file(f"{prefix}/older.parquet", monday.drop_columns("vwap"))  # written before vwap existed
    newer = lake_file(f"{prefix}/newer.parquet", tuesday)
    lake.put_bytes(older.key, parquet_bytes(monday.drop_columns("vwap"), "zstd", 100))
    lake.put_bytes(newer.key, parquet_bytes(tuesday, "zstd", 100))
    try:
        start = datetime(1979, 10, 1, tzinfo=UTC)
        read = StorageRouter(conn, lake, stack).read_cold([older, newer], ["TCOLD"], start, start + timedelta(days=2))
    finally:
        lake.delete(older.key)
        lake.delete(newer.key)

    assert read.schema.equals(schema)
    assert read["vwap"].to_pylist() == [None] * 5 + tuesday["vwap"].to_pylist()
    assert read.drop_columns("vwap").equals(rows.drop_columns("vwap"))
