-- edition: timescale
-- Native compression (TimescaleDB's columnstore) on every hypertable that holds market history: the
-- warm temperature between hot (uncompressed, recent: written and corrected in place) and cold (the
-- Parquet lake, storage/tiering.py). The policy that compresses chunks older than
-- storage.data_lake.compression_after_days is set from settings by storage.tiering.ensure_native_compression
-- (`marketpipe up`, the tiering flow); this file holds how each table is laid out once compressed.
--
-- A compressed chunk stores, per segment (the distinct values of segmentby), batches of up to 1,000
-- rows in orderby order with each orderby column's min/max. The choices follow the readers:
--
-- market.bars_intraday_store   segmentby symbol, timeframe; orderby ts DESC.
--   (The bar hypertables store prices as bigint ticks of 1/10,000 dollar, 0023_bar_price_ticks.sql:
--   integers are delta-of-delta encoded and bit-packed, floats only XORed, which took the
--   compressed bars from about 4-5x smaller to about 10x; market.bars_intraday is the view in dollars.)
--   Every reader names one timeframe and a set of symbols over a time range: read_bars, the feature
--   warm-up, the scanners' per-symbol probes, tiering's export. A 1-day chunk holds at most 960
--   one-minute bars of one symbol, so one (symbol, timeframe) segment is one batch: a symbol's day
--   is found by the segment filter and decompressed alone, never its neighbours'. ts DESC puts the
--   latest bar first (top movers, latest bar) and the ts min/max prunes batches outside the range.
--
-- market.bars_daily_store      segmentby timeframe; orderby symbol, ts DESC.
--   A 30-day chunk holds ~21 daily bars of a symbol: segments of 21 rows would cost more metadata
--   than they save. Ordering by symbol inside one segment keeps a symbol's bars adjacent (delta
--   encoding of prices works across its days) and the symbol min/max of each 1,000-row batch lets a
--   one-symbol read skip the other batches.
--
-- market.trades          segmentby symbol; orderby ts DESC, exchange, trade_id.
--   Readers ask for symbols over a range (StorageRouter.read_trades); a symbol's day of trades is one
--   segment of 1,000-row batches with ts min/max; the orderby ends with the rest of the primary key
--   so the batch order is total.
--
-- market.quotes          segmentby symbol; orderby ts DESC, bid_exchange, ask_exchange.
--   Same readers as trades (a symbol's quotes over a range); a day of a liquid symbol's quotes is
--   hundreds of 1,000-row batches of one segment with ts min/max; bid/ask prices and sizes move by
--   small steps between consecutive updates, which the per-column delta encodings store compactly.
--
-- market.option_quotes   segmentby underlying; orderby ts DESC, contract.
--   Readers take one underlying's snapshot (the chain, its features, the scanners' newest
--   snapshot): a day of one underlying's snapshots is one segment, the newest first.
--
-- features.bar_features  segmentby timeframe, feature_set; orderby symbol, ts DESC.
-- features.bar_feature_values  segmentby timeframe, feature_set, name; orderby symbol, ts DESC.
--   Feature reads are one feature set and timeframe for a set of symbols over a range (the export,
--   the refresh's warm-up read); plugin values are read by name as well. The tables have 1-day
--   chunks for every timeframe, so a symbol's daily features are one row per chunk: segmenting by
--   symbol made one-row segments and compressed chunks larger than uncompressed ones (0.42x,
--   measured by bench storage). Like market.bars_daily, one segment per timeframe and feature set,
--   ordered by symbol: a symbol's rows stay adjacent and the symbol min/max of each 1,000-row batch
--   lets a read of a few symbols skip the rest.
--
-- Writers keep working on compressed chunks: INSERT .. ON CONFLICT DO UPDATE (the hot store's
-- upsert) and UPDATE decompress the touched batches into the chunk's uncompressed part; the policy
-- recompresses them on its next run. Re-running this file re-states the same settings (ALTER TABLE
-- .. SET is idempotent); changing a choice here applies to chunks compressed after the change
-- (`compress_chunk(c, recompress => true)` rewrites older ones).

ALTER TABLE market.bars_intraday_store SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol, timeframe',
    timescaledb.compress_orderby = 'ts DESC'
);

ALTER TABLE market.bars_daily_store SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'timeframe',
    timescaledb.compress_orderby = 'symbol, ts DESC'
);

ALTER TABLE market.trades SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol',
    timescaledb.compress_orderby = 'ts DESC, exchange, trade_id'
);

ALTER TABLE market.quotes SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol',
    timescaledb.compress_orderby = 'ts DESC, bid_exchange, ask_exchange'
);

ALTER TABLE market.option_quotes SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'underlying',
    timescaledb.compress_orderby = 'ts DESC, contract'
);

ALTER TABLE features.bar_features SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'timeframe, feature_set',
    timescaledb.compress_orderby = 'symbol, ts DESC'
);

ALTER TABLE features.bar_feature_values SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'timeframe, feature_set, name',
    timescaledb.compress_orderby = 'symbol, ts DESC'
);

-- TimescaleDB refuses DML that decompresses more than
-- timescaledb.max_tuples_decompressed_per_dml_transaction tuples (default 100,000: ~250 symbol-days
-- of minutes). A vendor re-sending one whole compressed session of 5,000 symbols (1.95M bars, the
-- hot writer's merge) must not fail half way, so this database allows 10M (about five sessions of
-- the whole universe); the limit stays, because a write that decompresses a whole table is a bug
-- (tests/integration/storage/test_compressed_writes.py holds the hot writer to none for new data).
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET timescaledb.max_tuples_decompressed_per_dml_transaction = 10000000',
                   current_database());
END
$$;
