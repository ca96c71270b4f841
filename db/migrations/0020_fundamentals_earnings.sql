-- Fundamentals and earnings, point in time (issue 17).
--
-- market.financial_statements: one row per reported line item of one filing, in the long shape the
-- parsers produce (core.model.FINANCIALS). A filing is a VERSION of its period: a restatement
-- (10-Q/A) of a period is the same (symbol, fiscal_period, period_end) filed again with a later
-- filing_date, and both versions are kept (filing_date is in the key). What was known on a day is
-- the latest version filed by then (market.financials_as_of, db/routines/80_fundamentals.sql), so a
-- restated figure never leaks to a date before its filing.
CREATE TABLE market.financial_statements (
    symbol        text NOT NULL,
    period_start  date,
    period_end    date NOT NULL,
    filing_date   date NOT NULL,
    fiscal_period text NOT NULL,            -- Q1..Q4, FY
    fiscal_year   text NOT NULL,
    statement     text NOT NULL,            -- income_statement, balance_sheet, cash_flow_statement, ...
    item          text NOT NULL,            -- revenues, net_income_loss, basic_average_shares, ...
    value         double precision NOT NULL,
    unit          text,
    source        text NOT NULL,
    ingested_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, fiscal_period, period_end, statement, item, source, filing_date),
    CHECK (period_end <= filing_date),
    CHECK (period_start IS NULL OR period_start <= period_end)
);
CREATE INDEX financial_statements_filed ON market.financial_statements (symbol, filing_date);

-- market.earnings: the earnings calendar as the vendor knew it at `known_at` (its last_updated):
-- each fetch that finds a report changed (a projected date confirmed, the actuals in) adds a
-- version; what was known at an instant is the latest version known by then
-- (market.earnings_as_of). A report seen only after the fact (a backfill) has only its
-- after-the-fact version: nothing claims the estimate was known earlier than the vendor says.
CREATE TABLE market.earnings (
    symbol           text NOT NULL,
    fiscal_year      text NOT NULL,
    fiscal_period    text NOT NULL,          -- Q1..Q4
    report_date      date NOT NULL,
    report_time      text,                   -- HH:MM:SS New York, as the vendor gives it
    time_of_day      text NOT NULL CHECK (time_of_day IN ('bmo', 'dmh', 'amc', 'unknown')),
    date_status      text,                   -- projected | confirmed
    eps_estimate     double precision,
    eps_actual       double precision,
    revenue_estimate double precision,
    revenue_actual   double precision,
    known_at         timestamptz NOT NULL,
    source           text NOT NULL,
    ingested_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, fiscal_year, fiscal_period, source, known_at)
);
CREATE INDEX earnings_report_date ON market.earnings (report_date, symbol);
