-- The raw zone's manifest: one row per vendor page stored in the lake (raw/...json.gz).
--
-- The ingestion stage writes the page to the lake, then this row; the processing stage reads the
-- pages whose processed_at is NULL, parses, validates and upserts them, and sets processed_at in
-- the same transaction as the rows it wrote. A page fetched again with a different body (a vendor
-- correction) gets processed_at reset; the same body leaves it alone, so re-ingesting a range
-- costs no reprocessing.
CREATE TABLE ops.raw_pages (
    key           text        PRIMARY KEY,
    source        text        NOT NULL,
    dataset       text        NOT NULL,           -- e.g. bars, splits, dividends, corporate_actions
    symbol        text        NOT NULL,
    timeframe     text,                           -- bars only
    data_date     date        NOT NULL,
    records       integer     NOT NULL CHECK (records >= 0),
    checksum      text        NOT NULL,           -- sha256 of the stored object
    fetched_at    timestamptz NOT NULL DEFAULT now(),
    run_id        text,
    processed_at  timestamptz,
    process_error text
);

-- The processing stage's queue: unprocessed pages of a source/dataset/symbol.
CREATE INDEX raw_pages_pending_idx ON ops.raw_pages (source, dataset, symbol, data_date)
    WHERE processed_at IS NULL;
