-- Faster top movers over minutes, volume spikes and opening gaps (same signatures, same results as
-- 0011_scanners.sql; tests/integration/scanners/test_scanner_rewrite.py compares them with the
-- 0011 definitions on the same data).
--
-- Why 0011's versions grew with the number of chunks: every per-symbol probe
-- ("ORDER BY ts DESC LIMIT k" with the symbol's own ts as the bound) is a parameter the planner
-- cannot see, so the plan holds every chunk of the hypertable and TimescaleDB's ChunkAppend opens
-- (and runtime-excludes) all of them on each of the 5,000 rescans: ~20 us per chunk per symbol,
-- measured at 20 chunks as 0.45 ms per symbol before the first row, against 0.02 ms for the index
-- scan itself. The scanners' plans also crossed jit_above_cost at 5,000 symbols, and JIT
-- compilation costs more than these index probes ever do.
--
-- What changes: each function first computes its time bounds from market.latest_bars (a few
-- hundred kB) and runs its range query with EXECUTE .. USING, so the bounds are constants at plan
-- time and the planner keeps only the chunks inside them (plan-time chunk exclusion). Per-symbol
-- probes run in tiers of widening lower bounds:
--   1. tight: the minutes the scanner needs when the symbol traded in every one of them
--      (one chunk);
--   2. from the start of the previous session that has bars (scan.previous_session_start: one
--      backward step on the ts index; chunks without bars do not exist, so this is two or three
--      chunks whatever the weekend or holiday);
--   3. unbounded, 0011's probe exactly, for the symbols still unresolved (a stale symbol, a long
--      gap).
-- A symbol is settled in the first tier whose bounded probe provably returns what the unbounded
-- probe would (it found its k newest bars, or its bar before the session, inside the bound); the
-- later tiers probe only the unsettled symbols. Results are collected in arrays and ranked once.
-- jit = off on the three functions: index probes of a few rows each never repay a compilation.
--
-- Indexes: none added; the same primary keys and ts index serve the same probes as in 0011.

-- New York midnight of the session (date) that contains p_ts: where a session's bars start.
CREATE FUNCTION scan.session_start(p_ts timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((p_ts AT TIME ZONE 'America/New_York')::date::timestamp AT TIME ZONE 'America/New_York')
$$;

-- The start (New York midnight) of the last session before p_ts's session that has bars of
-- p_timeframe in p_table, or -infinity when there is none. max(ts) under a constant bound: one
-- backward step on the newest chunk's ts index that is older than the bound.
CREATE FUNCTION scan.previous_session_start(p_table regclass, p_timeframe text, p_ts timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_prev timestamptz;
BEGIN
    EXECUTE format('SELECT max(b.ts) FROM %s b WHERE b.timeframe = $1 AND b.ts < $2', p_table)
       INTO v_prev USING p_timeframe, scan.session_start(p_ts);
    RETURN coalesce(scan.session_start(v_prev), '-infinity'::timestamptz);
END
$$;

-- The length of one bar of an intraday timeframe.
CREATE FUNCTION scan.bar_interval(p_timeframe text) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_timeframe WHEN '1min' THEN interval '1 minute' WHEN '5min' THEN interval '5 minutes'
                            WHEN '15min' THEN interval '15 minutes' WHEN '1hour' THEN interval '1 hour'
                            WHEN '1day' THEN interval '1 day' END
$$;

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
    IF v_count = 0 THEN
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
        EXECUTE $q$
            SELECT array_agg(l.symbol), array_agg(f.ts), array_agg(l.ts), array_agg(f.close), array_agg(l.close)
              FROM market.latest_bars l
             CROSS JOIN LATERAL (
                   SELECT b.ts, b.close FROM market.bars_intraday b
                    WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts <= l.ts - $2 AND b.ts >= $3
                    ORDER BY b.ts DESC LIMIT 1) f
             WHERE l.timeframe = $1
               AND NOT EXISTS (SELECT 1 FROM unnest($4::text[]) AS d (symbol) WHERE d.symbol = l.symbol) $q$
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
    RETURN QUERY
        SELECT m.symbol, m.ts_from, m.ts_to, m.close_from, m.close_to, 100 * (m.close_to / m.close_from - 1)
          FROM unnest(v_symbol, v_from, v_to, v_close_from, v_close_to) AS m (symbol, ts_from, ts_to, close_from, close_to)
         WHERE m.close_from > 0
           AND scan.rank_key(100 * (m.close_to / m.close_from - 1), p_direction) IS NOT NULL
         ORDER BY scan.rank_key(100 * (m.close_to / m.close_from - 1), p_direction), m.symbol
         LIMIT p_limit;
END
$$;

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
    IF v_count = 0 THEN
        RETURN;
    END IF;
    -- daily bars skip weekends and holidays: no tight bound is cheap to state, 0011's probe it is
    v_bounds := CASE WHEN p_timeframe = '1day' THEN ARRAY['-infinity'::timestamptz]
                     ELSE ARRAY[v_newest - p_lookback * scan.bar_interval(p_timeframe),
                                scan.previous_session_start(v_table, p_timeframe, v_newest),
                                '-infinity'::timestamptz] END;
    FOREACH v_lo IN ARRAY v_bounds LOOP
        v_last := v_lo = '-infinity';
        -- settled: the bounded probe found all p_lookback bars (they are then the newest ones), or
        -- this is the unbounded tier; candidates: settled and passing 0011's filters
        EXECUTE format($q$
            WITH r AS (
                SELECT l.symbol, l.ts, l.volume, h.mean_volume, h.std_volume, h.n
                  FROM market.latest_bars l
                 CROSS JOIN LATERAL (
                       SELECT avg(p.volume)::double precision AS mean_volume,
                              stddev_samp(p.volume)::double precision AS std_volume, count(*) AS n
                         FROM (SELECT b.volume FROM %s b
                                WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < l.ts
                                  AND b.ts >= $3
                                ORDER BY b.ts DESC LIMIT $1) p) h
                 WHERE l.timeframe = $2
                   AND NOT EXISTS (SELECT 1 FROM unnest($4::text[]) AS d (symbol) WHERE d.symbol = l.symbol)),
            s AS (SELECT * FROM r WHERE r.n = $1 OR $5)
            SELECT array_agg(s.symbol),
                   array_agg(s.symbol) FILTER (WHERE k.ok), array_agg(s.ts) FILTER (WHERE k.ok),
                   array_agg(s.volume) FILTER (WHERE k.ok), array_agg(s.mean_volume) FILTER (WHERE k.ok),
                   array_agg(s.std_volume) FILTER (WHERE k.ok)
              FROM s
             CROSS JOIN LATERAL (SELECT s.n = $1 AND s.std_volume > 0
                                        AND (s.volume - s.mean_volume) / s.std_volume >= $6 AS ok) k $q$, v_table)
           INTO t_settled, t_symbol, t_ts, t_volume, t_mean, t_std
           USING p_lookback, p_timeframe, v_lo, v_settled, v_last, p_min_z;
        v_settled := v_settled || coalesce(t_settled, '{}');
        v_symbol := v_symbol || coalesce(t_symbol, '{}');
        v_ts := v_ts || coalesce(t_ts, '{}');
        v_volume := v_volume || coalesce(t_volume, '{}');
        v_mean := v_mean || coalesce(t_mean, '{}');
        v_std := v_std || coalesce(t_std, '{}');
        EXIT WHEN v_last OR cardinality(v_settled) >= v_count;
    END LOOP;
    RETURN QUERY
        SELECT s.symbol, s.ts, s.volume, s.mean_volume, s.std_volume, (s.volume - s.mean_volume) / s.std_volume
          FROM unnest(v_symbol, v_ts, v_volume, v_mean, v_std) AS s (symbol, ts, volume, mean_volume, std_volume)
         ORDER BY (s.volume - s.mean_volume) / s.std_volume DESC, s.symbol
         LIMIT p_limit;
END
$$;

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
    IF v_count = 0 THEN
        RETURN;
    END IF;
    -- Symbols whose latest bar is in the newest session and that have a bar at the session's first
    -- stored instant (v_first: no symbol has an earlier bar that day, so it is theirs too) and at
    -- the previous session's last stored instant (v_prev: likewise their last bar before the day):
    -- two one-minute scans of the ts index, hash-joined, instead of two probes per symbol.
    v_day := scan.session_start(v_newest);
    EXECUTE format('SELECT min(b.ts) FROM %s b WHERE b.timeframe = $1 AND b.ts >= $2', v_table)
       INTO v_first USING p_timeframe, v_day;
    EXECUTE format('SELECT max(b.ts) FROM %s b WHERE b.timeframe = $1 AND b.ts < $2', v_table)
       INTO v_prev USING p_timeframe, v_day;
    IF v_first IS NOT NULL AND v_prev IS NOT NULL THEN
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
        -- settled: the symbol's session starts inside the bound (so its first bar is too) and its
        -- previous bar was found inside it, or this is the unbounded tier
        EXECUTE format($q$
            WITH r AS (
                SELECT l.symbol, d.session_date, d.day_start, o.open, p.ts AS prev_ts, p.close AS prev_close
                  FROM market.latest_bars l
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
                                        AND scan.rank_key(g.gap_pct, $6) IS NOT NULL AS ok) k $q$, v_table)
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
    RETURN QUERY
        SELECT g.symbol, g.session_date, g.open, g.prev_ts, g.prev_close, 100 * (g.open / g.prev_close - 1)
          FROM unnest(v_symbol, v_date, v_open, v_prev_ts, v_prev_close)
               AS g (symbol, session_date, open, prev_ts, prev_close)
         ORDER BY scan.rank_key(100 * (g.open / g.prev_close - 1), p_direction), g.symbol
         LIMIT p_limit;
END
$$;
