-- Live data (issue 14): quotes get a hypertable, and the bar tables accept the stream's own windows.
--
-- market.quotes: the National Best Bid and Offer updates (core.model.QUOTES) of the Polygon `Q` and
-- Alpaca `q` stream messages and the REST quotes endpoints. A quote has no vendor id, so its
-- natural key is everything that identifies the update: (symbol, ts, bid/ask exchange, price and
-- size). A replayed or re-sent quote is the same row; two different updates in the same nanosecond
-- differ in one of those columns. The stream writer inserts with ON CONFLICT DO NOTHING
-- (storage/quotes.py): a quote is never corrected, only superseded by a later one.
-- Chunks of 1 day like market.trades (the densest datasets: tiering exports a day per chunk).
CREATE TABLE market.quotes (
    symbol       text             NOT NULL,
    ts           timestamptz      NOT NULL,
    bid_price    double precision NOT NULL,
    bid_size     bigint           NOT NULL,
    bid_exchange text             NOT NULL,
    ask_price    double precision NOT NULL,
    ask_size     bigint           NOT NULL,
    ask_exchange text             NOT NULL,
    conditions   text,
    tape         text,
    source       text             NOT NULL,
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts, bid_exchange, ask_exchange, bid_price, ask_price, bid_size, ask_size)
);
SELECT create_hypertable('market.quotes', by_range('ts', INTERVAL '1 day'));

-- Bars the stream builds from trades every `streaming.window_seconds` (5s, 15s, ...) sit beside
-- the minute bars in market.bars_intraday; the 1-minute grid and the aggregates are unchanged.
ALTER TABLE market.bars_intraday DROP CONSTRAINT bars_intraday_timeframe_check;
ALTER TABLE market.bars_intraday ADD CONSTRAINT bars_intraday_timeframe_check
    CHECK (timeframe IN ('1min', '5min', '15min', '1hour') OR timeframe ~ '^[1-9][0-9]*s$');

-- quality_flags gains bit 256, `provisional` (quality/validate.py Rule.PROVISIONAL): a bar whose
-- window has not closed (a stream's forming bar). It is stored so readers see the bar as it forms,
-- never advances a watermark, and is rewritten without the bit once the window is final.
COMMENT ON COLUMN market.bars_intraday.quality_flags IS
    'validation bitmask (quality/validate.py Rule); 0 = passed every rule; 256 = provisional (window not closed)';
