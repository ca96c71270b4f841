-- Bars, keyed on (symbol, timeframe, ts): the natural key every writer upserts on.
--
-- A hypertable has one chunk interval, and the right interval depends on the timeframe, so bars
-- live in two hypertables behind one view:
--
--   market.bars_intraday (1min, 5min, 15min, 1hour): chunks of 1 day. One session of 1-minute
--     bars for 5,000 symbols is about 2M rows, roughly 0.3 GB with the primary-key index; a day per
--     chunk keeps the chunk being written and its index in memory (Timescale's guidance: recent
--     chunks within ~25 % of RAM), lets queries over "the last N minutes/sessions" exclude all but
--     one or two chunks, and makes tiering to the lake exact at day granularity.
--   market.bars_daily (1day): chunks of 30 days. 5,000 symbols x ~21 sessions is about 105k rows
--     per chunk; 1-day chunks would create thousands of tiny chunks (planning cost grows with the
--     chunk count) for a table that is read in ranges of months to years. 30 days also lines up
--     with storage.routing.hot_data_days' default.
--
-- Prices are float64 (double precision), sizes int64 (bigint), timestamps UTC (timestamptz).
-- ts is the start of the bar's window.

CREATE TABLE market.bars_intraday (
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL CHECK (timeframe IN ('1min', '5min', '15min', '1hour')),
    ts           timestamptz      NOT NULL,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       bigint           NOT NULL,
    vwap         double precision,
    trade_count  bigint,
    source       text             NOT NULL,
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, ts)
);
SELECT create_hypertable('market.bars_intraday', by_range('ts', INTERVAL '1 day'));

CREATE TABLE market.bars_daily (LIKE market.bars_intraday INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE market.bars_daily DROP CONSTRAINT IF EXISTS bars_intraday_timeframe_check;
ALTER TABLE market.bars_daily ADD CONSTRAINT bars_daily_timeframe_check CHECK (timeframe = '1day');
ALTER TABLE market.bars_daily ADD PRIMARY KEY (symbol, timeframe, ts);
SELECT create_hypertable('market.bars_daily', by_range('ts', INTERVAL '30 days'));

-- Readers that do not care which table holds a timeframe.
CREATE VIEW market.bars AS
    SELECT * FROM market.bars_intraday
    UNION ALL
    SELECT * FROM market.bars_daily;
