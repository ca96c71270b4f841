-- The cold lake's manifest: one row per Parquet object that holds tiered rows (cold/...).
--
-- Written only by storage/tiering.py. Tiering a hot chunk is ONE transaction: lock the chunk
-- against writers, export its rows to Parquet objects, read every object back and verify its row
-- count and content checksum, insert these rows, drop the chunk, commit. So a committed row here
-- always names a verified object whose rows are no longer hot, and a crash or an S3 outage before
-- the commit leaves the chunk hot and this table untouched (an object already written is an
-- orphan that the rerun overwrites under the same key). Compaction replaces the rows of a
-- partition's files by the row of their merged file in one transaction, after verifying it.
--
-- An object in the lake under cold/ without a row here is not part of the lake's contents (an
-- interrupted export or compaction); the read router reads only objects listed here.
CREATE TABLE ops.lake_files (
    key           text        PRIMARY KEY CHECK (key LIKE 'cold/%'),
    dataset       text        NOT NULL,   -- bars_intraday, bars_daily, features, feature_values
    timeframe     text        NOT NULL,   -- the Hive partition timeframe=...
    partition     text        NOT NULL,   -- the Hive partition below it: date=YYYY-MM-DD or month=YYYY-MM
    source_chunks text[]      NOT NULL,   -- the hot chunk(s) the rows came from
    min_ts        timestamptz NOT NULL,
    max_ts        timestamptz NOT NULL,
    min_symbol    text        NOT NULL,
    max_symbol    text        NOT NULL,
    row_count     bigint      NOT NULL CHECK (row_count > 0),
    size_bytes    bigint      NOT NULL CHECK (size_bytes > 0),
    checksum      text        NOT NULL,   -- storage.tiering.table_checksum of the object's rows
    compression   text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT lake_files_time_order CHECK (max_ts >= min_ts)
);

-- The read router's pruning: the files of a dataset and timeframe overlapping [start, end).
CREATE INDEX lake_files_range_idx ON ops.lake_files (dataset, timeframe, min_ts, max_ts);
-- Compaction: the files of one partition.
CREATE INDEX lake_files_partition_idx ON ops.lake_files (dataset, timeframe, partition);
