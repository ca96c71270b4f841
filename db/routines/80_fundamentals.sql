-- Point-in-time reads of fundamentals and earnings (tables: db/migrations/0020_fundamentals_earnings.sql).

-- Every line item of the latest version of each period known at the instant p_at. A filing is
-- known from its acceptance time (accepted_at, migration 0029) or, when the vendor gave none, from
-- the first session close after its filing date: a filing date has no time of day, and a 10-Q
-- accepted at 16:30 must not meet that day's close (conservative: one accepted before the open
-- waits a session too). Without acceptance time the rule reads "filing_date before p_at's New York
-- date", which is that close when p_at is a session's close or later on its day (what
-- storage.fundamentals asks: a close, or the end of a day). A period restated later than p_at is
-- returned as originally filed; `restated` says whether the version returned replaces an earlier
-- filing.
DROP FUNCTION IF EXISTS market.financials_as_of(text[], date);
CREATE OR REPLACE FUNCTION market.financials_as_of(p_symbols text[], p_at timestamptz)
RETURNS TABLE (
    symbol text, fiscal_period text, fiscal_year text, period_start date, period_end date,
    filing_date date, accepted_at timestamptz, statement text, item text, value double precision,
    unit text, source text, restated boolean
)
LANGUAGE sql STABLE AS $$
    WITH known AS (
        SELECT f.*
        FROM market.financial_statements f
        WHERE f.symbol = ANY(p_symbols)
          AND CASE WHEN f.accepted_at IS NOT NULL THEN f.accepted_at <= p_at
                   ELSE f.filing_date < (p_at AT TIME ZONE 'America/New_York')::date END
    ),
    versions AS (
        SELECT DISTINCT ON (k.symbol, k.fiscal_period, k.period_end)
               k.symbol, k.fiscal_period, k.period_end, k.filing_date, k.source,
               min(k.filing_date) OVER (PARTITION BY k.symbol, k.fiscal_period, k.period_end) < k.filing_date
                   AS restated
        FROM known k
        ORDER BY k.symbol, k.fiscal_period, k.period_end, k.filing_date DESC, k.source
    )
    SELECT k.symbol, k.fiscal_period, k.fiscal_year, k.period_start, k.period_end, k.filing_date,
           k.accepted_at, k.statement, k.item, k.value, k.unit, k.source, v.restated
    FROM known k
    JOIN versions v USING (symbol, fiscal_period, period_end, filing_date, source)
    ORDER BY k.symbol, k.period_end, k.fiscal_period, k.statement, k.item
$$;

-- Each report of the earnings calendar as known at p_as_of: its latest version with
-- known_at <= p_as_of (an estimate before the report, the actuals once the vendor had them).
CREATE OR REPLACE FUNCTION market.earnings_as_of(p_symbols text[], p_as_of timestamptz)
RETURNS TABLE (
    symbol text, fiscal_year text, fiscal_period text, report_date date, report_time text,
    time_of_day text, date_status text, eps_estimate double precision, eps_actual double precision,
    revenue_estimate double precision, revenue_actual double precision, known_at timestamptz,
    source text
)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (e.symbol, e.fiscal_year, e.fiscal_period)
           e.symbol, e.fiscal_year, e.fiscal_period, e.report_date, e.report_time, e.time_of_day,
           e.date_status, e.eps_estimate, e.eps_actual, e.revenue_estimate, e.revenue_actual,
           e.known_at, e.source
    FROM market.earnings e
    WHERE e.symbol = ANY(p_symbols) AND e.known_at <= p_as_of
    ORDER BY e.symbol, e.fiscal_year, e.fiscal_period, e.known_at DESC, e.source
$$;

-- Upcoming earnings with the options' implied move: each symbol's next report (as known at
-- p_as_of: not yet reported, dated within p_days of p_as_of's New York date), its estimates and the
-- last reported EPS surprise, and, from the symbol's newest option snapshot at or before p_as_of
-- (market.option_quotes), the at-the-money straddle of the first expiration after the report (an
-- expiration on the report day counts for a report before the open or during the session, not for
-- one after the close): implied_move = (call mid + put mid) / underlying price at the strike
-- nearest the underlying price quoted on both sides (bid > 0, ask >= bid). No snapshot, no such
-- expiration or no two-sided strike: the option columns are NULL, the report is still listed.
DROP FUNCTION IF EXISTS scan.upcoming_earnings(integer, timestamptz, integer);
CREATE OR REPLACE FUNCTION scan.upcoming_earnings(p_days integer DEFAULT 14, p_as_of timestamptz DEFAULT now(),
                                       p_limit integer DEFAULT 50)
RETURNS TABLE (symbol text, report_date date, time_of_day text, days_to_earnings integer,
               eps_estimate double precision, revenue_estimate double precision,
               last_eps_surprise double precision, expiration date, strike double precision,
               straddle_mid double precision, underlying_price double precision,
               implied_move double precision, options_ts timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_today date;
BEGIN
    IF p_days IS NULL OR p_days < 0 OR p_days > 366 THEN
        RAISE EXCEPTION 'days must be a whole number from 0 to 366, got %; pass e.g. --days 14', quote_nullable(p_days)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'limit must be at least 1, got %; pass e.g. --limit 50', quote_nullable(p_limit)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_today := (p_as_of AT TIME ZONE 'America/New_York')::date;
    RETURN QUERY
    WITH known AS (
        SELECT DISTINCT ON (e.symbol, e.fiscal_year, e.fiscal_period) e.*
        FROM market.earnings e
        WHERE e.known_at <= p_as_of
        ORDER BY e.symbol, e.fiscal_year, e.fiscal_period, e.known_at DESC, e.source
    ), upcoming AS (
        SELECT DISTINCT ON (k.symbol) k.*
        FROM known k
        WHERE k.eps_actual IS NULL AND k.report_date >= v_today AND k.report_date <= v_today + p_days
        ORDER BY k.symbol, k.report_date
    ), surprise AS (
        SELECT DISTINCT ON (k.symbol) k.symbol,
               (k.eps_actual - k.eps_estimate) / abs(nullif(k.eps_estimate, 0)) AS last_surprise
        FROM known k
        WHERE k.eps_actual IS NOT NULL
        ORDER BY k.symbol, k.report_date DESC
    ), snapshot AS (
        SELECT u.symbol, max(q.ts) AS ts
        FROM upcoming u JOIN market.option_quotes q ON q.underlying = u.symbol AND q.ts <= p_as_of
        GROUP BY u.symbol
    ), expiry AS (
        SELECT s.symbol, s.ts, min(q.expiration) AS expiration
        FROM snapshot s
        JOIN upcoming u ON u.symbol = s.symbol
        JOIN market.option_quotes q ON q.underlying = s.symbol AND q.ts = s.ts
        WHERE q.expiration > u.report_date OR (q.expiration = u.report_date AND u.time_of_day IN ('bmo', 'dmh'))
        GROUP BY s.symbol, s.ts
    ), straddles AS (
        SELECT x.symbol, x.ts, x.expiration, q.strike,
               max(q.underlying_price) AS spot, sum((q.bid + q.ask) / 2) AS mid
        FROM expiry x
        JOIN market.option_quotes q
          ON q.underlying = x.symbol AND q.ts = x.ts AND q.expiration = x.expiration
        WHERE q.bid > 0 AND q.ask >= q.bid
        GROUP BY x.symbol, x.ts, x.expiration, q.strike
        HAVING count(DISTINCT q.contract_type) = 2
    ), atm AS (
        SELECT DISTINCT ON (st.symbol) st.*
        FROM straddles st
        ORDER BY st.symbol, abs(st.strike - st.spot), st.strike
    )
    SELECT u.symbol, u.report_date, u.time_of_day, (u.report_date - v_today)::integer,
           u.eps_estimate, u.revenue_estimate, su.last_surprise, a.expiration, a.strike, a.mid, a.spot,
           a.mid / nullif(a.spot, 0), a.ts
    FROM upcoming u
    LEFT JOIN atm a ON a.symbol = u.symbol
    LEFT JOIN surprise su ON su.symbol = u.symbol
    ORDER BY u.report_date, u.symbol
    LIMIT p_limit;
END
$$;
