-- edition: timescale
-- 5min, 15min, 1hour and 1day bars aggregated from the stored 1-minute bars: hierarchical
-- continuous aggregates (TimescaleDB's full edition), each level built on the one below it:
--
--   market.bars_intraday_store (timeframe '1min') -> market.bars_agg_5min -> market.bars_agg_15min
--                                           -> market.bars_agg_1hour -> market.bars_agg_1day
--
-- A user asking for 5-minute bars gets them from here when 1-minute bars are stored, without a
-- vendor fetch; StorageRouter.read_bars (storage/router.py, storage/aggregates.py) decides which
-- wins when the hot store also holds the vendor's own bars of the timeframe (they do, for every
-- bucket their window overlaps; the aggregate fills the rest). Each level reads the level below,
-- so a minute is aggregated once, not four times, and every level is a multiple of the one below
-- (TimescaleDB's rule for hierarchies: 5 | 15 | 60 | one day).
--
-- How the buckets match the vendors' own bars (sandbox/market.py, Market.bars; Polygon and
-- Alpaca, whose minute bars the pipeline stores):
--   * intraday windows are aligned to the clock, not to the session open: 09:30, 09:35, ... for
--     5min and 15min (the same either way: 09:30 is a multiple of 15 minutes) and 09:00 (holding
--     09:30-09:59), 10:00, ... 15:00 for 1hour. time_bucket's default origin (Monday
--     2000-01-03 00:00 UTC) gives exactly that, and since New York's offset from UTC is a whole
--     number of hours, UTC hours are New York hours. Yahoo anchors hours at the open (09:30,
--     10:30, ...): a stored Yahoo 1hour bar overlaps two aggregate buckets and wins over both.
--   * a day is the New York date: time_bucket('1 day', ts, 'America/New_York') starts at local
--     midnight, where the vendors stamp their daily bars, and follows DST (a bucket of 23 or 25
--     hours). TimescaleDB counts a bucket with a time zone as variable-width; a variable bucket
--     may sit on a fixed one (1day on 1hour), never the reverse, and a 1 hour bucket never straddles
--     a New York midnight.
--   * only regular-session minutes count: the vendors' multi-minute and daily bars are built from
--     the regular session's minutes (09:30-16:00, 09:30-13:00 on half days such as 2025-12-24 and
--     2026-11-27). Validation (quality/validate.py) flags a stored minute outside its date's
--     regular session with OUTSIDE_SESSION (16) against the NYSE calendar, half days included, so
--     the filter `quality_flags & 16 = 0` keeps exactly the regular session without a calendar
--     table; pre- and post-market minutes (stored flagged in lenient mode) are left out of every
--     level. Other flags (a price spike, say) do not exclude a minute: it is still the vendor's
--     trade, and the vendor's bars include it.
--   * open is the first minute's open, close the last minute's close (first()/last() by ts), high
--     and low the extremes, volume and trade_count sums. vwap is volume-weighted:
--     sum(vwap * volume) / sum(volume) over the minutes that carry a vwap; each level keeps the
--     two sums (pv, pv_volume) so the level above re-weights exact sums, never rounded averages.
--     The vendors round vwap to 4 decimals on the wire; the aggregate keeps full precision.
--     (The sandbox's own daily bars carry vwap = (O+H+L+C)/4, not a volume-weighted price; their
--     minute-built bars are volume-weighted like these.) `minutes` counts the minutes behind a
--     bucket: fewer than the bucket's length means a gap in the stored minutes, or a bucket the
--     session only partly covers (the close at 13:00 on a half day, the 09:00 hour).
--   * `source` is the minutes' vendor (min(source), one vendor per symbol in practice).
--
-- Real-time aggregation (materialized_only = false): a read sees buckets past the last refresh
-- computed from the level below at query time, so bars ingested a minute ago are in the 5min bars
-- now, not after the next policy run. Materialized buckets are served from the aggregate's own
-- hypertable.
--
-- Refresh policies. Each refreshes the window [now - start_offset, now - end_offset]:
--   end_offset is one bucket: the bucket still filling is left to real-time aggregation instead of
--     being materialized and invalidated again every run;
--   start_offset is 3 days for every level (at least two buckets plus end_offset, which
--     TimescaleDB requires of 1day: 1 day + 2 days). A refresh recomputes its window from the raw
--     rows it finds, so it must never reach a range that tiering (storage/tiering.py) has exported
--     to the lake and dropped: TimescaleDB logs a dropped chunk's range as an invalidation, and a
--     refresh over it would materialize emptiness where the bars were. 3 days stays below any
--     sensible storage.routing.hot_data_days (default 30) and covers a weekend of late corrections.
--   Late data older than 3 days (a historical backfill, a correction) is logged as an invalidation
--   and left to an explicit refresh over the written range inside the hot window:
--   storage.aggregates.refresh_bar_aggregates, which clips the range to the hot window for the
--   same reason, refreshes the levels bottom-up (force => true) and is what a backfill should call.
--   TimescaleDB 2.28.3 records no invalidation for rows COPYed into market.bars_intraday_store (its
--   transition-table trigger sends COPY down the row-by-row path, which skips the cagg log): the hot
--   writer's COPY path records one itself (storage/hot.py, _invalidate_aggregates).
--   schedule_interval: the 5min and 15min levels every 5 and 15 minutes (intraday readers want
--   them fresh), 1hour and 1day hourly; between runs real-time aggregation covers the gap.
--
-- The first level reads the store, whose prices are ticks of 1/10,000 dollar (0023_bar_price_ticks.sql;
-- a continuous aggregate must sit on a hypertable, not on the view in dollars): each price
-- aggregate converts to dollars (max/min/first/last of ticks, then / 10000: the same double as the
-- view's), and pv multiplies the vwap in dollars, so every level holds dollars as before.
--
-- Idempotent like every routine: CREATE .. IF NOT EXISTS WITH NO DATA (the first refresh is the
-- policy's or refresh_bar_aggregates'), policies if_not_exists. Changing a view's definition
-- needs a DROP MATERIALIZED VIEW of it and the levels above it (CASCADE) in this file, and a
-- refresh afterwards: a continuous aggregate cannot be replaced in place.

CREATE MATERIALIZED VIEW IF NOT EXISTS market.bars_agg_5min
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT b.symbol,
       time_bucket(INTERVAL '5 minutes', b.ts) AS ts,
       first(b.open, b.ts)::float8 / 10000 AS open,
       max(b.high)::float8 / 10000 AS high,
       min(b.low)::float8 / 10000 AS low,
       last(b.close, b.ts)::float8 / 10000 AS close,
       sum(b.volume)::bigint AS volume,
       sum(b.trade_count)::bigint AS trade_count,
       sum(b.vwap::float8 / 10000 * b.volume) AS pv,
       sum(CASE WHEN b.vwap IS NOT NULL THEN b.volume END)::bigint AS pv_volume,
       min(b.source) AS source,
       count(*) AS minutes
  FROM market.bars_intraday_store b
 WHERE b.timeframe = '1min' AND b.quality_flags & 16 = 0
 GROUP BY b.symbol, time_bucket(INTERVAL '5 minutes', b.ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS market.bars_agg_15min
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT a.symbol,
       time_bucket(INTERVAL '15 minutes', a.ts) AS ts,
       first(a.open, a.ts) AS open,
       max(a.high) AS high,
       min(a.low) AS low,
       last(a.close, a.ts) AS close,
       sum(a.volume)::bigint AS volume,
       sum(a.trade_count)::bigint AS trade_count,
       sum(a.pv) AS pv,
       sum(a.pv_volume)::bigint AS pv_volume,
       min(a.source) AS source,
       sum(a.minutes)::bigint AS minutes
  FROM market.bars_agg_5min a
 GROUP BY a.symbol, time_bucket(INTERVAL '15 minutes', a.ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS market.bars_agg_1hour
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT a.symbol,
       time_bucket(INTERVAL '1 hour', a.ts) AS ts,
       first(a.open, a.ts) AS open,
       max(a.high) AS high,
       min(a.low) AS low,
       last(a.close, a.ts) AS close,
       sum(a.volume)::bigint AS volume,
       sum(a.trade_count)::bigint AS trade_count,
       sum(a.pv) AS pv,
       sum(a.pv_volume)::bigint AS pv_volume,
       min(a.source) AS source,
       sum(a.minutes)::bigint AS minutes
  FROM market.bars_agg_15min a
 GROUP BY a.symbol, time_bucket(INTERVAL '1 hour', a.ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS market.bars_agg_1day
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT a.symbol,
       time_bucket(INTERVAL '1 day', a.ts, 'America/New_York') AS ts,
       first(a.open, a.ts) AS open,
       max(a.high) AS high,
       min(a.low) AS low,
       last(a.close, a.ts) AS close,
       sum(a.volume)::bigint AS volume,
       sum(a.trade_count)::bigint AS trade_count,
       sum(a.pv) AS pv,
       sum(a.pv_volume)::bigint AS pv_volume,
       min(a.source) AS source,
       sum(a.minutes)::bigint AS minutes
  FROM market.bars_agg_1hour a
 GROUP BY a.symbol, time_bucket(INTERVAL '1 day', a.ts, 'America/New_York')
WITH NO DATA;

SELECT add_continuous_aggregate_policy('market.bars_agg_5min', start_offset => INTERVAL '3 days',
       end_offset => INTERVAL '5 minutes', schedule_interval => INTERVAL '5 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('market.bars_agg_15min', start_offset => INTERVAL '3 days',
       end_offset => INTERVAL '15 minutes', schedule_interval => INTERVAL '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('market.bars_agg_1hour', start_offset => INTERVAL '3 days',
       end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => true);
SELECT add_continuous_aggregate_policy('market.bars_agg_1day', start_offset => INTERVAL '3 days',
       end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour', if_not_exists => true);

-- The bars of one aggregated timeframe for some symbols over [p_start, p_end), in the columns of
-- market.adjusted_bars (raw), with vwap = pv / pv_volume. One function so readers name a timeframe,
-- not a view; the range is stated on ts of the view, which TimescaleDB pushes down to the
-- materialized hypertable's chunks and, for the real-time part, to the level below.
CREATE OR REPLACE FUNCTION market.aggregated_bars(p_symbols text[], p_start timestamptz, p_end timestamptz,
                                                  p_timeframe text)
RETURNS TABLE (symbol text, timeframe text, ts timestamptz, open double precision, high double precision,
               low double precision, close double precision, volume bigint, vwap double precision,
               trade_count bigint, source text, minutes bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_view regclass;
BEGIN
    v_view := CASE p_timeframe WHEN '5min' THEN 'market.bars_agg_5min'::regclass
                               WHEN '15min' THEN 'market.bars_agg_15min'::regclass
                               WHEN '1hour' THEN 'market.bars_agg_1hour'::regclass
                               WHEN '1day' THEN 'market.bars_agg_1day'::regclass END;
    IF v_view IS NULL THEN
        RAISE EXCEPTION 'no continuous aggregate of timeframe %; aggregated timeframes are 5min, 15min, 1hour and 1day',
            quote_nullable(p_timeframe) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT a.symbol, $4, a.ts, a.open, a.high, a.low, a.close, a.volume,
               CASE WHEN a.pv_volume > 0 THEN a.pv / a.pv_volume END, a.trade_count, a.source, a.minutes
          FROM %s a
         WHERE a.symbol = ANY ($1) AND a.ts >= $2 AND a.ts < $3
         ORDER BY a.symbol, a.ts $q$, v_view)
    USING p_symbols, p_start, p_end, p_timeframe;
END
$$;
