-- Every vendor's bars (issue 18). market.bars_intraday / market.bars_daily stay keyed on
-- (symbol, timeframe, ts): they hold the CONSOLIDATED series every reader, feature, scanner,
-- continuous aggregate and market.latest_bars sees, one row per bar, from the vendor with the best
-- precedence that offered it (storage.source_precedence; the row's `source` says which vendor).
-- The rows of the other vendors are kept here, with the source in the key:
--
--   * a row the writer REFUSED to put in the consolidated table, because the stored row there comes
--     from a vendor of better precedence (Yahoo's bar where Polygon's is stored);
--   * a row DISPLACED from the consolidated table by a vendor of better or equal precedence
--     (Yahoo's bar, stored first, when Polygon's arrives).
--
-- So a vendor's bars are its rows in the consolidated table plus its rows here (the view
-- market.vendor_bars, db/routines/15_vendor_bars.sql), nothing a vendor sent is overwritten by
-- another vendor, and a single-vendor stack writes nothing here (the hot writer's cost is one join
-- of the merge path's staging table, storage/hot.py). The tables stay in the hot store, uncompressed
-- and untiered: they hold only the bars two vendors both sent, a small share of the history.
CREATE TABLE market.vendor_bars_intraday (LIKE market.bars_intraday INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE market.vendor_bars_intraday ADD PRIMARY KEY (symbol, timeframe, ts, source);
SELECT create_hypertable('market.vendor_bars_intraday', by_range('ts', INTERVAL '1 day'));

CREATE TABLE market.vendor_bars_daily (LIKE market.bars_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE market.vendor_bars_daily ADD PRIMARY KEY (symbol, timeframe, ts, source);
SELECT create_hypertable('market.vendor_bars_daily', by_range('ts', INTERVAL '30 days'));
