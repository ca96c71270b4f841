-- SQL scanners over the hot store, for scanner processes (psql, any PostgreSQL client) and for
-- `marketpipe scan` (storage/scanners.py calls these same functions).
--
--   scan.latest_bars                      view: the latest bar of every (symbol, timeframe)
--   scan.latest(timeframe)                the same for one timeframe, by symbol
--   scan.top_movers_minutes(n, ...)       change of the latest close vs the close N minutes earlier
--   scan.top_movers_sessions(n, ...)      change of the latest daily close vs the close N sessions earlier
--   scan.volume_spikes(lookback, min_z, ...)  latest volume's z-score vs the symbol's previous bars
--   scan.opening_gaps(min_pct, ...)       first open of the latest session vs the previous session's last close
--   scan.new_highs_lows(days, ...)        latest bar above every high / below every low of the N bars before it
--   scan.rsi_extremes(above, below, ...)  latest rsi of each symbol's latest feature row outside [below, above]
--
-- Every scanner starts from market.latest_bars (one row per symbol and timeframe) and reaches back
-- into the hypertables with per-symbol LATERAL probes that each read a handful of index entries.
-- For 5min, 15min, 1hour and 1day, a symbol with stored 1-minute bars and no stored bar of the
-- timeframe is scanned on the continuous aggregate of its minutes where the full edition has it
-- (the rule and its helpers: 40_scan_helpers.sql): its latest bar comes from scan.aggregate_latest,
-- its probes take the unbounded form on the aggregate, and it is ranked with the stored symbols.
-- Each scanner states its probe once as text with the latest source and the bar source as format()
-- arguments; with the stored sources it is the statement it was before, so the stored paths and
-- their plans are unchanged.
-- Definitions (the tests compute each one again in pandas):
--   * "latest" is per symbol: the symbol's own newest bar of the timeframe, not the newest in the table.
--   * changes and gaps are percentages: 100 * (new / old - 1).
--   * a scanner whose reference data is missing for a symbol (too little history, a zero price,
--     a zero standard deviation) leaves that symbol out rather than guessing.
--   * direction: 'up' keeps only positive changes (largest first), 'down' only negative ones
--     (most negative first), 'both' all of them by absolute size. Ties are broken by symbol.
--
-- Indexes, and the queries they serve (no index is added to the hypertables: each extra index on
-- a 2M-rows-a-session table costs every write, and the primary keys already serve every probe; the
-- bounded tiers below use the same indexes as the unbounded probes):
--   market.bars_intraday_pkey (symbol, timeframe, ts), from 0002, serves every intraday probe:
--       "the last bar at or before ts - N minutes" (top_movers_minutes' fallback), "the K bars before the
--       latest" (volume_spikes), "the first bar of a date / the last bar before it" (opening_gaps),
--       each as an index scan (backward for ORDER BY ts DESC) that stops after LIMIT rows; on a
--       hypertable it is one index per chunk, and the ordered ChunkAppend opens older chunks only
--       when the newer ones ran out of rows.
--   market.bars_intraday_ts_idx (ts DESC), TimescaleDB's default, serves top_movers_minutes' one
--       range scan of "every bar of the minute N minutes before the newest bar".
--   market.bars_daily_pkey (symbol, timeframe, ts), from 0002: the same probes on daily bars
--       (top_movers_sessions, new_highs_lows, and volume_spikes / opening_gaps with '1day').
--   features.bar_features_pkey (symbol, timeframe, ts, feature_set), from 0009: rsi_extremes'
--       "newest feature row of a symbol" (backward scan; computed_at breaks ties between versions).
--   market.latest_bars_pkey (timeframe, symbol), from 0011: scan.latest / every scanner's outer scan
--       "WHERE timeframe = $1 ORDER BY symbol", and the trigger's ON CONFLICT arbiter.
--
-- Bounded probes (top_movers_minutes, volume_spikes, opening_gaps; first in 0012, volume_spikes'
-- tight tier set-based since 0014). Unbounded per-symbol probes ("ORDER BY ts DESC LIMIT k" with the
-- symbol's own ts as the bound) grew with the number of chunks: the bound is a parameter the planner
-- cannot see, so the plan holds every chunk and TimescaleDB's ChunkAppend opens (and runtime-excludes)
-- all of them on each of the 5,000 rescans: ~20 us per chunk per symbol, measured at 20 chunks as
-- 0.45 ms per symbol before the first row, against 0.02 ms for the index scan itself. The plans also
-- crossed jit_above_cost at 5,000 symbols, and JIT compilation costs more than these probes ever do.
-- So these functions first compute their time bounds from market.latest_bars and run their range
-- queries with EXECUTE .. USING: the bounds are constants at plan time and the planner keeps only
-- the chunks inside them. Per-symbol probes run in tiers of widening lower bounds:
--   1. tight: the minutes the scanner needs when the symbol traded in every one of them (one chunk);
--   2. from the start of the previous session that has bars (scan.previous_session_start: one
--      backward step on the ts index; chunks without bars do not exist, so this is two or three
--      chunks whatever the weekend or holiday);
--   3. unbounded, the original probe exactly, for the symbols still unresolved (a stale symbol, a
--      long gap).
-- A symbol is settled in the first tier whose bounded probe provably returns what the unbounded
-- probe would (it found its k newest bars, or its bar before the session, inside the bound); later
-- tiers probe only the unsettled symbols. Results are collected in arrays and ranked once.
-- jit = off on the three: index probes of a few rows each never repay a compilation.
-- tests/integration/scanners/test_scanner_rewrite.py compares them with the unbounded definitions
-- (frozen in bench/scanners_0011.sql) on the same data.

CREATE OR REPLACE VIEW scan.latest_bars AS
    SELECT symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source, quality_flags
      FROM market.latest_bars;

-- Served by market.latest_bars_pkey (timeframe, symbol); for an aggregated timeframe, plus the
-- latest aggregate bar of each symbol that has no stored bar of it (scan.aggregate_latest).
CREATE OR REPLACE FUNCTION scan.latest(p_timeframe text DEFAULT '1min')
RETURNS SETOF scan.latest_bars
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM scan.bar_table(p_timeframe);
    IF scan.aggregate_view(p_timeframe) IS NULL THEN
        RETURN QUERY SELECT * FROM scan.latest_bars l WHERE l.timeframe = p_timeframe ORDER BY l.symbol;
    ELSE
        RETURN QUERY SELECT u.* FROM (SELECT * FROM scan.latest_bars l WHERE l.timeframe = p_timeframe
                                      UNION ALL
                                      SELECT * FROM scan.aggregate_latest(p_timeframe)) u
                      ORDER BY u.symbol;
    END IF;
END
$$;

-- Latest close vs the close of the last bar at or before (latest ts - N minutes), per symbol.
-- Symbols whose reference bar sits exactly N minutes before their latest bar (every symbol that
-- traded in the latest minute and N minutes earlier) are found by ONE range scan of the minute or
-- two around (newest ts - N) on bars_intraday_ts_idx, joined to market.latest_bars; only the others
-- (a stale symbol, a missing minute, N reaching into the previous session) take the tiered probes.
-- Symbols scanned on the aggregate (40_scan_helpers.sql) take the unbounded probe on it.
CREATE OR REPLACE FUNCTION scan.top_movers_minutes(p_minutes integer, p_limit integer DEFAULT 20,
                                                   p_direction text DEFAULT 'both', p_timeframe text DEFAULT '1min')
RETURNS TABLE (symbol text, ts_from timestamptz, ts_to timestamptz, close_from double precision,
               close_to double precision, change_pct double precision)
LANGUAGE plpgsql STABLE SET jit = off AS $$
#variable_conflict use_column
DECLARE
    v_span interval := make_interval(mins => p_minutes);
    v_newest timestamptz;
    v_count bigint;
    v_symbol text[];
    v_from timestamptz[];
    v_to timestamptz[];
    v_close_from double precision[];
    v_close_to double precision[];
    v_lo timestamptz;
    v_last boolean;
    -- the last bar at or before (latest - N) of each symbol of latest source %1$s not yet settled,
    -- in bar source %2$s, from $3 on
    v_probe text := $q$
            SELECT array_agg(l.symbol), array_agg(f.ts), array_agg(l.ts), array_agg(f.close), array_agg(l.close)
              FROM %1$s l
             CROSS JOIN LATERAL (
                   SELECT b.ts, b.close FROM %2$s b
                    WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts <= l.ts - $2 AND b.ts >= $3
                    ORDER BY b.ts DESC LIMIT 1) f
             WHERE l.timeframe = $1
               AND NOT EXISTS (SELECT 1 FROM unnest($4::text[]) AS d (symbol) WHERE d.symbol = l.symbol) $q$;
    t_symbol text[];
    t_from timestamptz[];
    t_to timestamptz[];
    t_close_from double precision[];
    t_close_to double precision[];
BEGIN
    PERFORM scan.check_positive('minutes', p_minutes);
    PERFORM scan.check_positive('limit', p_limit);
    PERFORM scan.check_direction(p_direction);
    IF scan.bar_table(p_timeframe) <> 'market.bars_intraday'::regclass THEN
        RAISE EXCEPTION 'top_movers_minutes needs an intraday timeframe, got %; use 1min, 5min, 15min or 1hour '
                        '(or top_movers_sessions for daily bars)', quote_nullable(p_timeframe)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT max(l.ts), count(*) INTO v_newest, v_count FROM market.latest_bars l WHERE l.timeframe = p_timeframe;
    IF v_count = 0 AND scan.aggregate_view(p_timeframe) IS NULL THEN
        RETURN;
    END IF;
    -- Symbols whose bar exactly N minutes before their latest sits in the minute or two before
    -- (newest - N): one range scan of one chunk, joined to the latest bars.
    EXECUTE $q$
        SELECT array_agg(l.symbol), array_agg(e.ts), array_agg(l.ts), array_agg(e.close), array_agg(l.close)
          FROM market.latest_bars l
          JOIN market.bars_intraday e ON e.symbol = l.symbol AND e.ts = l.ts - $3
         WHERE l.timeframe = $1 AND e.timeframe = $1 AND e.ts >= $2 - interval '1 minute' AND e.ts <= $2 $q$
       INTO v_symbol, v_from, v_to, v_close_from, v_close_to
       USING p_timeframe, v_newest - v_span, v_span;
    v_symbol := coalesce(v_symbol, '{}');
    -- The others: the last bar at or before (latest - N), in tiers of widening bounds.
    FOREACH v_lo IN ARRAY ARRAY[scan.previous_session_start('market.bars_intraday', p_timeframe, v_newest - v_span),
                                '-infinity'::timestamptz] LOOP
        EXIT WHEN cardinality(v_symbol) >= v_count;
        v_last := v_lo = '-infinity';
        EXECUTE format(v_probe, 'market.latest_bars', 'market.bars_intraday')
           INTO t_symbol, t_from, t_to, t_close_from, t_close_to
           USING p_timeframe, v_span, v_lo, v_symbol;
        -- a probe that found no bar above a finite bound settles nothing: the next tier looks further
        v_symbol := v_symbol || coalesce(t_symbol, '{}');
        v_from := v_from || t_from;
        v_to := v_to || t_to;
        v_close_from := v_close_from || t_close_from;
        v_close_to := v_close_to || t_close_to;
        EXIT WHEN v_last;
    END LOOP;
    IF scan.aggregate_view(p_timeframe) IS NOT NULL THEN
        EXECUTE format(v_probe, format('scan.aggregate_latest(%L)', p_timeframe), scan.aggregate_bars_sql(p_timeframe))
           INTO t_symbol, t_from, t_to, t_close_from, t_close_to
           USING p_timeframe, v_span, '-infinity'::timestamptz, '{}'::text[];
        v_symbol := v_symbol || coalesce(t_symbol, '{}');
        v_from := v_from || t_from;
        v_to := v_to || t_to;
        v_close_from := v_close_from || t_close_from;
        v_close_to := v_close_to || t_close_to;
    END IF;
    RETURN QUERY
        SELECT m.symbol, m.ts_from, m.ts_to, m.close_from, m.close_to, 100 * (m.close_to / m.close_from - 1)
          FROM unnest(v_symbol, v_from, v_to, v_close_from, v_close_to) AS m (symbol, ts_from, ts_to, close_from, close_to)
         WHERE m.close_from > 0
           AND scan.rank_key(100 * (m.close_to / m.close_from - 1), p_direction) IS NOT NULL
         ORDER BY scan.rank_key(100 * (m.close_to / m.close_from - 1), p_direction), m.symbol
         LIMIT p_limit;
END
$$;

-- Latest daily close vs the daily close N sessions (daily bars) before it, per symbol.
-- Served by market.bars_daily_pkey: one backward probe of N+1 entries per symbol; symbols scanned
-- on the 1day aggregate (40_scan_helpers.sql) take the same probe on it, ranked with the others.
CREATE OR REPLACE FUNCTION scan.top_movers_sessions(p_sessions integer, p_limit integer DEFAULT 20,
                                         p_direction text DEFAULT 'both')
RETURNS TABLE (symbol text, ts_from timestamptz, ts_to timestamptz, close_from double precision,
               close_to double precision, change_pct double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    -- the change of every symbol of latest source %1$s over its daily bars in bar source %2$s
    v_movers text := $q$
        SELECT l.symbol, r.ts AS ts_from, l.ts AS ts_to, r.close AS close_from, l.close AS close_to,
               100 * (l.close / r.close - 1) AS change_pct
          FROM %1$s l
         CROSS JOIN LATERAL (
               SELECT b.ts, b.close FROM %2$s b
                WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < l.ts
                ORDER BY b.ts DESC OFFSET $1 - 1 LIMIT 1) r
         WHERE l.timeframe = '1day' AND r.close > 0 $q$;
    v_rows text;
BEGIN
    PERFORM scan.check_positive('sessions', p_sessions);
    PERFORM scan.check_positive('limit', p_limit);
    PERFORM scan.check_direction(p_direction);
    v_rows := format(v_movers, 'market.latest_bars', 'market.bars_daily');
    IF scan.aggregate_view('1day') IS NOT NULL THEN
        v_rows := v_rows || ' UNION ALL ' || format(v_movers, 'scan.aggregate_latest(''1day'')',
                                                    scan.aggregate_bars_sql('1day'));
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT m.symbol, m.ts_from, m.ts_to, m.close_from, m.close_to, m.change_pct
          FROM (%s) m
         WHERE scan.rank_key(m.change_pct, $2) IS NOT NULL
         ORDER BY scan.rank_key(m.change_pct, $2), m.symbol
         LIMIT $3 $q$, v_rows)
    USING p_sessions, p_direction, p_limit;
END
$$;

-- z = (latest volume - mean) / sample standard deviation of the p_lookback bars before the latest
-- (all p_lookback of them must exist). The tight tier is set-based: one range scan of the last
-- p_lookback bar lengths before the newest bar on the chunk's ts index, hash-joined to
-- market.latest_bars and aggregated per symbol; a symbol with exactly p_lookback bars in [its latest
-- - p_lookback bar lengths, its latest) has them as its p_lookback newest, so it is settled; the
-- others go on to the wider tiers (measured on 38.1M rows: 150-180 ms against 250-280 ms for a
-- LATERAL probe per symbol). avg and stddev_samp stay on bigint (numeric accumulation, exact and
-- order-independent), so results match the per-symbol probes bit for bit. Symbols scanned on the
-- aggregate (40_scan_helpers.sql) take the unbounded per-symbol probe on it.
CREATE OR REPLACE FUNCTION scan.volume_spikes(p_lookback integer DEFAULT 20, p_min_z double precision DEFAULT 3,
                                              p_timeframe text DEFAULT '1min', p_limit integer DEFAULT 50)
RETURNS TABLE (symbol text, ts timestamptz, volume bigint, mean_volume double precision,
               std_volume double precision, z double precision)
LANGUAGE plpgsql STABLE SET jit = off AS $$
#variable_conflict use_column
DECLARE
    v_table regclass;
    v_newest timestamptz;
    v_count bigint;
    v_bounds timestamptz[];
    v_window interval;
    v_rows text;
    -- the p_lookback bars before the latest of each symbol of latest source %1$s not yet settled,
    -- in bar source %2$s, from $3 on
    v_probe text := $r$
                SELECT l.symbol, l.ts, l.volume, h.mean_volume, h.std_volume, h.n
                  FROM %1$s l
                 CROSS JOIN LATERAL (
                       SELECT avg(p.volume)::double precision AS mean_volume,
                              stddev_samp(p.volume)::double precision AS std_volume, count(*) AS n
                         FROM (SELECT b.volume FROM %2$s b
                                WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < l.ts
                                  AND b.ts >= $3
                                ORDER BY b.ts DESC LIMIT $1) p) h
                 WHERE l.timeframe = $2
                   AND NOT EXISTS (SELECT 1 FROM unnest($4::text[]) AS d (symbol) WHERE d.symbol = l.symbol)
                $r$;
    -- settled: the bounded probe found all p_lookback bars (they are then the newest ones), or
    -- this is the unbounded tier; candidates: settled and passing 0011's filters
    v_settle text := $q$
            WITH r AS (%s),
            s AS (SELECT * FROM r WHERE r.n = $1 OR $5)
            SELECT array_agg(s.symbol),
                   array_agg(s.symbol) FILTER (WHERE k.ok), array_agg(s.ts) FILTER (WHERE k.ok),
                   array_agg(s.volume) FILTER (WHERE k.ok), array_agg(s.mean_volume) FILTER (WHERE k.ok),
                   array_agg(s.std_volume) FILTER (WHERE k.ok)
              FROM s
             CROSS JOIN LATERAL (SELECT s.n = $1 AND s.std_volume > 0
                                        AND (s.volume - s.mean_volume) / s.std_volume >= $6 AS ok) k $q$;
    v_lo timestamptz;
    v_last boolean;
    v_settled text[] := '{}';
    v_symbol text[] := '{}';
    v_ts timestamptz[] := '{}';
    v_volume bigint[] := '{}';
    v_mean double precision[] := '{}';
    v_std double precision[] := '{}';
    t_settled text[];
    t_symbol text[];
    t_ts timestamptz[];
    t_volume bigint[];
    t_mean double precision[];
    t_std double precision[];
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
    v_table := scan.bar_table(p_timeframe);
    SELECT max(l.ts), count(*) INTO v_newest, v_count FROM market.latest_bars l WHERE l.timeframe = p_timeframe;
    -- daily bars skip weekends and holidays: no tight bound is cheap to state, 0011's probe it is
    v_window := p_lookback * scan.bar_interval(p_timeframe);
    v_bounds := CASE WHEN v_count = 0 THEN '{}'::timestamptz[]
                     WHEN p_timeframe = '1day' THEN ARRAY['-infinity'::timestamptz]
                     ELSE ARRAY[v_newest - v_window,
                                scan.previous_session_start(v_table, p_timeframe, v_newest),
                                '-infinity'::timestamptz] END;
    FOREACH v_lo IN ARRAY v_bounds LOOP
        v_last := v_lo = '-infinity';
        IF p_timeframe <> '1day' AND v_lo = v_newest - v_window THEN
            -- the tight tier, set-based: every bar of the last p_lookback bar lengths before each
            -- symbol's latest bar, one range scan of one chunk, hash-joined and aggregated; when a
            -- symbol has exactly p_lookback of them they are its p_lookback newest
            v_rows := format($r$
                SELECT l.symbol, l.ts, l.volume, avg(b.volume)::double precision AS mean_volume,
                       stddev_samp(b.volume)::double precision AS std_volume, count(*) AS n
                  FROM market.latest_bars l
                  JOIN %s b ON b.symbol = l.symbol AND b.timeframe = l.timeframe
                 WHERE l.timeframe = $2 AND b.timeframe = $2 AND b.ts < l.ts AND b.ts >= l.ts - $7
                   AND b.ts >= $3 AND b.ts < $8
                 GROUP BY l.symbol, l.ts, l.volume $r$, v_table);
        ELSE
            v_rows := format(v_probe, 'market.latest_bars', v_table);
        END IF;
        EXECUTE format(v_settle, v_rows)
           INTO t_settled, t_symbol, t_ts, t_volume, t_mean, t_std
           USING p_lookback, p_timeframe, v_lo, v_settled, v_last, p_min_z, v_window, v_newest;
        v_settled := v_settled || coalesce(t_settled, '{}');
        v_symbol := v_symbol || coalesce(t_symbol, '{}');
        v_ts := v_ts || coalesce(t_ts, '{}');
        v_volume := v_volume || coalesce(t_volume, '{}');
        v_mean := v_mean || coalesce(t_mean, '{}');
        v_std := v_std || coalesce(t_std, '{}');
        EXIT WHEN v_last OR cardinality(v_settled) >= v_count;
    END LOOP;
    IF scan.aggregate_view(p_timeframe) IS NOT NULL THEN
        EXECUTE format(v_settle, format(v_probe, format('scan.aggregate_latest(%L)', p_timeframe),
                                        scan.aggregate_bars_sql(p_timeframe)))
           INTO t_settled, t_symbol, t_ts, t_volume, t_mean, t_std
           USING p_lookback, p_timeframe, '-infinity'::timestamptz, '{}'::text[], true, p_min_z;
        v_symbol := v_symbol || coalesce(t_symbol, '{}');
        v_ts := v_ts || coalesce(t_ts, '{}');
        v_volume := v_volume || coalesce(t_volume, '{}');
        v_mean := v_mean || coalesce(t_mean, '{}');
        v_std := v_std || coalesce(t_std, '{}');
    END IF;
    RETURN QUERY
        SELECT s.symbol, s.ts, s.volume, s.mean_volume, s.std_volume, (s.volume - s.mean_volume) / s.std_volume
          FROM unnest(v_symbol, v_ts, v_volume, v_mean, v_std) AS s (symbol, ts, volume, mean_volume, std_volume)
         ORDER BY (s.volume - s.mean_volume) / s.std_volume DESC, s.symbol
         LIMIT p_limit;
END
$$;

-- Per symbol: the latest session is the New York date of its latest bar; gap = first open of that
-- date vs the close of the last bar before it (the previous session's close). With '1day' those
-- are the latest daily bar's open and the previous daily bar's close. Pre- and post-market bars,
-- where stored, count as part of their date. Symbols that traded at the session's first stored
-- instant and at the previous session's last one are served by two one-minute scans of the ts
-- index, hash-joined; the others by the tiered probes. Symbols scanned on the aggregate
-- (40_scan_helpers.sql) take the unbounded probes on it.
CREATE OR REPLACE FUNCTION scan.opening_gaps(p_min_pct double precision DEFAULT 2, p_direction text DEFAULT 'both',
                                             p_timeframe text DEFAULT '1min', p_limit integer DEFAULT 50)
RETURNS TABLE (symbol text, session_date date, open double precision, prev_ts timestamptz,
               prev_close double precision, gap_pct double precision)
LANGUAGE plpgsql STABLE SET jit = off AS $$
#variable_conflict use_column
DECLARE
    v_table regclass;
    v_newest timestamptz;
    v_count bigint;
    v_lo timestamptz;
    v_last boolean;
    v_settled text[] := '{}';
    v_symbol text[] := '{}';
    v_date date[] := '{}';
    v_open double precision[] := '{}';
    v_prev_ts timestamptz[] := '{}';
    v_prev_close double precision[] := '{}';
    v_day timestamptz;
    v_first timestamptz;
    v_prev timestamptz;
    -- the first open of the latest session and the last bar before it of each symbol of latest
    -- source %2$s not yet settled, in bar source %1$s, from $2 on; settled: the symbol's session
    -- starts inside the bound (so its first bar is too) and its previous bar was found inside it,
    -- or this is the unbounded tier
    v_probe text := $q$
            WITH r AS (
                SELECT l.symbol, d.session_date, d.day_start, o.open, p.ts AS prev_ts, p.close AS prev_close
                  FROM %2$s l
                 CROSS JOIN LATERAL (
                       SELECT (l.ts AT TIME ZONE 'America/New_York')::date AS session_date,
                              scan.session_start(l.ts) AS day_start) d
                 CROSS JOIN LATERAL (
                       SELECT b.open FROM %1$s b
                        WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts >= d.day_start
                          AND b.ts >= $2
                        ORDER BY b.ts LIMIT 1) o
                  LEFT JOIN LATERAL (
                       SELECT b.ts, b.close FROM %1$s b
                        WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < d.day_start
                          AND b.ts >= $2
                        ORDER BY b.ts DESC LIMIT 1) p ON true
                 WHERE l.timeframe = $1
                   AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) AS x (symbol) WHERE x.symbol = l.symbol)),
            s AS (SELECT * FROM r WHERE (r.day_start >= $2 AND r.prev_ts IS NOT NULL) OR $4),
            g AS (SELECT s.*, 100 * (s.open / s.prev_close - 1) AS gap_pct FROM s)
            SELECT array_agg(g.symbol),
                   array_agg(g.symbol) FILTER (WHERE k.ok), array_agg(g.session_date) FILTER (WHERE k.ok),
                   array_agg(g.open) FILTER (WHERE k.ok), array_agg(g.prev_ts) FILTER (WHERE k.ok),
                   array_agg(g.prev_close) FILTER (WHERE k.ok)
              FROM g
             CROSS JOIN LATERAL (SELECT g.prev_close > 0 AND abs(g.gap_pct) >= $5
                                        AND scan.rank_key(g.gap_pct, $6) IS NOT NULL AS ok) k $q$;
    t_settled text[];
    t_symbol text[];
    t_date date[];
    t_open double precision[];
    t_prev_ts timestamptz[];
    t_prev_close double precision[];
BEGIN
    PERFORM scan.check_direction(p_direction);
    PERFORM scan.check_positive('limit', p_limit);
    IF p_min_pct IS NULL OR p_min_pct < 0 THEN
        RAISE EXCEPTION 'min_pct must be a number >= 0, got %; pass e.g. 2 for 2 %%', quote_nullable(p_min_pct)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_table := scan.bar_table(p_timeframe);
    SELECT max(l.ts), count(*) INTO v_newest, v_count FROM market.latest_bars l WHERE l.timeframe = p_timeframe;
    -- Symbols whose latest bar is in the newest session and that have a bar at the session's first
    -- stored instant (v_first: no symbol has an earlier bar that day, so it is theirs too) and at
    -- the previous session's last stored instant (v_prev: likewise their last bar before the day):
    -- two one-minute scans of the ts index, hash-joined, instead of two probes per symbol.
    v_day := scan.session_start(v_newest);
    EXECUTE format('SELECT min(b.ts) FROM %s b WHERE b.timeframe = $1 AND b.ts >= $2', v_table)
       INTO v_first USING p_timeframe, v_day;
    EXECUTE format('SELECT max(b.ts) FROM %s b WHERE b.timeframe = $1 AND b.ts < $2', v_table)
       INTO v_prev USING p_timeframe, v_day;
    IF v_count > 0 AND v_first IS NOT NULL AND v_prev IS NOT NULL THEN
        EXECUTE format($q$
            WITH g AS (
                SELECT l.symbol, (l.ts AT TIME ZONE 'America/New_York')::date AS session_date, o.open,
                       p.ts AS prev_ts, p.close AS prev_close, 100 * (o.open / p.close - 1) AS gap_pct
                  FROM market.latest_bars l
                  JOIN %1$s o ON o.symbol = l.symbol AND o.timeframe = l.timeframe
                  JOIN %1$s p ON p.symbol = l.symbol AND p.timeframe = l.timeframe
                 WHERE l.timeframe = $1 AND l.ts >= $2 AND o.timeframe = $1 AND o.ts = $3
                   AND p.timeframe = $1 AND p.ts = $4)
            SELECT array_agg(g.symbol),
                   array_agg(g.symbol) FILTER (WHERE k.ok), array_agg(g.session_date) FILTER (WHERE k.ok),
                   array_agg(g.open) FILTER (WHERE k.ok), array_agg(g.prev_ts) FILTER (WHERE k.ok),
                   array_agg(g.prev_close) FILTER (WHERE k.ok)
              FROM g
             CROSS JOIN LATERAL (SELECT g.prev_close > 0 AND abs(g.gap_pct) >= $5
                                        AND scan.rank_key(g.gap_pct, $6) IS NOT NULL AS ok) k $q$, v_table)
           INTO t_settled, t_symbol, t_date, t_open, t_prev_ts, t_prev_close
           USING p_timeframe, v_day, v_first, v_prev, p_min_pct, p_direction;
        v_settled := coalesce(t_settled, '{}');
        v_symbol := coalesce(t_symbol, '{}');
        v_date := coalesce(t_date, '{}');
        v_open := coalesce(t_open, '{}');
        v_prev_ts := coalesce(t_prev_ts, '{}');
        v_prev_close := coalesce(t_prev_close, '{}');
    END IF;
    -- The others (a symbol that did not trade in the first or the last minute, a stale symbol):
    -- per-symbol probes in tiers.
    FOREACH v_lo IN ARRAY ARRAY[coalesce(scan.session_start(v_prev), '-infinity'), '-infinity'::timestamptz] LOOP
        EXIT WHEN cardinality(v_settled) >= v_count;
        v_last := v_lo = '-infinity';
        EXECUTE format(v_probe, v_table, 'market.latest_bars')
           INTO t_settled, t_symbol, t_date, t_open, t_prev_ts, t_prev_close
           USING p_timeframe, v_lo, v_settled, v_last, p_min_pct, p_direction;
        v_settled := v_settled || coalesce(t_settled, '{}');
        v_symbol := v_symbol || coalesce(t_symbol, '{}');
        v_date := v_date || coalesce(t_date, '{}');
        v_open := v_open || coalesce(t_open, '{}');
        v_prev_ts := v_prev_ts || coalesce(t_prev_ts, '{}');
        v_prev_close := v_prev_close || coalesce(t_prev_close, '{}');
        EXIT WHEN v_last OR cardinality(v_settled) >= v_count;
    END LOOP;
    IF scan.aggregate_view(p_timeframe) IS NOT NULL THEN
        EXECUTE format(v_probe, scan.aggregate_bars_sql(p_timeframe), format('scan.aggregate_latest(%L)', p_timeframe))
           INTO t_settled, t_symbol, t_date, t_open, t_prev_ts, t_prev_close
           USING p_timeframe, '-infinity'::timestamptz, '{}'::text[], true, p_min_pct, p_direction;
        v_symbol := v_symbol || coalesce(t_symbol, '{}');
        v_date := v_date || coalesce(t_date, '{}');
        v_open := v_open || coalesce(t_open, '{}');
        v_prev_ts := v_prev_ts || coalesce(t_prev_ts, '{}');
        v_prev_close := v_prev_close || coalesce(t_prev_close, '{}');
    END IF;
    RETURN QUERY
        SELECT g.symbol, g.session_date, g.open, g.prev_ts, g.prev_close, 100 * (g.open / g.prev_close - 1)
          FROM unnest(v_symbol, v_date, v_open, v_prev_ts, v_prev_close)
               AS g (symbol, session_date, open, prev_ts, prev_close)
         ORDER BY scan.rank_key(100 * (g.open / g.prev_close - 1), p_direction), g.symbol
         LIMIT p_limit;
END
$$;

-- The latest bar's high above the highest high (kind 'high'), or its low below the lowest low
-- (kind 'low'), of the p_days bars before it (all p_days must exist); an outside bar gives both.
-- With the default '1day' these are new N-session highs and lows. Served by the timeframe's bars
-- pkey: one backward probe of p_days entries per symbol; symbols scanned on the aggregate
-- (40_scan_helpers.sql) take the same probe on it.
CREATE OR REPLACE FUNCTION scan.new_highs_lows(p_days integer DEFAULT 52, p_timeframe text DEFAULT '1day')
RETURNS TABLE (symbol text, ts timestamptz, kind text, price double precision, prior_extreme double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    -- the new highs and lows of every symbol of latest source %1$s over its bars in bar source %2$s
    v_extremes text := $q$
        SELECT s.symbol, s.ts, x.kind, x.price, x.prior_extreme
          FROM (SELECT l.symbol, l.ts, l.high, l.low, h.max_high, h.min_low
                  FROM %1$s l
                 CROSS JOIN LATERAL (
                       SELECT max(p.high) AS max_high, min(p.low) AS min_low, count(*) AS n
                         FROM (SELECT b.high, b.low FROM %2$s b
                                WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < l.ts
                                ORDER BY b.ts DESC LIMIT $1) p) h
                 WHERE l.timeframe = $2 AND h.n = $1) s
         CROSS JOIN LATERAL (VALUES ('high', s.high, s.max_high), ('low', s.low, s.min_low))
               AS x (kind, price, prior_extreme)
         WHERE (x.kind = 'high' AND x.price > x.prior_extreme) OR (x.kind = 'low' AND x.price < x.prior_extreme) $q$;
    v_rows text;
BEGIN
    PERFORM scan.check_positive('days', p_days);
    v_rows := format(v_extremes, 'market.latest_bars', scan.bar_table(p_timeframe));
    IF scan.aggregate_view(p_timeframe) IS NOT NULL THEN
        v_rows := v_rows || ' UNION ALL ' || format(v_extremes, format('scan.aggregate_latest(%L)', p_timeframe),
                                                    scan.aggregate_bars_sql(p_timeframe));
    END IF;
    RETURN QUERY EXECUTE format('SELECT e.* FROM (%s) e ORDER BY e.kind, e.symbol', v_rows)
    USING p_days, p_timeframe;
END
$$;

-- Each symbol's newest feature row of the timeframe (the newest bar; between feature-set versions
-- of that bar, the most recently computed), or of p_feature_set when given; kept when its rsi is
-- >= p_above ('overbought') or <= p_below ('oversold'). A NULL rsi (window not yet full) is
-- neither. Served by features.bar_features_pkey: one backward probe per symbol. The symbols are
-- those with a latest bar of the timeframe, stored or, for a symbol scanned on the aggregate
-- (40_scan_helpers.sql), aggregated: features computed from aggregate bars are found too.
CREATE OR REPLACE FUNCTION scan.rsi_extremes(p_above double precision DEFAULT 70, p_below double precision DEFAULT 30,
                                  p_timeframe text DEFAULT '1day', p_feature_set text DEFAULT NULL)
RETURNS TABLE (symbol text, ts timestamptz, feature_set text, rsi double precision, kind text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_latest text := 'market.latest_bars';
BEGIN
    PERFORM scan.bar_table(p_timeframe);
    IF p_above IS NULL OR p_below IS NULL OR p_below < 0 OR p_above > 100 OR p_below >= p_above THEN
        RAISE EXCEPTION 'rsi bounds must satisfy 0 <= below < above <= 100, got below % and above %; '
                        'pass e.g. --below 30 --above 70', quote_nullable(p_below), quote_nullable(p_above)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scan.aggregate_view(p_timeframe) IS NOT NULL THEN
        v_latest := '(SELECT m.symbol, m.timeframe FROM market.latest_bars m WHERE m.timeframe = $3 '
                    'UNION ALL SELECT a.symbol, a.timeframe FROM scan.aggregate_latest($3) a)';
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT f.symbol, f.ts, f.feature_set, f.rsi,
               CASE WHEN f.rsi >= $1 THEN 'overbought' ELSE 'oversold' END
          FROM %s l
         CROSS JOIN LATERAL (
               SELECT b.symbol, b.ts, b.feature_set, b.rsi FROM features.bar_features b
                WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe
                  AND ($4::text IS NULL OR b.feature_set = $4)
                ORDER BY b.ts DESC, b.computed_at DESC LIMIT 1) f
         WHERE l.timeframe = $3 AND (f.rsi >= $1 OR f.rsi <= $2)
         ORDER BY f.rsi DESC, f.symbol $q$, v_latest)
    USING p_above, p_below, p_timeframe, p_feature_set;
END
$$;
