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
-- Definitions (the tests compute each one again in pandas):
--   * "latest" is per symbol: the symbol's own newest bar of the timeframe, not the newest in the table.
--   * changes and gaps are percentages: 100 * (new / old - 1).
--   * a scanner whose reference data is missing for a symbol (too little history, a zero price,
--     a zero standard deviation) leaves that symbol out rather than guessing.
--   * direction: 'up' keeps only positive changes (largest first), 'down' only negative ones
--     (most negative first), 'both' all of them by absolute size. Ties are broken by symbol.
--
-- Indexes, and the queries they serve (no index is added to the hypertables: each extra index on
-- a 2M-rows-a-session table costs every write, and the primary keys already serve every probe):
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
--   market.latest_bars_pkey (timeframe, symbol), below: scan.latest / every scanner's outer scan
--       "WHERE timeframe = $1 ORDER BY symbol", and the trigger's ON CONFLICT arbiter.

CREATE SCHEMA IF NOT EXISTS scan;

-- ---------------------------------------------------------------------------------------------
-- market.latest_bars: the latest bar of every (symbol, timeframe), kept by statement triggers.
--
-- Why a table: "latest bar per symbol" over 5,000 symbols and ~39M rows has no fast plan on the
-- hypertable itself. DISTINCT ON reads every row; a LATERAL "ORDER BY ts DESC LIMIT 1" per symbol
-- needs the list of symbols first (a skip scan PostgreSQL does not have) and still costs 5,000
-- probes. Statement-level AFTER triggers with transition tables (supported on hypertables by
-- TimescaleDB >= 2.x) fold each INSERT/COPY/UPDATE statement into this table with ONE set-based
-- upsert: the cost grows with the rows of the statement, not with the table, and the hot writer's
-- binary COPY and merge paths both fire them. The newest row per series is found by a hash
-- aggregate (max ts) joined back, not DISTINCT ON: sorting a 2M-row session spills with the default
-- work_mem and cost 13-29 % of the session's load; the aggregate costs within the noise (measured
-- by INSERT .. SELECT of 5,000 symbols x 390 minutes into hypertables with and without each
-- trigger). bench/storage.py measures the reads and the writer's overhead.
--
-- Consistency: the table changes in the writer's own transaction, so readers never see a bar
-- in one and not the other. A correction to the latest bar rewrites it (EXCLUDED.ts >= l.ts);
-- corrections to older bars leave it alone. DELETE recomputes the affected series from the
-- hypertable. drop_chunks (tiering) and TRUNCATE fire no row or statement triggers: a series
-- whose whole history was tiered keeps its last known bar here; market.refresh_latest_bars()
-- rebuilds the table from the hot store when that matters.
-- Writers touch rows in (symbol, timeframe) order, so concurrent writers queue rather than deadlock
-- within a statement; rows older than the stored latest bar are filtered out before the upsert, so
-- a backfill of old data takes no lock on the rows live ingestion keeps moving (ON CONFLICT DO
-- UPDATE locks the row even when its WHERE is false). fillfactor 50 leaves room for HOT updates: every new minute rewrites each row.
CREATE TABLE market.latest_bars (
    symbol        text             NOT NULL,
    timeframe     text             NOT NULL,
    ts            timestamptz      NOT NULL,
    open          double precision NOT NULL,
    high          double precision NOT NULL,
    low           double precision NOT NULL,
    close         double precision NOT NULL,
    volume        bigint           NOT NULL,
    vwap          double precision,
    trade_count   bigint,
    source        text             NOT NULL,
    quality_flags bigint           NOT NULL DEFAULT 0,
    ingested_at   timestamptz      NOT NULL,
    PRIMARY KEY (timeframe, symbol)
) WITH (fillfactor = 50);

CREATE FUNCTION market.latest_bars_upsert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO market.latest_bars AS l (symbol, timeframe, ts, open, high, low, close, volume, vwap,
                                         trade_count, source, quality_flags, ingested_at)
    SELECT n.symbol, n.timeframe, n.ts, n.open, n.high, n.low, n.close, n.volume, n.vwap,
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
CREATE FUNCTION market.latest_bars_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_symbols text[];
    v_timeframes text[];
BEGIN
    WITH gone AS (
        DELETE FROM market.latest_bars l
         USING (SELECT DISTINCT o.symbol, o.timeframe, o.ts FROM old_rows o) o
         WHERE l.symbol = o.symbol AND l.timeframe = o.timeframe AND l.ts = o.ts
        RETURNING l.symbol, l.timeframe)
    SELECT array_agg(g.symbol), array_agg(g.timeframe) INTO v_symbols, v_timeframes FROM gone g;
    IF v_symbols IS NOT NULL THEN
        EXECUTE format(
            'INSERT INTO market.latest_bars (symbol, timeframe, ts, open, high, low, close, volume, vwap,'
            '                                trade_count, source, quality_flags, ingested_at)'
            ' SELECT b.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume, b.vwap,'
            '        b.trade_count, b.source, b.quality_flags, b.ingested_at'
            '   FROM unnest($1::text[], $2::text[]) AS g (symbol, timeframe)'
            '   CROSS JOIN LATERAL (SELECT * FROM %s x WHERE x.symbol = g.symbol AND x.timeframe = g.timeframe'
            '                        ORDER BY x.ts DESC LIMIT 1) b',
            TG_RELID::regclass)
        USING v_symbols, v_timeframes;
    END IF;
    RETURN NULL;
END
$$;

-- PostgreSQL allows one event per trigger with transition tables, hence three per table.
CREATE TRIGGER latest_bars_on_insert AFTER INSERT ON market.bars_intraday
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.latest_bars_upsert();
CREATE TRIGGER latest_bars_on_update AFTER UPDATE ON market.bars_intraday
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.latest_bars_upsert();
CREATE TRIGGER latest_bars_on_delete AFTER DELETE ON market.bars_intraday
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION market.latest_bars_forget();
CREATE TRIGGER latest_bars_on_insert AFTER INSERT ON market.bars_daily
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.latest_bars_upsert();
CREATE TRIGGER latest_bars_on_update AFTER UPDATE ON market.bars_daily
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market.latest_bars_upsert();
CREATE TRIGGER latest_bars_on_delete AFTER DELETE ON market.bars_daily
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION market.latest_bars_forget();

-- Rebuild from the hot store (after drop_chunks, TRUNCATE or a restore); reads every bar once.
-- Returns the number of series.
CREATE FUNCTION market.refresh_latest_bars() RETURNS bigint
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
SELECT market.refresh_latest_bars();

-- ---------------------------------------------------------------------------------------------
-- Argument checks shared by the scanners: a bad argument is an error naming the value, what is
-- allowed and what to do (SQLSTATE 22023 invalid_parameter_value), never an empty result.

CREATE FUNCTION scan.bar_table(p_timeframe text) RETURNS regclass
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

CREATE FUNCTION scan.check_positive(p_name text, p_value double precision) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL OR p_value <= 0 THEN
        RAISE EXCEPTION '% must be a positive number, got %; pass a value > 0', p_name, quote_nullable(p_value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION scan.check_direction(p_direction text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_direction IS NULL OR p_direction NOT IN ('up', 'down', 'both') THEN
        RAISE EXCEPTION 'unknown direction %; use up, down or both', quote_nullable(p_direction)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The order of a ranked change under a direction (smallest key first), NULL when it is filtered out.
CREATE FUNCTION scan.rank_key(p_change double precision, p_direction text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_direction
               WHEN 'up' THEN CASE WHEN p_change > 0 THEN -p_change END
               WHEN 'down' THEN CASE WHEN p_change < 0 THEN p_change END
               ELSE -abs(p_change)
           END
$$;

-- ---------------------------------------------------------------------------------------------
-- Scanners

CREATE VIEW scan.latest_bars AS
    SELECT symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source, quality_flags
      FROM market.latest_bars;

-- Served by market.latest_bars_pkey (timeframe, symbol).
CREATE FUNCTION scan.latest(p_timeframe text DEFAULT '1min')
RETURNS SETOF scan.latest_bars
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM scan.bar_table(p_timeframe);
    RETURN QUERY SELECT * FROM scan.latest_bars l WHERE l.timeframe = p_timeframe ORDER BY l.symbol;
END
$$;

-- Latest close vs the close of the last bar at or before (latest ts - N minutes), per symbol.
-- Two steps, because 5,000 index probes cost more than one range scan: symbols whose reference bar
-- sits exactly N minutes before their latest bar (every symbol that traded in the latest minute
-- and N minutes earlier) are found by ONE scan of the minute or two around (newest ts - N) on
-- bars_intraday_ts_idx (ts DESC, TimescaleDB's default index, excluded to one chunk at run time),
-- hash-joined to market.latest_bars; only the others (a stale symbol, a missing minute, N reaching
-- into the previous session) take a backward probe of bars_intraday_pkey (symbol, timeframe, ts).
CREATE FUNCTION scan.top_movers_minutes(p_minutes integer, p_limit integer DEFAULT 20,
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

-- Latest daily close vs the daily close N sessions (daily bars) before it, per symbol.
-- Served by market.bars_daily_pkey: one backward probe of N+1 entries per symbol.
CREATE FUNCTION scan.top_movers_sessions(p_sessions integer, p_limit integer DEFAULT 20,
                                         p_direction text DEFAULT 'both')
RETURNS TABLE (symbol text, ts_from timestamptz, ts_to timestamptz, close_from double precision,
               close_to double precision, change_pct double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    PERFORM scan.check_positive('sessions', p_sessions);
    PERFORM scan.check_positive('limit', p_limit);
    PERFORM scan.check_direction(p_direction);
    RETURN QUERY
        SELECT m.symbol, m.ts_from, m.ts_to, m.close_from, m.close_to, m.change_pct
          FROM (SELECT l.symbol, r.ts AS ts_from, l.ts AS ts_to, r.close AS close_from, l.close AS close_to,
                       100 * (l.close / r.close - 1) AS change_pct
                  FROM market.latest_bars l
                 CROSS JOIN LATERAL (
                       SELECT b.ts, b.close FROM market.bars_daily b
                        WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < l.ts
                        ORDER BY b.ts DESC OFFSET p_sessions - 1 LIMIT 1) r
                 WHERE l.timeframe = '1day' AND r.close > 0) m
         WHERE scan.rank_key(m.change_pct, p_direction) IS NOT NULL
         ORDER BY scan.rank_key(m.change_pct, p_direction), m.symbol
         LIMIT p_limit;
END
$$;

-- z = (latest volume - mean) / sample standard deviation of the p_lookback bars before the latest
-- (all p_lookback of them must exist). Served by the timeframe's bars pkey: one backward probe of
-- p_lookback entries per symbol.
CREATE FUNCTION scan.volume_spikes(p_lookback integer DEFAULT 20, p_min_z double precision DEFAULT 3,
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
CREATE FUNCTION scan.opening_gaps(p_min_pct double precision DEFAULT 2, p_direction text DEFAULT 'both',
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

-- The latest bar's high above the highest high (kind 'high'), or its low below the lowest low
-- (kind 'low'), of the p_days bars before it (all p_days must exist); an outside bar gives both.
-- With the default '1day' these are new N-session highs and lows. Served by the timeframe's bars
-- pkey: one backward probe of p_days entries per symbol.
CREATE FUNCTION scan.new_highs_lows(p_days integer DEFAULT 52, p_timeframe text DEFAULT '1day')
RETURNS TABLE (symbol text, ts timestamptz, kind text, price double precision, prior_extreme double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    PERFORM scan.check_positive('days', p_days);
    RETURN QUERY EXECUTE format($q$
        SELECT s.symbol, s.ts, x.kind, x.price, x.prior_extreme
          FROM (SELECT l.symbol, l.ts, l.high, l.low, h.max_high, h.min_low
                  FROM market.latest_bars l
                 CROSS JOIN LATERAL (
                       SELECT max(p.high) AS max_high, min(p.low) AS min_low, count(*) AS n
                         FROM (SELECT b.high, b.low FROM %s b
                                WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe AND b.ts < l.ts
                                ORDER BY b.ts DESC LIMIT $1) p) h
                 WHERE l.timeframe = $2 AND h.n = $1) s
         CROSS JOIN LATERAL (VALUES ('high', s.high, s.max_high), ('low', s.low, s.min_low))
               AS x (kind, price, prior_extreme)
         WHERE (x.kind = 'high' AND x.price > x.prior_extreme) OR (x.kind = 'low' AND x.price < x.prior_extreme)
         ORDER BY x.kind, s.symbol $q$, scan.bar_table(p_timeframe))
    USING p_days, p_timeframe;
END
$$;

-- Each symbol's newest feature row of the timeframe (the newest bar; between feature-set versions
-- of that bar, the most recently computed), or of p_feature_set when given; kept when its rsi is
-- >= p_above ('overbought') or <= p_below ('oversold'). A NULL rsi (window not yet full) is
-- neither. Served by features.bar_features_pkey: one backward probe per symbol.
CREATE FUNCTION scan.rsi_extremes(p_above double precision DEFAULT 70, p_below double precision DEFAULT 30,
                                  p_timeframe text DEFAULT '1day', p_feature_set text DEFAULT NULL)
RETURNS TABLE (symbol text, ts timestamptz, feature_set text, rsi double precision, kind text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    PERFORM scan.bar_table(p_timeframe);
    IF p_above IS NULL OR p_below IS NULL OR p_below < 0 OR p_above > 100 OR p_below >= p_above THEN
        RAISE EXCEPTION 'rsi bounds must satisfy 0 <= below < above <= 100, got below % and above %; '
                        'pass e.g. --below 30 --above 70', quote_nullable(p_below), quote_nullable(p_above)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        SELECT f.symbol, f.ts, f.feature_set, f.rsi,
               CASE WHEN f.rsi >= p_above THEN 'overbought' ELSE 'oversold' END
          FROM market.latest_bars l
         CROSS JOIN LATERAL (
               SELECT b.symbol, b.ts, b.feature_set, b.rsi FROM features.bar_features b
                WHERE b.symbol = l.symbol AND b.timeframe = l.timeframe
                  AND (p_feature_set IS NULL OR b.feature_set = p_feature_set)
                ORDER BY b.ts DESC, b.computed_at DESC LIMIT 1) f
         WHERE l.timeframe = p_timeframe AND (f.rsi >= p_above OR f.rsi <= p_below)
         ORDER BY f.rsi DESC, f.symbol;
END
$$;
