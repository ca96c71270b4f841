-- scan.volume_spikes: the tight tier of 0012 set-based (same signature, same results; compared with
-- the 0011 definition by tests/integration/scanners/test_scanner_rewrite.py).
--
-- 0012's tight tier still took one LATERAL probe per symbol (5,000 rescans of one chunk's primary
-- key: 250-330 ms at 5,000 symbols x 20 sessions). Here it is one range scan of the last p_lookback
-- bar lengths before the newest bar on the chunk's ts index, hash-joined to market.latest_bars and
-- aggregated per symbol: a symbol with exactly p_lookback bars in [its latest - p_lookback bar
-- lengths, its latest) has them as its p_lookback newest, so it is settled; the others go on to
-- 0012's wider tiers unchanged. Measured on the same 38.1M rows: the query alone 150-180 ms against
-- 250-280 ms for the LATERAL tier (load average 3-5). avg and stddev_samp stay on bigint (numeric
-- accumulation, exact and order-independent), so results match the per-symbol probes bit for bit.

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
    v_window := p_lookback * scan.bar_interval(p_timeframe);
    v_bounds := CASE WHEN p_timeframe = '1day' THEN ARRAY['-infinity'::timestamptz]
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
            v_rows := format($r$
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
                   AND NOT EXISTS (SELECT 1 FROM unnest($4::text[]) AS d (symbol) WHERE d.symbol = l.symbol)
                $r$, v_table);
        END IF;
        -- settled: the bounded probe found all p_lookback bars (they are then the newest ones), or
        -- this is the unbounded tier; candidates: settled and passing 0011's filters
        EXECUTE format($q$
            WITH r AS (%s),
            s AS (SELECT * FROM r WHERE r.n = $1 OR $5)
            SELECT array_agg(s.symbol),
                   array_agg(s.symbol) FILTER (WHERE k.ok), array_agg(s.ts) FILTER (WHERE k.ok),
                   array_agg(s.volume) FILTER (WHERE k.ok), array_agg(s.mean_volume) FILTER (WHERE k.ok),
                   array_agg(s.std_volume) FILTER (WHERE k.ok)
              FROM s
             CROSS JOIN LATERAL (SELECT s.n = $1 AND s.std_volume > 0
                                        AND (s.volume - s.mean_volume) / s.std_volume >= $6 AS ok) k $q$, v_rows)
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
    RETURN QUERY
        SELECT s.symbol, s.ts, s.volume, s.mean_volume, s.std_volume, (s.volume - s.mean_volume) / s.std_volume
          FROM unnest(v_symbol, v_ts, v_volume, v_mean, v_std) AS s (symbol, ts, volume, mean_volume, std_volume)
         ORDER BY (s.volume - s.mean_volume) / s.std_volume DESC, s.symbol
         LIMIT p_limit;
END
$$;
