-- Point-in-time reads of fundamentals and earnings (tables: db/migrations/0020_fundamentals_earnings.sql).

-- Every line item of the latest version of each period filed by p_as_of (a New York date: a
-- filing counts from its filing date on). A period restated later than p_as_of is returned as
-- originally filed; `restated` says whether the version returned replaces an earlier filing.
CREATE OR REPLACE FUNCTION market.financials_as_of(p_symbols text[], p_as_of date)
RETURNS TABLE (
    symbol text, fiscal_period text, fiscal_year text, period_start date, period_end date,
    filing_date date, statement text, item text, value double precision, unit text, source text,
    restated boolean
)
LANGUAGE sql STABLE AS $$
    WITH versions AS (
        SELECT DISTINCT ON (f.symbol, f.fiscal_period, f.period_end)
               f.symbol, f.fiscal_period, f.period_end, f.filing_date, f.source,
               min(f.filing_date) OVER (PARTITION BY f.symbol, f.fiscal_period, f.period_end) < f.filing_date
                   AS restated
        FROM market.financial_statements f
        WHERE f.symbol = ANY(p_symbols) AND f.filing_date <= p_as_of
        ORDER BY f.symbol, f.fiscal_period, f.period_end, f.filing_date DESC, f.source
    )
    SELECT f.symbol, f.fiscal_period, f.fiscal_year, f.period_start, f.period_end, f.filing_date,
           f.statement, f.item, f.value, f.unit, f.source, v.restated
    FROM market.financial_statements f
    JOIN versions v USING (symbol, fiscal_period, period_end, filing_date, source)
    ORDER BY f.symbol, f.period_end, f.fiscal_period, f.statement, f.item
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
