-- The bars as readers see them: prices in dollars (double precision).
--
-- market.bars_intraday and market.bars_daily are views over the hypertables that store prices as
-- whole ticks of 1/10,000 dollar (market.bars_*_store, 0023_bar_price_ticks.sql says why): a tick
-- count converted to double precision and divided by 10,000 is the double nearest to the decimal
-- price (150.23 stored as 1502300 reads back as exactly 150.23). Same columns, same order as the
-- tables had, so every reader, scanner and view written against the tables reads the views
-- unchanged; filters on symbol, timeframe and ts reach the store's indexes and chunk exclusion
-- through the view. DELETE through a view deletes from the store (a simple view); a plain INSERT
-- (no ON CONFLICT) is converted by an INSTEAD OF trigger; writers that upsert (storage/hot.py) and
-- COPY write the store directly, in ticks.
CREATE OR REPLACE VIEW market.bars_intraday AS
    SELECT symbol, timeframe, ts, open::float8 / 10000 AS open, high::float8 / 10000 AS high,
           low::float8 / 10000 AS low, close::float8 / 10000 AS close, volume, vwap::float8 / 10000 AS vwap,
           trade_count, source, ingested_at, quality_flags
      FROM market.bars_intraday_store;

CREATE OR REPLACE VIEW market.bars_daily AS
    SELECT symbol, timeframe, ts, open::float8 / 10000 AS open, high::float8 / 10000 AS high,
           low::float8 / 10000 AS low, close::float8 / 10000 AS close, volume, vwap::float8 / 10000 AS vwap,
           trade_count, source, ingested_at, quality_flags
      FROM market.bars_daily_store;

ALTER VIEW market.bars_intraday ALTER COLUMN ingested_at SET DEFAULT now();
ALTER VIEW market.bars_intraday ALTER COLUMN quality_flags SET DEFAULT 0;
ALTER VIEW market.bars_daily ALTER COLUMN ingested_at SET DEFAULT now();
ALTER VIEW market.bars_daily ALTER COLUMN quality_flags SET DEFAULT 0;

-- A row inserted through a view, its prices rounded to ticks, into the store TG_ARGV[0] names.
CREATE OR REPLACE FUNCTION market.bars_insert_ticks() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO %s (symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source,'
        '                ingested_at, quality_flags)'
        ' VALUES ($1, $2, $3, round($4 * 10000)::bigint, round($5 * 10000)::bigint, round($6 * 10000)::bigint,'
        '         round($7 * 10000)::bigint, $8, round($9 * 10000)::bigint, $10, $11, coalesce($12, now()),'
        '         coalesce($13, 0))',
        TG_ARGV[0]::regclass)
    USING NEW.symbol, NEW.timeframe, NEW.ts, NEW.open, NEW.high, NEW.low, NEW.close, NEW.volume, NEW.vwap,
          NEW.trade_count, NEW.source, NEW.ingested_at, NEW.quality_flags;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER bars_insert_ticks INSTEAD OF INSERT ON market.bars_intraday
    FOR EACH ROW EXECUTE FUNCTION market.bars_insert_ticks('market.bars_intraday_store');
CREATE OR REPLACE TRIGGER bars_insert_ticks INSTEAD OF INSERT ON market.bars_daily
    FOR EACH ROW EXECUTE FUNCTION market.bars_insert_ticks('market.bars_daily_store');

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
