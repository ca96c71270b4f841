-- Bar prices stored as whole ticks of 1/10,000 of a dollar (bigint), read as double precision.
--
-- Why: native compression (TimescaleDB's columnstore, 60_columnstore.sql) encodes a float column
-- with Gorilla (XOR of consecutive values' bits), which saves little on prices: two neighbouring
-- minute closes differ in almost every mantissa bit. An integer column is delta-of-delta encoded and
-- bit-packed (simple8b): a close that moved by a few cents is a few bits. Measured on the same
-- 414k 1-minute bars (random walks on the tick grid, prices around $40), compressed vs uncompressed
-- bytes: float8 prices 5.1x, bigint ticks of 1/10,000 dollar 10.9x (1/100: 16.1x, but sub-dollar
-- stocks quote in 1/10,000; 1/1,000,000: 8.3x).
--
-- 1/10,000 of a dollar is the finest price a US equity trades or quotes at (Rule 612: $0.0001 below
-- $1.00, $0.01 above), and what the vendors' bars carry: every open, high, low and close they send
-- is a whole number of ticks, and their vwap is rounded to 4 decimals on the wire. So the round
-- trip is exact: a price written as 150.23 is stored as 1502300 and read back as 1502300 / 10000.0,
-- the double nearest to 150.23, which is what the vendor's "150.23" parsed to. A vwap the pipeline
-- computes itself (stream bars from trades) is rounded to 4 decimals when stored, like the vendors'.
--
-- Layout after this migration:
--   market.bars_intraday_store, market.bars_daily_store: the hypertables (formerly bars_intraday
--     and bars_daily; their chunks, indexes, triggers, compression settings and policies move with
--     the rename), prices in ticks. Writers (storage/hot.py) and tiering (storage/tiering.py)
--     work on these.
--   market.bars_intraday, market.bars_daily: views with the same columns as before, prices as
--     double precision (db/routines/10_market_bars.sql); every reader, the scanners and
--     market.bars read these. DELETE through them works (simple views), a plain INSERT converts
--     (an INSTEAD OF trigger); an upsert goes to the store.
--   market.vendor_bars_*: unchanged (double precision): a few rows per disagreement.
--
-- An existing database: the views over the bar tables and the continuous aggregates built on them
-- (they name the old column types) are dropped here and recreated by the routines (10, 15, 70),
-- which run after the migrations; the aggregates come back empty and real-time (every bucket is
-- computed from the 1-minute bars at read time) until their policies or
-- storage.aggregates.refresh_bar_aggregates materialize them again. Compressed chunks are
-- decompressed first (a column's type cannot change while chunks are compressed); the compression
-- policy compresses them again on its next runs.

DROP VIEW IF EXISTS market.vendor_bars;
DROP VIEW IF EXISTS market.bars;
DROP MATERIALIZED VIEW IF EXISTS market.bars_agg_5min CASCADE;

DO $$
DECLARE
    v_chunk regclass;
BEGIN
    FOR v_chunk IN
        SELECT format('%I.%I', chunk_schema, chunk_name)::regclass
          FROM timescaledb_information.chunks
         WHERE hypertable_schema = 'market' AND hypertable_name IN ('bars_intraday', 'bars_daily') AND is_compressed
    LOOP
        PERFORM decompress_chunk(v_chunk);
    END LOOP;
END
$$;

ALTER TABLE market.bars_intraday
    ALTER COLUMN open TYPE bigint USING round(open * 10000)::bigint,
    ALTER COLUMN high TYPE bigint USING round(high * 10000)::bigint,
    ALTER COLUMN low TYPE bigint USING round(low * 10000)::bigint,
    ALTER COLUMN close TYPE bigint USING round(close * 10000)::bigint,
    ALTER COLUMN vwap TYPE bigint USING round(vwap * 10000)::bigint;
ALTER TABLE market.bars_intraday RENAME TO bars_intraday_store;

ALTER TABLE market.bars_daily
    ALTER COLUMN open TYPE bigint USING round(open * 10000)::bigint,
    ALTER COLUMN high TYPE bigint USING round(high * 10000)::bigint,
    ALTER COLUMN low TYPE bigint USING round(low * 10000)::bigint,
    ALTER COLUMN close TYPE bigint USING round(close * 10000)::bigint,
    ALTER COLUMN vwap TYPE bigint USING round(vwap * 10000)::bigint;
ALTER TABLE market.bars_daily RENAME TO bars_daily_store;

COMMENT ON COLUMN market.bars_intraday_store.open IS
    'ticks of 1/10,000 dollar (0023_bar_price_ticks.sql); market.bars_intraday shows dollars';
COMMENT ON COLUMN market.bars_daily_store.open IS
    'ticks of 1/10,000 dollar (0023_bar_price_ticks.sql); market.bars_daily shows dollars';
