-- market.bars: readers that do not care which hypertable holds a timeframe (0002_bars.sql says why
-- bars live in two). The columns are listed, not `*`: a view's column list is fixed when it is
-- created, so a migration that adds a column to the bar tables also edits this list, which changes
-- this file's checksum and re-applies it (CREATE OR REPLACE VIEW may append columns, never drop or
-- reorder them).

CREATE OR REPLACE VIEW market.bars AS
    SELECT symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source, ingested_at,
           quality_flags
      FROM market.bars_intraday
    UNION ALL
    SELECT symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source, ingested_at,
           quality_flags
      FROM market.bars_daily;
