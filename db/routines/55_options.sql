-- Option chain features and scanners over market.option_quotes (migration 0019), computed on read
-- from the stored snapshots and OUR iv and delta (features/option_chains.py), so they always agree
-- with the stored quotes and a rerun or correction of a snapshot needs no second write.
--
--   features.option_expiry_features   view: per (underlying, ts, expiration): the term structure
--       atm_iv       mean of the call's and the put's IV at the strike nearest the forward
--                    F = S exp((r - q) T) (one side alone when the other has no IV)
--       skew_25d     IV of the put whose delta is nearest -0.25 minus IV of the call nearest +0.25
--                    (the 25-delta risk reversal, in vol points as fractions: 0.03 = 3 points)
--       call/put volume and open interest, contracts, priced (with an IV)
--   features.option_chain_features    view: per (underlying, ts)
--       atm_iv_30d   30-day ATM IV: the expiries bracketing 30 days interpolated linearly in total
--                    variance (sigma^2 T), else the one expiry on the side that exists
--       skew_25d     the skew of the expiry nearest 30 days
--       put_call_volume_ratio, put_call_oi_ratio   over every expiry (NULL when calls have none)
--       Ingest also stores each snapshot's row in features.bar_feature_values (feature set options1,
--       timeframe 15min, ts the snapshot) with atm_iv_7d/60d/90d: linear in total variance between
--       the bracketing expiries, NULL when none brackets the tenor (features/option_chains.py)
--   scan.option_iv_rank(lookback_days, min_days, limit)
--       each underlying's newest daily atm_iv_30d ranked within its daily values of the lookback:
--       iv_rank = 100 (iv - min) / (max - min), iv_percentile = 100 * share of the days below it;
--       an underlying with fewer days or a flat history is left out rather than guessed. The daily
--       values are the feature store's (features.bar_feature_values, feature set options1,
--       timeframe 1day: the session's last snapshot by its close, written at ingest by storage/options.py
--       write_daily_features), so the scan reads one row per underlying and day, not every snapshot
--   scan.unusual_options(min_ratio, min_volume, limit)
--       contracts of each underlying's newest snapshot whose session volume is at least
--       min_volume and min_ratio times the open interest (new positions being opened)
--
-- Time to expiry is the kernel's: from ts to 16:00 New York of the expiration date, 365-day years.

DROP VIEW IF EXISTS features.option_chain_features;
DROP VIEW IF EXISTS features.option_expiry_features;

CREATE OR REPLACE VIEW features.option_expiry_features AS
WITH timed AS (
    SELECT q.*,
           extract(epoch FROM (((q.expiration + time '16:00') AT TIME ZONE 'America/New_York') - q.ts))
               / (365 * 86400.0) AS years
    FROM market.option_quotes q
), priced AS (
    SELECT t.*, t.underlying_price * exp((t.rate - t.dividend_yield) * t.years) AS forward FROM timed t
), sides AS (
    SELECT underlying, ts, expiration,
           min(years) AS years,
           (array_agg(iv ORDER BY abs(ln(strike / forward)), strike)
                FILTER (WHERE contract_type = 'call' AND iv IS NOT NULL))[1] AS call_atm_iv,
           (array_agg(iv ORDER BY abs(ln(strike / forward)), strike)
                FILTER (WHERE contract_type = 'put' AND iv IS NOT NULL))[1] AS put_atm_iv,
           (array_agg(iv ORDER BY abs(delta + 0.25), strike)
                FILTER (WHERE contract_type = 'put' AND iv IS NOT NULL))[1] AS put_25d_iv,
           (array_agg(iv ORDER BY abs(delta - 0.25), strike)
                FILTER (WHERE contract_type = 'call' AND iv IS NOT NULL))[1] AS call_25d_iv,
           coalesce(sum(volume) FILTER (WHERE contract_type = 'call'), 0)::bigint AS call_volume,
           coalesce(sum(volume) FILTER (WHERE contract_type = 'put'), 0)::bigint AS put_volume,
           coalesce(sum(open_interest) FILTER (WHERE contract_type = 'call'), 0)::bigint AS call_open_interest,
           coalesce(sum(open_interest) FILTER (WHERE contract_type = 'put'), 0)::bigint AS put_open_interest,
           count(*) AS contracts,
           count(iv) AS priced
    FROM priced
    GROUP BY underlying, ts, expiration
)
SELECT underlying, ts, expiration,
       (expiration - (ts AT TIME ZONE 'America/New_York')::date) AS days_to_expiry,
       years,
       (coalesce(call_atm_iv, put_atm_iv) + coalesce(put_atm_iv, call_atm_iv)) / 2 AS atm_iv,
       put_25d_iv - call_25d_iv AS skew_25d,
       call_volume, put_volume, call_open_interest, put_open_interest, contracts, priced
FROM sides;

-- One aggregate over the expiry rows (no CTE read several times, which PostgreSQL would materialize
-- for every stored snapshot): a query for one underlying and snapshot computes that snapshot alone.
CREATE OR REPLACE VIEW features.option_chain_features AS
SELECT t.underlying, t.ts,
       CASE
           WHEN t.below_iv IS NOT NULL AND t.above_iv IS NOT NULL THEN sqrt(
               (t.below_iv ^ 2 * t.below_years
                + (t.above_iv ^ 2 * t.above_years - t.below_iv ^ 2 * t.below_years)
                  * (30 / 365.0 - t.below_years) / (t.above_years - t.below_years))
               / (30 / 365.0))
           ELSE coalesce(t.below_iv, t.above_iv)
       END AS atm_iv_30d,
       t.skew_25d,
       t.skew_expiration,
       t.put_volume::double precision / nullif(t.call_volume, 0) AS put_call_volume_ratio,
       t.put_open_interest::double precision / nullif(t.call_open_interest, 0) AS put_call_oi_ratio,
       t.call_volume, t.put_volume, t.call_open_interest, t.put_open_interest,
       t.expirations, t.contracts, t.priced
FROM (
    SELECT underlying, ts,
           sum(call_volume)::bigint AS call_volume, sum(put_volume)::bigint AS put_volume,
           sum(call_open_interest)::bigint AS call_open_interest,
           sum(put_open_interest)::bigint AS put_open_interest,
           count(*) AS expirations, sum(contracts)::bigint AS contracts, sum(priced)::bigint AS priced,
           (array_agg(years ORDER BY years DESC) FILTER (WHERE atm_iv IS NOT NULL AND years <= 30 / 365.0))[1]
               AS below_years,
           (array_agg(atm_iv ORDER BY years DESC) FILTER (WHERE atm_iv IS NOT NULL AND years <= 30 / 365.0))[1]
               AS below_iv,
           (array_agg(years ORDER BY years) FILTER (WHERE atm_iv IS NOT NULL AND years > 30 / 365.0))[1]
               AS above_years,
           (array_agg(atm_iv ORDER BY years) FILTER (WHERE atm_iv IS NOT NULL AND years > 30 / 365.0))[1]
               AS above_iv,
           (array_agg(skew_25d ORDER BY abs(years - 30 / 365.0), years) FILTER (WHERE skew_25d IS NOT NULL))[1]
               AS skew_25d,
           (array_agg(expiration ORDER BY abs(years - 30 / 365.0), years) FILTER (WHERE skew_25d IS NOT NULL))[1]
               AS skew_expiration
    FROM features.option_expiry_features
    GROUP BY underlying, ts
) t;

DROP FUNCTION IF EXISTS scan.option_iv_rank(integer, integer, integer);
CREATE OR REPLACE FUNCTION scan.option_iv_rank(p_lookback_days integer DEFAULT 365, p_min_days integer DEFAULT 2,
                                    p_limit integer DEFAULT 50)
RETURNS TABLE (underlying text, day timestamptz, atm_iv_30d double precision, iv_low double precision,
               iv_high double precision, iv_rank double precision, iv_percentile double precision,
               days bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_lookback_days IS NULL OR p_lookback_days < 1 THEN
        RAISE EXCEPTION 'lookback_days must be at least 1, got %', p_lookback_days USING ERRCODE = '22023';
    END IF;
    IF p_min_days IS NULL OR p_min_days < 2 THEN
        RAISE EXCEPTION 'min_days must be at least 2, got %', p_min_days USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH daily AS (
        SELECT v.symbol AS underlying, v.ts, v.value
        FROM features.bar_feature_values v
        WHERE v.timeframe = '1day' AND v.feature_set = 'options1' AND v.name = 'atm_iv_30d' AND v.value IS NOT NULL
    ), latest AS (
        SELECT d.underlying, max(d.ts) AS ts FROM daily d GROUP BY d.underlying
    ), ranked AS (
        SELECT l.underlying, l.ts AS latest_day,
               max(d.value) FILTER (WHERE d.ts = l.ts) AS now_iv,
               min(d.value) AS lo, max(d.value) AS hi, count(*) AS n,
               array_agg(d.value) AS ivs
        FROM latest l
        JOIN daily d ON d.underlying = l.underlying
                    AND d.ts > l.ts - make_interval(days => p_lookback_days) AND d.ts <= l.ts
        GROUP BY l.underlying, l.ts
    )
    SELECT r.underlying, r.latest_day, r.now_iv, r.lo, r.hi,
           100 * (r.now_iv - r.lo) / (r.hi - r.lo),
           100 * (SELECT count(*) FROM unnest(r.ivs) x WHERE x < r.now_iv)::double precision / r.n,
           r.n
    FROM ranked r
    WHERE r.n >= p_min_days AND r.hi > r.lo
    ORDER BY 6 DESC, r.underlying
    LIMIT p_limit;
END
$$;

DROP FUNCTION IF EXISTS scan.unusual_options(double precision, bigint, integer);
CREATE OR REPLACE FUNCTION scan.unusual_options(p_min_ratio double precision DEFAULT 2, p_min_volume bigint DEFAULT 100,
                                     p_limit integer DEFAULT 50)
RETURNS TABLE (underlying text, ts timestamptz, contract text, expiration date, strike double precision,
               contract_type text, volume bigint, open_interest bigint, volume_oi_ratio double precision,
               iv double precision, delta double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_min_ratio IS NULL OR p_min_ratio <= 0 THEN
        RAISE EXCEPTION 'min_ratio must be more than 0, got %', p_min_ratio USING ERRCODE = '22023';
    END IF;
    IF p_min_volume IS NULL OR p_min_volume < 1 THEN
        RAISE EXCEPTION 'min_volume must be at least 1, got %', p_min_volume USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH latest AS (
        SELECT q.underlying, max(q.ts) AS ts FROM market.option_quotes q GROUP BY q.underlying
    )
    SELECT q.underlying, q.ts, q.contract, q.expiration, q.strike, q.contract_type, q.volume, q.open_interest,
           q.volume::double precision / greatest(q.open_interest, 1), q.iv, q.delta
    FROM latest l
    JOIN market.option_quotes q ON q.underlying = l.underlying AND q.ts = l.ts
    WHERE q.volume >= p_min_volume AND q.volume >= p_min_ratio * q.open_interest
    ORDER BY 9 DESC, q.volume DESC, q.contract
    LIMIT p_limit;
END
$$;
