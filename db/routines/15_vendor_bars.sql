-- Every vendor's bars, and where vendors disagree (issue 18; the tables are in
-- 0018_vendor_bars.sql, which says what goes where). Prices in dollars: the consolidated bars are
-- read through their views (10_market_bars.sql), the vendor tables hold double precision.
--
-- market.vendor_bars: one row per (symbol, timeframe, ts, source): the consolidated row of a bar
-- under its own vendor, and every other vendor's row of it. A vendor's row kept in
-- market.vendor_bars_* that is ALSO the consolidated row (it won back the bar, say after the
-- precedence setting changed) is shown once, from the consolidated table.
CREATE OR REPLACE VIEW market.vendor_bars AS
    SELECT symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source, ingested_at,
           quality_flags
      FROM market.bars
    UNION ALL
    SELECT v.symbol, v.timeframe, v.ts, v.open, v.high, v.low, v.close, v.volume, v.vwap, v.trade_count,
           v.source, v.ingested_at, v.quality_flags
      FROM market.vendor_bars_intraday v
     WHERE NOT EXISTS (SELECT 1 FROM market.bars_intraday b
                        WHERE b.symbol = v.symbol AND b.timeframe = v.timeframe AND b.ts = v.ts
                          AND b.source = v.source)
    UNION ALL
    SELECT v.symbol, v.timeframe, v.ts, v.open, v.high, v.low, v.close, v.volume, v.vwap, v.trade_count,
           v.source, v.ingested_at, v.quality_flags
      FROM market.vendor_bars_daily v
     WHERE NOT EXISTS (SELECT 1 FROM market.bars_daily b
                        WHERE b.symbol = v.symbol AND b.timeframe = v.timeframe AND b.ts = v.ts
                          AND b.source = v.source);

-- Bars of p_timeframe in [p_start, p_end) on which two vendors' prices differ by more than
-- p_tolerance (|a - b| over the mean of the two prices), one row per bar and pair of vendors: the field that differs most and both values. Only bars some second
-- vendor sent can disagree, so the search starts from market.vendor_bars_* (small) and reads the
-- consolidated rows of those keys alone. Volumes are not compared: vendors count different venues
-- (Alpaca's IEX feed, Yahoo's consolidated tape), so they differ without either being wrong.
-- p_symbols NULL: every symbol.
DROP FUNCTION IF EXISTS market.vendor_disagreements(text[], timestamptz, timestamptz, text, double precision);
CREATE OR REPLACE FUNCTION market.vendor_disagreements(
    p_symbols text[], p_start timestamptz, p_end timestamptz, p_timeframe text, p_tolerance double precision)
RETURNS TABLE (symbol text, timeframe text, ts timestamptz, session_date date, source_a text, source_b text,
               field text, value_a double precision, value_b double precision, relative_difference double precision)
LANGUAGE sql STABLE AS $$
    WITH others AS (
        SELECT * FROM market.vendor_bars_intraday v
         WHERE v.timeframe = p_timeframe AND v.ts >= p_start AND v.ts < p_end
           AND (p_symbols IS NULL OR v.symbol = ANY(p_symbols))
        UNION ALL
        SELECT * FROM market.vendor_bars_daily v
         WHERE v.timeframe = p_timeframe AND v.ts >= p_start AND v.ts < p_end
           AND (p_symbols IS NULL OR v.symbol = ANY(p_symbols))
    ),
    keys AS (SELECT DISTINCT o.symbol, o.timeframe, o.ts FROM others o),
    rows AS (
        SELECT b.symbol, b.timeframe, b.ts, b.source, b.open, b.high, b.low, b.close
          FROM market.bars b JOIN keys k ON b.symbol = k.symbol AND b.timeframe = k.timeframe AND b.ts = k.ts
         WHERE b.timeframe = p_timeframe AND b.ts >= p_start AND b.ts < p_end
        UNION
        SELECT o.symbol, o.timeframe, o.ts, o.source, o.open, o.high, o.low, o.close FROM others o
    ),
    pairs AS (
        SELECT a.symbol, a.timeframe, a.ts, a.source AS source_a, b.source AS source_b, f.field, f.value_a, f.value_b,
               abs(f.value_a - f.value_b) / nullif((abs(f.value_a) + abs(f.value_b)) / 2, 0) AS relative_difference
          FROM rows a
          JOIN rows b ON a.symbol = b.symbol AND a.timeframe = b.timeframe AND a.ts = b.ts AND a.source < b.source
         CROSS JOIN LATERAL (VALUES ('open', a.open, b.open), ('high', a.high, b.high),
                                    ('low', a.low, b.low), ('close', a.close, b.close)) AS f(field, value_a, value_b)
    )
    SELECT DISTINCT ON (p.symbol, p.timeframe, p.ts, p.source_a, p.source_b)
           p.symbol, p.timeframe, p.ts, (p.ts AT TIME ZONE 'America/New_York')::date, p.source_a, p.source_b,
           p.field, p.value_a, p.value_b, p.relative_difference
      FROM pairs p
     WHERE p.relative_difference > p_tolerance
     ORDER BY p.symbol, p.timeframe, p.ts, p.source_a, p.source_b, p.relative_difference DESC;
$$;
