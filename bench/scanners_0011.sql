-- Frozen reference: the first (0011_scanners.sql) definitions of the three scanners that 0012 and
-- 0014 rewrote for speed, as they were, so the rewritten ones (db/routines/50_scanners.sql) can be
-- compared with them on the same data: by tests/integration/scanners/test_scanner_rewrite.py (same
-- rows) and by the storage benchmark (same rows, and the timings side by side).
--
-- The names are unqualified: bench.storage.create_reference_scanners creates them in the schema it
-- is given (first on the search_path); their bodies call the real scan.* helpers and read market.*.
-- Never edit this file to follow a change of the scanners: it is the yardstick, not a copy.

-- Latest close vs the close of the last bar at or before (latest ts - N minutes), per symbol.
-- Two steps, because 5,000 index probes cost more than one range scan: symbols whose reference bar
-- sits exactly N minutes before their latest bar (every symbol that traded in the latest minute
-- and N minutes earlier) are found by ONE scan of the minute or two around (newest ts - N) on
-- bars_intraday_ts_idx (ts DESC, TimescaleDB's default index, excluded to one chunk at run time),
-- hash-joined to market.latest_bars; only the others (a stale symbol, a missing minute, N reaching
-- into the previous session) take a backward probe of bars_intraday_pkey (symbol, timeframe, ts).
CREATE FUNCTION top_movers_minutes(p_minutes integer, p_limit integer DEFAULT 20,
                                   p_direction text DEFAULT 'both', p_timeframe text DEFAULT '1min')
RETURNS TABLE (symbol text, ts_from timestamptz, ts_to timestamptz, close_from double precision,
               close_to double precision, change_pct double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_span interval := make_interval(mins => p_minutes);
BEGIN
    PERFORM scan.check_positive('minutes', p_minutes);
    PERFORM scan.check_positive('limit', p_limit);
    PERFORM scan.check_direction(p_direction);
    IF scan.bar_table(p_timeframe) <> 'market.bars_intraday'::regclass THEN
        RAISE EXCEPTION 'top_movers_minutes needs an intraday timeframe, got %; use 1min, 5min, 15min or 1hour '
                        '(or top_movers_sessions for daily bars)', quote_nullable(p_timeframe)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        WITH l AS MATERIALIZED (
            SELECT x.symbol, x.timeframe, x.ts, x.close FROM market.latest_bars x WHERE x.timeframe = p_timeframe),
        newest AS (SELECT max(l.ts) - v_span AS ts FROM l),
        exact AS (
            SELECT b.symbol, b.ts, b.close FROM market.bars_intraday b
             WHERE b.timeframe = p_timeframe
               AND b.ts >= (SELECT n.ts FROM newest n) - interval '1 minute'
               AND b.ts <= (SELECT n.ts FROM newest n)),
        found AS (
            SELECT l.symbol, e.ts AS ts_from, l.ts AS ts_to, e.close AS close_from, l.close AS close_to
              FROM l JOIN exact e ON e.symbol = l.symbol AND e.ts = l.ts - v_span),
        m AS (
            SELECT * FROM found
            UNION ALL
            -- only the symbols the range scan did not serve: a LATERAL evaluated for all 5,000 would
            -- pay the ChunkAppend's per-chunk rescan for each of them even when it returns nothing
            SELECT l.symbol, f.ts, l.ts, f.close, l.close
              FROM l
             CROSS JOIN LATERAL (
                   SELECT b.ts, b.close FROM market.bars_intraday b
                    WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts <= l.ts - v_span
                    ORDER BY b.ts DESC LIMIT 1) f
             WHERE NOT EXISTS (SELECT 1 FROM found x WHERE x.symbol = l.symbol))
        SELECT m.symbol, m.ts_from, m.ts_to, m.close_from, m.close_to, 100 * (m.close_to / m.close_from - 1)
          FROM m
         WHERE m.close_from > 0
           AND scan.rank_key(100 * (m.close_to / m.close_from - 1), p_direction) IS NOT NULL
         ORDER BY scan.rank_key(100 * (m.close_to / m.close_from - 1), p_direction), m.symbol
         LIMIT p_limit;
END
$$;

-- z = (latest volume - mean) / sample standard deviation of the p_lookback bars before the latest
-- (all p_lookback of them must exist). Served by the timeframe's bars pkey: one backward probe of
-- p_lookback entries per symbol.
CREATE FUNCTION volume_spikes(p_lookback integer DEFAULT 20, p_min_z double precision DEFAULT 3,
                              p_timeframe text DEFAULT '1min', p_limit integer DEFAULT 50)
RETURNS TABLE (symbol text, ts timestamptz, volume bigint, mean_volume double precision,
               std_volume double precision, z double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    PERFORM scan.check_positive('lookback', p_lookback);
    PERFORM scan.check_positive('limit', p_limit);
    IF p_lookback < 2 THEN
        RAISE EXCEPTION 'lookback must be at least 2 bars (a standard deviation needs two), got %; '
                        'pass --lookback 2 or more', p_lookback USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_min_z IS NULL THEN
        RAISE EXCEPTION 'min_z must be a number, got NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT s.symbol, s.ts, s.volume, s.mean_volume, s.std_volume, s.z
          FROM (SELECT l.symbol, l.ts, l.volume, h.mean_volume, h.std_volume,
                       (l.volume - h.mean_volume) / h.std_volume AS z
                  FROM market.latest_bars l
                 CROSS JOIN LATERAL (
                       SELECT avg(p.volume)::double precision AS mean_volume,
                              stddev_samp(p.volume)::double precision AS std_volume, count(*) AS n
                         FROM (SELECT b.volume FROM %s b
                                WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < l.ts
                                ORDER BY b.ts DESC LIMIT $1) p) h
                 WHERE l.timeframe = $2 AND h.n = $1 AND h.std_volume > 0) s
         WHERE s.z >= $3
         ORDER BY s.z DESC, s.symbol
         LIMIT $4 $q$, scan.bar_table(p_timeframe))
    USING p_lookback, p_timeframe, p_min_z, p_limit;
END
$$;

-- Per symbol: the latest session is the New York date of its latest bar; gap = first open of that
-- date vs the close of the last bar before it (the previous session's close). With '1day' those
-- are the latest daily bar's open and the previous daily bar's close. Pre- and post-market bars,
-- where stored, count as part of their date. Served by the timeframe's bars pkey: one forward and
-- one backward probe per symbol.
CREATE FUNCTION opening_gaps(p_min_pct double precision DEFAULT 2, p_direction text DEFAULT 'both',
                             p_timeframe text DEFAULT '1min', p_limit integer DEFAULT 50)
RETURNS TABLE (symbol text, session_date date, open double precision, prev_ts timestamptz,
               prev_close double precision, gap_pct double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    PERFORM scan.check_direction(p_direction);
    PERFORM scan.check_positive('limit', p_limit);
    IF p_min_pct IS NULL OR p_min_pct < 0 THEN
        RAISE EXCEPTION 'min_pct must be a number >= 0, got %; pass e.g. 2 for 2 %%', quote_nullable(p_min_pct)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT g.symbol, g.session_date, g.open, g.prev_ts, g.prev_close, g.gap_pct
          FROM (SELECT l.symbol, d.session_date, o.open, p.ts AS prev_ts, p.close AS prev_close,
                       100 * (o.open / p.close - 1) AS gap_pct
                  FROM market.latest_bars l
                 CROSS JOIN LATERAL (
                       SELECT (l.ts AT TIME ZONE 'America/New_York')::date AS session_date,
                              ((l.ts AT TIME ZONE 'America/New_York')::date::timestamp
                                   AT TIME ZONE 'America/New_York') AS day_start) d
                 CROSS JOIN LATERAL (
                       SELECT b.open FROM %1$s b
                        WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts >= d.day_start
                        ORDER BY b.ts LIMIT 1) o
                 CROSS JOIN LATERAL (
                       SELECT b.ts, b.close FROM %1$s b
                        WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < d.day_start
                        ORDER BY b.ts DESC LIMIT 1) p
                 WHERE l.timeframe = $1 AND p.close > 0) g
         WHERE abs(g.gap_pct) >= $2 AND scan.rank_key(g.gap_pct, $3) IS NOT NULL
         ORDER BY scan.rank_key(g.gap_pct, $3), g.symbol
         LIMIT $4 $q$, scan.bar_table(p_timeframe))
    USING p_timeframe, p_min_pct, p_direction, p_limit;
END
$$;
