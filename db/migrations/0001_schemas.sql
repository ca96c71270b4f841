-- Three schemas, one per kind of state:
--   market   - vendor data after standardization (bars, trades, quotes, corporate actions, news)
--   features - computed features (the feature store)
--   ops      - the pipeline's own bookkeeping (migrations ledger, watermarks, dead letters, metrics)
CREATE SCHEMA IF NOT EXISTS market;
CREATE SCHEMA IF NOT EXISTS features;
CREATE SCHEMA IF NOT EXISTS ops;
