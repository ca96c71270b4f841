-- Helpers the scanners (50_scanners.sql) share: argument checks, the bar table of a timeframe,
-- ranking under a direction, and the session arithmetic of the bounded probes.

-- Argument checks shared by the scanners: a bad argument is an error naming the value, what is
-- allowed and what to do (SQLSTATE 22023 invalid_parameter_value), never an empty result.

-- The hypertable holding a timeframe's bars.
CREATE OR REPLACE FUNCTION scan.bar_table(p_timeframe text) RETURNS regclass
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_timeframe = '1day' THEN
        RETURN 'market.bars_daily'::regclass;
    ELSIF p_timeframe IN ('1min', '5min', '15min', '1hour') THEN
        RETURN 'market.bars_intraday'::regclass;
    END IF;
    RAISE EXCEPTION 'unknown timeframe %; use 1min, 5min, 15min, 1hour or 1day', quote_nullable(p_timeframe)
        USING ERRCODE = 'invalid_parameter_value';
END
$$;

CREATE OR REPLACE FUNCTION scan.check_positive(p_name text, p_value double precision) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL OR p_value <= 0 THEN
        RAISE EXCEPTION '% must be a positive number, got %; pass a value > 0', p_name, quote_nullable(p_value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION scan.check_direction(p_direction text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_direction IS NULL OR p_direction NOT IN ('up', 'down', 'both') THEN
        RAISE EXCEPTION 'unknown direction %; use up, down or both', quote_nullable(p_direction)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The order of a ranked change under a direction (smallest key first), NULL when it is filtered out.
CREATE OR REPLACE FUNCTION scan.rank_key(p_change double precision, p_direction text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_direction
               WHEN 'up' THEN CASE WHEN p_change > 0 THEN -p_change END
               WHEN 'down' THEN CASE WHEN p_change < 0 THEN p_change END
               ELSE -abs(p_change)
           END
$$;

-- New York midnight of the session (date) that contains p_ts: where a session's bars start.
CREATE OR REPLACE FUNCTION scan.session_start(p_ts timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((p_ts AT TIME ZONE 'America/New_York')::date::timestamp AT TIME ZONE 'America/New_York')
$$;

-- The start (New York midnight) of the last session before p_ts's session that has bars of
-- p_timeframe in p_table, or -infinity when there is none. max(ts) under a constant bound: one
-- backward step on the newest chunk's ts index that is older than the bound.
CREATE OR REPLACE FUNCTION scan.previous_session_start(p_table regclass, p_timeframe text, p_ts timestamptz)
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
CREATE OR REPLACE FUNCTION scan.bar_interval(p_timeframe text) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_timeframe WHEN '1min' THEN interval '1 minute' WHEN '5min' THEN interval '5 minutes'
                            WHEN '15min' THEN interval '15 minutes' WHEN '1hour' THEN interval '1 hour'
                            WHEN '1day' THEN interval '1 day' END
$$;

-- Scanning the continuous aggregates (70_continuous_aggregates.sql, full edition only).
--
-- The rule, per symbol: a symbol with no stored bar of an aggregated timeframe (5min, 15min, 1hour,
-- 1day; no row of it in market.latest_bars) but with stored 1-minute bars is scanned on the
-- aggregate of its minutes; a symbol with stored bars of the timeframe is scanned on them alone,
-- exactly as before. It is storage/aggregates.py's rule (a stored bar wins over the buckets it
-- overlaps, the aggregate fills the rest) at the granularity of a symbol: for a symbol with no
-- stored bar of the timeframe the rule gives the aggregate alone, which is what the scanner reads;
-- a symbol whose stored bars cover only some sessions is scanned on those (read_bars would fill
-- the other sessions from the aggregate; the scanners do not mix the two within a symbol, so
-- their fast paths over market.latest_bars stay as they were). Aggregate bars carry source
-- '<vendor>/1min' (as read_bars gives them) and quality_flags 0.

-- The continuous aggregate holding p_timeframe's bars, or NULL: for 1min, and on the Apache
-- edition, where the views do not exist (so no function here names a view statically).
CREATE OR REPLACE FUNCTION scan.aggregate_view(p_timeframe text) RETURNS regclass
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_timeframe IN ('5min', '15min', '1hour', '1day')
                THEN to_regclass('market.bars_agg_' || p_timeframe) END
$$;

-- A subquery over the aggregate of p_timeframe in the columns of the bar hypertables (vwap from
-- the volume-weighted sums), to stand where a scanner names its bar table; NULL without the view.
CREATE OR REPLACE FUNCTION scan.aggregate_bars_sql(p_timeframe text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT format($f$(SELECT a.symbol, %L::text AS timeframe, a.ts, a.open, a.high, a.low, a.close, a.volume,
                             CASE WHEN a.pv_volume > 0 THEN a.pv / a.pv_volume END AS vwap, a.trade_count,
                             a.source || '/1min' AS source, 0::bigint AS quality_flags
                        FROM %s a)$f$, p_timeframe, v.view)
      FROM (SELECT scan.aggregate_view(p_timeframe) AS view) v
     WHERE v.view IS NOT NULL
$$;

-- The latest aggregate bar of p_timeframe of every symbol the rule above sends to the aggregate
-- (stored 1-minute bars, no stored bar of p_timeframe), in the columns of scan.latest_bars; no rows
-- without the view. Symbols come from market.latest_bars (an anti-join on its primary key). Their
-- newest buckets are found by one range read of the aggregate from the start of the newest
-- minute's session (a symbol with a bucket there has its newest there); the others (a stale
-- symbol, one whose latest minutes lie outside the regular session) by a backward probe each.
CREATE OR REPLACE FUNCTION scan.aggregate_latest(p_timeframe text)
RETURNS TABLE (symbol text, timeframe text, ts timestamptz, open double precision, high double precision,
               low double precision, close double precision, volume bigint, vwap double precision,
               trade_count bigint, source text, quality_flags bigint)
LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    v_bars text := scan.aggregate_bars_sql(p_timeframe);
    v_symbols text[];
    v_newest timestamptz;
BEGIN
    IF v_bars IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(m.symbol), max(m.ts) INTO v_symbols, v_newest
      FROM market.latest_bars m
     WHERE m.timeframe = '1min'
       AND NOT EXISTS (SELECT 1 FROM market.latest_bars s WHERE s.timeframe = p_timeframe AND s.symbol = m.symbol);
    IF v_symbols IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH recent AS (
            SELECT DISTINCT ON (b.symbol) b.* FROM %1$s b
             WHERE b.symbol = ANY ($1) AND b.ts >= $2
             ORDER BY b.symbol, b.ts DESC)
        SELECT * FROM recent
        UNION ALL
        SELECT x.* FROM unnest($1) AS s (symbol)
         CROSS JOIN LATERAL (SELECT b.* FROM %1$s b WHERE b.symbol = s.symbol ORDER BY b.ts DESC LIMIT 1) x
         WHERE NOT EXISTS (SELECT 1 FROM recent r WHERE r.symbol = s.symbol) $q$, v_bars)
    USING v_symbols, scan.session_start(v_newest);
END
$$;
