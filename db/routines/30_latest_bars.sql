-- The functions that keep market.latest_bars (the latest bar of every (symbol, timeframe)), and its
-- DELETE triggers; the table and the INSERT/UPDATE statement triggers are in 0011_scanners.sql,
-- which says why a table, how it stays consistent with the hypertables, and what drop_chunks and
-- TRUNCATE miss.

-- Folds one INSERT/COPY/UPDATE statement's rows (transition table new_rows) into market.latest_bars
-- with one set-based upsert. The triggers are on the stores (market.bars_*_store), whose prices are
-- ticks of 1/10,000 dollar (0023_bar_price_ticks.sql): converted to dollars here. The newest row per series is found by a hash aggregate (max ts) joined
-- back, not DISTINCT ON: sorting a 2M-row session spills with the default work_mem. Rows older than
-- the stored latest bar are filtered out before the upsert, so a backfill takes no lock on the rows
-- live ingestion keeps moving (ON CONFLICT DO UPDATE locks the row even when its WHERE is false);
-- rows are touched in (symbol, timeframe) order, so concurrent writers queue rather than deadlock.
CREATE OR REPLACE FUNCTION market.latest_bars_upsert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO market.latest_bars AS l (symbol, timeframe, ts, open, high, low, close, volume, vwap,
                                         trade_count, source, quality_flags, ingested_at)
    SELECT n.symbol, n.timeframe, n.ts, n.open::float8 / 10000, n.high::float8 / 10000, n.low::float8 / 10000,
           n.close::float8 / 10000, n.volume, n.vwap::float8 / 10000,
           n.trade_count, n.source, n.quality_flags, n.ingested_at
      FROM new_rows n
      JOIN (SELECT g.symbol, g.timeframe, max(g.ts) AS ts FROM new_rows g GROUP BY g.symbol, g.timeframe) m
        ON m.symbol = n.symbol AND m.timeframe = n.timeframe AND m.ts = n.ts
     WHERE NOT EXISTS (SELECT 1 FROM market.latest_bars x
                        WHERE x.timeframe = n.timeframe AND x.symbol = n.symbol AND x.ts > n.ts)
     ORDER BY n.symbol, n.timeframe
    ON CONFLICT (timeframe, symbol) DO UPDATE
       SET ts = EXCLUDED.ts, open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
           close = EXCLUDED.close, volume = EXCLUDED.volume, vwap = EXCLUDED.vwap,
           trade_count = EXCLUDED.trade_count, source = EXCLUDED.source,
           quality_flags = EXCLUDED.quality_flags, ingested_at = EXCLUDED.ingested_at
     WHERE EXCLUDED.ts >= l.ts;
    RETURN NULL;
END
$$;

-- The series whose latest bar was deleted take their newest remaining bar (or leave the table).
-- A ROW trigger, not a statement trigger with a transition table: TimescaleDB refuses DELETE
-- triggers with transition tables on a hypertable with native compression (deleting a whole
-- compressed batch builds no transition table), while a row-level DELETE trigger makes it decompress
-- the batches it deletes from and fire per row. Row triggers on a hypertable run on its chunks, so
-- TG_RELID is a chunk: the hypertable to search comes as the trigger's argument. AFTER ROW triggers
-- fire once the statement is done, so the search sees every row it deleted gone; the first firing
-- of a series replaces its latest bar, the others find nothing to delete. Deletes are rare here
-- (corrections, test cleanup; tiering drops chunks and fires nothing).
CREATE OR REPLACE FUNCTION market.latest_bars_forget_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM market.latest_bars l
     WHERE l.timeframe = OLD.timeframe AND l.symbol = OLD.symbol AND l.ts = OLD.ts;
    IF FOUND THEN
        EXECUTE format(
            'INSERT INTO market.latest_bars (symbol, timeframe, ts, open, high, low, close, volume, vwap,'
            '                                trade_count, source, quality_flags, ingested_at)'
            ' SELECT b.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume, b.vwap,'
            '        b.trade_count, b.source, b.quality_flags, b.ingested_at'
            '   FROM %s b WHERE b.symbol = $1 AND b.timeframe = $2 ORDER BY b.ts DESC LIMIT 1',
            TG_ARGV[0]::regclass)
        USING OLD.symbol, OLD.timeframe;
    END IF;
    RETURN NULL;
END
$$;

-- On the stores; the argument is the view the newest remaining bar is read from, in dollars.
DROP TRIGGER IF EXISTS latest_bars_on_delete ON market.bars_intraday_store;
CREATE TRIGGER latest_bars_on_delete AFTER DELETE ON market.bars_intraday_store
    FOR EACH ROW EXECUTE FUNCTION market.latest_bars_forget_row('market.bars_intraday');
DROP TRIGGER IF EXISTS latest_bars_on_delete ON market.bars_daily_store;
CREATE TRIGGER latest_bars_on_delete AFTER DELETE ON market.bars_daily_store
    FOR EACH ROW EXECUTE FUNCTION market.latest_bars_forget_row('market.bars_daily');
-- The statement-level function 0011_scanners.sql created for the former DELETE triggers.
DROP FUNCTION IF EXISTS market.latest_bars_forget();

-- Rebuild from the hot store (after drop_chunks, TRUNCATE or a restore); reads every bar once.
-- Returns the number of series.
CREATE OR REPLACE FUNCTION market.refresh_latest_bars() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    DELETE FROM market.latest_bars;
    INSERT INTO market.latest_bars (symbol, timeframe, ts, open, high, low, close, volume, vwap,
                                    trade_count, source, quality_flags, ingested_at)
    SELECT DISTINCT ON (b.symbol, b.timeframe)
           b.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume, b.vwap,
           b.trade_count, b.source, b.quality_flags, b.ingested_at
      FROM market.bars b
     ORDER BY b.symbol, b.timeframe, b.ts DESC;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
