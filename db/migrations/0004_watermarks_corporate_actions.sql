-- Watermarks and corporate actions.
--
-- ops.watermarks: per (source, dataset, symbol, timeframe), the newest timestamp whose data has
-- COMMITTED in the hot store. Writers advance it in the same transaction as the data it covers
-- (storage/watermarks.py), and only forwards, so a crash can leave it behind the data (the
-- next run refetches a little, which the idempotent upsert absorbs) but never ahead of it (which
-- would silently skip data). Datasets without a timeframe (corporate actions) use timeframe ''.
CREATE TABLE ops.watermarks (
    source         text        NOT NULL CHECK (source <> ''),
    dataset        text        NOT NULL CHECK (dataset <> ''),
    symbol         text        NOT NULL CHECK (symbol <> ''),
    timeframe      text        NOT NULL DEFAULT '',
    high_water_ts  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, dataset, symbol, timeframe)
);

-- market.corporate_actions: splits and dividends, one row per (symbol, action, ex_date).
--
-- The key deliberately leaves out the source: two vendors reporting the same split must not
-- adjust prices twice; the last writer's figures (and name, in `source`) win. A split of
-- new_rate-for-old_rate (2-for-1: new_rate 2, old_rate 1) multiplies the share count by
-- new_rate/old_rate; a dividend pays `amount` in `currency` per share. Ex, record and pay dates
-- are exchange (New York) calendar dates. A plain table, not a hypertable: a few rows per symbol
-- and year, always read whole per symbol.
CREATE TABLE market.corporate_actions (
    symbol       text             NOT NULL,
    action       text             NOT NULL CHECK (action IN ('split', 'dividend')),
    ex_date      date             NOT NULL,
    new_rate     double precision,
    old_rate     double precision,
    amount       double precision,
    currency     text,
    record_date  date,
    pay_date     date,
    source       text             NOT NULL,
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, action, ex_date),
    CONSTRAINT corporate_actions_split_rates CHECK (
        action <> 'split' OR (new_rate > 0 AND old_rate > 0)
    ),
    CONSTRAINT corporate_actions_dividend_amount CHECK (
        action <> 'dividend' OR (amount IS NOT NULL AND amount >= 0)
    )
);
