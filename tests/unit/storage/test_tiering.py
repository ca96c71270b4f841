"""The pure core of tiering and the lake lifecycle: layout, checksums, edition decision, planning."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import ConfigurationError, RequestError
from core.settings import Settings
from storage.lifecycle import CompactionPlan, merge_objects, plan_compaction, raw_cutoff, raw_key_date
from storage.tiering import (
    DATASETS,
    LakeFile,
    check_hot_windows,
    compression_decision,
    cutoff,
    datasets_of,
    object_key,
    parquet_bytes,
    parse_key,
    partition_of,
    split_partitions,
    table_checksum,
)

BARS = DATASETS["bars_intraday"]
PRECEDENCE = ("polygon", "alpaca", "yahoo")
TS = pa.timestamp("us", tz="UTC")


def chunk_rows(rows: list[tuple[str, str, str, float]]) -> pa.Table:
    """(symbol, timeframe, ts, close) rows in a bars chunk's shape (other columns filled)."""
    n = len(rows)
    return pa.table(
        {
            "symbol": [r[0] for r in rows],
            "timeframe": [r[1] for r in rows],
            "ts": pa.array([datetime.fromisoformat(r[2]).replace(tzinfo=UTC) for r in rows], TS),
            "open": [r[3] for r in rows],
            "high": [r[3] for r in rows],
            "low": [r[3] for r in rows],
            "close": [r[3] for r in rows],
            "volume": pa.array([1] * n, pa.int64()),
            "vwap": pa.array([None] * n, pa.float64()),
            "trade_count": pa.array([None] * n, pa.int64()),
            "source": ["t"] * n,
            "quality_flags": pa.array([0] * n, pa.int64()),
            "ingested_at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * n, TS),
        }
    )


def a_file(key: str, created: int = 0, dataset: str = "bars_daily", partition: str = "month=2026-01") -> LakeFile:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    return LakeFile(key, dataset, "1day", partition, ("c",), ts, ts, "A", "Z", 1, 1, "x", "snappy")


def test_partitions_are_days_for_intraday_and_months_for_daily() -> None:
    assert partition_of("1min", datetime(2026, 1, 5, 20, tzinfo=UTC)) == "date=2026-01-05"
    assert partition_of("1day", datetime(2026, 1, 5, tzinfo=UTC)) == "month=2026-01"
    assert object_key(BARS, "1min", "date=2026-01-05", "_hyper_1_2_chunk") == (
        "cold/bars/timeframe=1min/date=2026-01-05/_hyper_1_2_chunk.parquet"
    )
    assert object_key(DATASETS["features"], "1day", "month=2026-01", "c") == (
        "cold/features/timeframe=1day/month=2026-01/c.parquet"
    )


def test_keys_parse_back_and_other_keys_do_not() -> None:
    assert parse_key("cold/bars/timeframe=1day/month=2026-01/x.parquet") == ("bars", "1day", "month=2026-01")
    assert parse_key("raw/source=polygon/dataset=bars_1min/symbol=A/date=2026-01-02/x.json.gz") is None
    assert parse_key("cold/bars/timeframe=1day/x.parquet") is None


def test_trades_have_no_timeframe_level_and_their_keys_parse_back() -> None:
    key = object_key(DATASETS["trades"], "tick", "date=2026-01-05", "hyper_9_1_chunk")

    assert key == "cold/trades/date=2026-01-05/hyper_9_1_chunk.parquet"
    assert parse_key(key) == ("trades", "tick", "date=2026-01-05")
    assert parse_key("cold/trades/x.parquet") is None


def test_a_trades_chunk_splits_by_utc_day_sorted_by_the_natural_key() -> None:
    stamps = ["2026-01-05T23:59:59", "2026-01-05T15:00:00", "2026-01-06T00:00:00", "2026-01-05T15:00:00"]
    ts = pa.array([datetime.fromisoformat(t).replace(tzinfo=UTC) for t in stamps], TS)
    table = pa.table(
        {
            "symbol": ["B", "A", "A", "A"],
            "ts": ts,
            "exchange": ["4", "11", "4", "4"],
            "trade_id": ["1", "7", "2", "7"],
            "price": [1.0, 2.0, 3.0, 4.0],
            "size": pa.array([1, 2, 3, 4], pa.int64()),
            "conditions": [None, "12", None, None],
            "tape": ["C"] * 4,
            "source": ["t"] * 4,
            "ingested_at": pa.array([datetime(2026, 1, 7, tzinfo=UTC)] * 4, TS),
        }
    )

    groups = split_partitions(DATASETS["trades"], table)

    assert [(tf, part, rows.num_rows) for tf, part, rows in groups] == [
        ("tick", "date=2026-01-05", 3),
        ("tick", "date=2026-01-06", 1),
    ]
    assert groups[0][2]["price"].to_pylist() == [2.0, 4.0, 1.0]  # A 15:00 exchange 11, A 15:00 exchange 4, B


def test_cutoff_is_the_hot_window_before_now() -> None:
    assert cutoff(datetime(2026, 3, 31, 12, tzinfo=UTC), 30) == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_a_chunk_splits_by_timeframe_and_partition_sorted_by_symbol_and_ts() -> None:
    table = chunk_rows(
        [
            ("B", "1min", "2026-01-05T15:00", 2.0),
            ("A", "1min", "2026-01-05T15:01", 1.0),
            ("A", "1min", "2026-01-05T15:00", 3.0),
            ("A", "5min", "2026-01-05T15:00", 4.0),
        ]
    )

    groups = split_partitions(BARS, table)

    assert [(tf, part, rows.num_rows) for tf, part, rows in groups] == [
        ("1min", "date=2026-01-05", 3),
        ("5min", "date=2026-01-05", 1),
    ]
    first = groups[0][2]
    assert "timeframe" not in first.column_names
    assert first["symbol"].to_pylist() == ["A", "A", "B"] and first["close"].to_pylist() == [3.0, 1.0, 2.0]


def test_a_daily_chunk_across_two_months_becomes_two_partitions() -> None:
    table = chunk_rows([("A", "1day", "2026-01-30T05:00", 1.0), ("A", "1day", "2026-02-02T05:00", 2.0)])
    assert [p for _, p, _ in split_partitions(DATASETS["bars_daily"], table)] == ["month=2026-01", "month=2026-02"]


def test_the_checksum_survives_a_parquet_round_trip_and_sees_any_change() -> None:
    table = split_partitions(
        BARS, chunk_rows([("A", "1min", "2026-01-05T15:00", 1.5), ("B", "1min", "2026-01-05T15:00", 2.5)])
    )[0][2]
    back = pq.read_table(io.BytesIO(parquet_bytes(table, "zstd", 1)))

    assert back.num_rows == 2 and pq.read_metadata(io.BytesIO(parquet_bytes(table, "zstd", 1))).num_row_groups == 2
    assert table_checksum(back) == table_checksum(table)
    changed = table.set_column(table.schema.get_field_index("close"), "close", pa.array([1.5, 2.5000001]))
    assert table_checksum(changed) != table_checksum(table)
    nulled = table.set_column(table.schema.get_field_index("close"), "close", pa.array([1.5, None], pa.float64()))
    assert table_checksum(nulled) != table_checksum(
        table.set_column(table.schema.get_field_index("close"), "close", pa.array([1.5, 0.0]))
    )
    assert table_checksum(table.slice(0, 1)) != table_checksum(table)


@pytest.mark.parametrize(
    ("edition", "apply"), [("timescale", True), ("apache", False), (None, False), ("community", False)]
)
def test_native_compression_only_on_the_timescale_edition(edition: str | None, apply: bool) -> None:
    decision = compression_decision(edition, 7)
    assert decision.apply is apply
    assert ("7 days" in decision.reason) if apply else ("skipped" in decision.reason and "lake" in decision.reason)


def test_unknown_datasets_are_refused_with_the_allowed_names() -> None:
    assert [d.name for d in datasets_of("features")] == ["features"]
    with pytest.raises(RequestError, match=r"'bars'.*bars_daily.*bars_intraday"):
        datasets_of(["bars"])


def test_compaction_plans_partitions_with_enough_files() -> None:
    files = [a_file("k1"), a_file("k2"), a_file("k3", partition="month=2026-02"), a_file("k4")]

    plans = plan_compaction(files, min_files=3)

    assert [(p.partition, [f.key for f in p.files]) for p in plans] == [("month=2026-01", ["k1", "k2", "k4"])]
    assert plan_compaction(files, min_files=1) == plan_compaction(files, min_files=2)  # one file is never merged
    key = plans[0].key
    assert key.startswith("cold/bars/timeframe=1day/month=2026-01/compact-") and key.endswith(".parquet")
    assert CompactionPlan("bars_daily", "1day", "month=2026-01", tuple(reversed(plans[0].files))).key == key


def test_merging_objects_keeps_the_later_row_of_a_key_and_sorts() -> None:
    old = split_partitions(
        BARS, chunk_rows([("B", "1min", "2026-01-05T15:00", 1.0), ("A", "1min", "2026-01-05T15:00", 1.0)])
    )[0][2]
    new = split_partitions(
        BARS, chunk_rows([("A", "1min", "2026-01-05T15:00", 9.0), ("A", "1min", "2026-01-05T15:01", 9.5)])
    )[0][2]

    merged = merge_objects(BARS, [old, new], precedence=PRECEDENCE)

    assert merged.rows["symbol"].to_pylist() == ["A", "A", "B"]
    assert merged.rows["close"].to_pylist() == [9.0, 9.5, 1.0]
    assert merged.displaced.num_rows == 0  # one vendor: a later row is its own correction


def test_merging_objects_keeps_the_better_vendors_row_whichever_object_is_newer() -> None:
    def object_of(source: str, close: float) -> pa.Table:
        rows = chunk_rows([("A", "1min", "2026-01-05T15:00", close), ("A", "1min", "2026-01-05T15:01", close)])
        return split_partitions(BARS, rows.set_column(10, "source", pa.array([source] * 2)))[0][2]

    polygon, yahoo, yahoo_fix = object_of("polygon", 100.0), object_of("yahoo", 99.0), object_of("yahoo", 98.0)

    for tables in ([polygon, yahoo, yahoo_fix], [yahoo, polygon, yahoo_fix], [yahoo, yahoo_fix, polygon]):
        merged = merge_objects(BARS, tables, precedence=PRECEDENCE)
        assert merged.rows["source"].to_pylist() == ["polygon", "polygon"]
        assert merged.rows["close"].to_pylist() == [100.0, 100.0]
        # the loser kept for the vendor table: yahoo's newest version of each bar
        assert merged.displaced["source"].to_pylist() == ["yahoo", "yahoo"]
        assert merged.displaced["close"].to_pylist() == [98.0, 98.0]
    # sources the precedence does not list rank after it and equal among themselves: the newer wins
    plugin, other = object_of("myfeed", 1.0), object_of("otherfeed", 2.0)
    merged = merge_objects(BARS, [plugin, other, yahoo], precedence=PRECEDENCE)
    assert merged.rows["source"].to_pylist() == ["yahoo", "yahoo"]
    merged = merge_objects(BARS, [plugin, other], precedence=PRECEDENCE)
    assert merged.rows["source"].to_pylist() == ["otherfeed", "otherfeed"]
    assert merged.displaced["source"].to_pylist() == ["myfeed", "myfeed"]


def test_merging_news_objects_keeps_each_articles_latest_version_whichever_object_is_newer() -> None:
    def version(updated_hour: int, headline: str) -> pa.Table:
        return pa.table(
            {
                "source": ["s"],
                "id": ["a1"],
                "published_at": pa.array([datetime(2026, 1, 5, 15, tzinfo=UTC)], TS),
                "updated_at": pa.array([datetime(2026, 1, 5, updated_hour, tzinfo=UTC)], TS),
                "headline": [headline],
            }
        )

    newest, stale = version(18, "raised"), version(15, "first")
    for tables in ([newest, stale], [stale, newest]):
        merged = merge_objects(DATASETS["news_items"], tables, precedence=PRECEDENCE)
        assert merged.rows["headline"].to_pylist() == ["raised"]
    same_time = merge_objects(DATASETS["news_items"], [newest, version(18, "fixed")], precedence=PRECEDENCE)
    assert same_time.rows["headline"].to_pylist() == ["fixed"]  # equal versions: the newer object's row


def test_news_objects_written_before_the_minhash_column_merge_with_newer_ones() -> None:
    """Objects of news_items tiered before the MinHash signature went to the lake lack the column:
    merged with a newer object, their rows have no signature (concatenating refused the tables)."""

    def item(item_id: str, minhash: bytes | None = None) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "source": pa.array(["s"]),
            "id": pa.array([item_id]),
            "published_at": pa.array([datetime(2026, 1, 5, 15, tzinfo=UTC)], TS),
            "updated_at": pa.array([datetime(2026, 1, 5, 15, tzinfo=UTC)], TS),
        }
        if minhash is not None:
            columns["minhash"] = pa.array([minhash], pa.binary())
        return pa.table(columns)

    merged = merge_objects(DATASETS["news_items"], [item("a1"), item("a2", b"\x01\x02")], precedence=PRECEDENCE)

    assert merged.rows["id"].to_pylist() == ["a1", "a2"]
    assert merged.rows["minhash"].to_pylist() == [None, b"\x01\x02"]


def test_the_checksum_of_bytes_survives_a_parquet_round_trip_and_sees_any_change() -> None:
    table = pa.table({"id": ["a", "b", "c"], "minhash": pa.array([b"\x01\x02", None, b"\x03"], pa.binary())})
    back = pq.read_table(io.BytesIO(parquet_bytes(table, "zstd", 2)))

    assert table_checksum(back) == table_checksum(table)
    moved = table.set_column(1, "minhash", pa.array([b"\x01", None, b"\x02\x03"], pa.binary()))
    assert table_checksum(moved) != table_checksum(table)
    changed = table.set_column(1, "minhash", pa.array([b"\x01\x02", None, b"\x04"], pa.binary()))
    assert table_checksum(changed) != table_checksum(table)


def test_raw_retention_cutoff_and_key_dates() -> None:
    assert raw_cutoff(date(2026, 11, 26), 30) == date(2026, 10, 27)
    assert raw_key_date("raw/source=polygon/dataset=bars_1min/symbol=A/date=2024-01-02/ab.json.gz") == date(2024, 1, 2)
    assert raw_key_date("raw/other.json.gz") is None


def test_per_dataset_hot_windows_must_name_datasets() -> None:
    def with_windows(windows: dict[str, int]) -> Settings:
        return Settings.model_validate({"storage": {"routing": {"hot_data_days_by_dataset": windows}}})

    good = with_windows({"bars_intraday": 7})
    check_hot_windows(good)
    assert good.storage.routing.hot_days("bars_intraday") == 7 and good.storage.routing.hot_days("features") == 30
    with pytest.raises(ConfigurationError, match=r"\['bars_minute'\].*bars_intraday"):
        check_hot_windows(with_windows({"bars_minute": 7}))


def test_the_hot_window_of_minutes_must_outlast_the_aggregates_refresh_window() -> None:
    def with_minutes_hot(days: int) -> Settings:
        return Settings.model_validate({"storage": {"routing": {"hot_data_days_by_dataset": {"bars_intraday": days}}}})

    check_hot_windows(with_minutes_hot(5))
    with pytest.raises(ConfigurationError, match=r"bars_intraday is 4 days; it must be at least 5 days"):
        check_hot_windows(with_minutes_hot(4))
