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
