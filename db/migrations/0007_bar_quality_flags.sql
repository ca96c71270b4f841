-- Quality flags on stored bars: in `quality.validation_mode: lenient` records that fail a rule are
-- stored anyway, flagged, instead of being quarantined. The value is the validation bitmask of
-- quality/validate.py (1 ohlc_inconsistent, 2 non_positive_price, 4 negative_volume,
-- 8 misaligned_ts, 16 outside_session, 32 duplicate_conflict, 64 outlier_return, 128 stale_price);
-- 0 means the bar passed every rule. Scanners that want clean data filter quality_flags = 0.
ALTER TABLE market.bars_intraday ADD COLUMN quality_flags bigint NOT NULL DEFAULT 0;
ALTER TABLE market.bars_daily ADD COLUMN quality_flags bigint NOT NULL DEFAULT 0;

-- The view's column list was fixed when it was created; replacing it appends the new column.
CREATE OR REPLACE VIEW market.bars AS
    SELECT * FROM market.bars_intraday
    UNION ALL
    SELECT * FROM market.bars_daily;
