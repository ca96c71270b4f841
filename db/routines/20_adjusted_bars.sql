-- Adjusted bars next to the raw ones: standard (CRSP-style) backward adjustment at read time from
-- market.corporate_actions. Raw bars are never rewritten, so a late or corrected action changes every
-- read at once and nothing has to be recomputed.
--
-- For a bar of session date d (the New York date of its ts) the price factor is the product over
-- every event with ex_date > d of that event's factor:
--   split    new_rate-for-old_rate:  old_rate / new_rate          (2-for-1 -> 0.5)
--   dividend of amount D:            1 - D / close_prev            (only in 'all')
-- where close_prev is the RAW close of the last session before the ex date (the daily bar, else the
-- last intraday bar before the ex date's midnight in New York). When a split shares the dividend's
-- ex date, D is taken in post-split units and close_prev is converted with that split's factor.
-- A dividend without a usable close_prev (no bar before it, or D >= close_prev) gets factor 1.
-- open, high, low, close and vwap are multiplied by the price factor; volume is divided by the
-- split factor only (a 2-for-1 split doubles earlier volumes) and rounded; trade_count is left raw.
--
-- adjustment: 'raw' (factor 1), 'split' (splits only), 'all' (splits and dividends: total return).
--
-- Worked example (tests/integration/storage/test_corporate_actions.py): a $2 dividend ex
-- 2024-06-06 after a raw close of 104 on 2024-06-05, and a 2-for-1 split ex 2024-06-10. A bar of
-- 2024-06-05 closing at 104 reads 52 split-adjusted and 104 * 0.5 * (1 - 2/104) = 51 total-return
-- adjusted; bars of 2024-06-06..07 read half their raw price either way; bars from 2024-06-10 on
-- are unchanged.

-- The raw close of the last session before an ex date.
CREATE OR REPLACE FUNCTION market.close_before(p_symbol text, p_ex_date date)
RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (SELECT d.close FROM market.bars_daily d
          WHERE d.symbol = p_symbol AND d.timeframe = '1day'
            AND d.ts < (p_ex_date::timestamp AT TIME ZONE 'America/New_York')
          ORDER BY d.ts DESC LIMIT 1),
        (SELECT i.close
           FROM (VALUES ('1min'), ('5min'), ('15min'), ('1hour')) AS tf (timeframe)
           CROSS JOIN LATERAL (
               SELECT b.ts, b.close FROM market.bars_intraday b
                WHERE b.symbol = p_symbol AND b.timeframe = tf.timeframe
                  AND b.ts < (p_ex_date::timestamp AT TIME ZONE 'America/New_York')
                ORDER BY b.ts DESC LIMIT 1) AS i
          ORDER BY i.ts DESC LIMIT 1)
    )
$$;

-- Cumulative factors per symbol as steps: bars with valid_from <= session date < valid_until
-- (valid_from NULL = since the beginning) take split_factor / total_factor; bars on or after a
-- symbol's last ex date take 1.
CREATE OR REPLACE FUNCTION market.adjustment_factors(p_symbols text[])
RETURNS TABLE (symbol text, valid_from date, valid_until date, split_factor double precision,
               total_factor double precision)
LANGUAGE sql STABLE AS $$
    WITH actions AS (
        SELECT ca.symbol, ca.action, ca.ex_date, ca.new_rate, ca.old_rate, ca.amount
          FROM market.corporate_actions ca
         WHERE ca.symbol = ANY (p_symbols)
    ),
    same_day_split AS (
        SELECT a.symbol, a.ex_date, exp(sum(ln(a.old_rate / a.new_rate))) AS factor
          FROM actions a WHERE a.action = 'split' GROUP BY a.symbol, a.ex_date
    ),
    events AS (
        SELECT a.symbol, a.ex_date,
               CASE WHEN a.action = 'split' THEN a.old_rate / a.new_rate ELSE 1 END AS split_f,
               CASE WHEN a.action = 'dividend' THEN
                   (SELECT CASE WHEN c.prev > 0 AND a.amount < c.prev THEN 1 - a.amount / c.prev ELSE 1 END
                      FROM (SELECT market.close_before(a.symbol, a.ex_date) * coalesce(s.factor, 1) AS prev) c)
               ELSE 1 END AS dividend_f
          FROM actions a
          LEFT JOIN same_day_split s ON s.symbol = a.symbol AND s.ex_date = a.ex_date
    ),
    per_date AS (
        SELECT e.symbol, e.ex_date, exp(sum(ln(e.split_f))) AS split_f, exp(sum(ln(e.dividend_f))) AS dividend_f
          FROM events e GROUP BY e.symbol, e.ex_date
    )
    SELECT p.symbol,
           lag(p.ex_date) OVER (PARTITION BY p.symbol ORDER BY p.ex_date),
           p.ex_date,
           exp(sum(ln(p.split_f)) OVER later),
           exp(sum(ln(p.split_f * p.dividend_f)) OVER later)
      FROM per_date p
    WINDOW later AS (PARTITION BY p.symbol ORDER BY p.ex_date DESC)
$$;

-- Bars of one timeframe for some symbols over [p_start, p_end), raw or adjusted.
CREATE OR REPLACE FUNCTION market.adjusted_bars(p_symbols text[], p_start timestamptz, p_end timestamptz,
                                     p_timeframe text, p_adjustment text DEFAULT 'all')
RETURNS TABLE (symbol text, timeframe text, ts timestamptz, open double precision, high double precision,
               low double precision, close double precision, volume bigint, vwap double precision,
               trade_count bigint, source text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF p_adjustment IS NULL OR p_adjustment NOT IN ('raw', 'split', 'all') THEN
        RAISE EXCEPTION 'unknown adjustment %; use raw, split or all', quote_nullable(p_adjustment)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_adjustment = 'raw' THEN
        RETURN QUERY
            SELECT b.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume, b.vwap,
                   b.trade_count, b.source
              FROM market.bars b
             WHERE b.symbol = ANY (p_symbols) AND b.timeframe = p_timeframe
               AND b.ts >= p_start AND b.ts < p_end
             ORDER BY b.symbol, b.ts;
        RETURN;
    END IF;
    RETURN QUERY
        WITH f AS (SELECT * FROM market.adjustment_factors(p_symbols))
        SELECT b.symbol, b.timeframe, b.ts,
               b.open * k.price, b.high * k.price, b.low * k.price, b.close * k.price,
               round(b.volume / k.split)::bigint, b.vwap * k.price, b.trade_count, b.source
          FROM market.bars b
          LEFT JOIN f ON f.symbol = b.symbol
                     AND (b.ts AT TIME ZONE 'America/New_York')::date < f.valid_until
                     AND (f.valid_from IS NULL OR (b.ts AT TIME ZONE 'America/New_York')::date >= f.valid_from)
          CROSS JOIN LATERAL (
              SELECT coalesce(f.split_factor, 1) AS split,
                     coalesce(CASE WHEN p_adjustment = 'all' THEN f.total_factor ELSE f.split_factor END, 1) AS price
          ) k
         WHERE b.symbol = ANY (p_symbols) AND b.timeframe = p_timeframe
           AND b.ts >= p_start AND b.ts < p_end
         ORDER BY b.symbol, b.ts;
END
$$;
