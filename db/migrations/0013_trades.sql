-- Trades (time and sales), keyed on (symbol, ts, exchange, trade_id): the natural key the writer
-- upserts on (storage.hot.TRADES_TABLE, storage.hot.upsert_trades).
--
-- The columns are the canonical trade model every adapter already parses into
-- (core.model.TRADES): Polygon v3 trades (sip_timestamp, price, size, exchange, id,
-- conditions, tape), Alpaca trades and the trade stream messages (t, p, s, x, i, c, z).
-- Why this key: a vendor's trade id identifies a trade within one symbol's feed from one exchange
-- (or TRF), not across exchanges, so the exchange is part of the key, and the timestamp (every
-- unique index of a hypertable must contain it) makes it exact. exchange and trade_id are NOT NULL: a trade without them has no identity, and the
-- writer refuses it with an error naming the column rather than inventing one.
-- conditions are the vendor's condition codes joined with commas, as strings (they differ per vendor).
--
-- Chunks of 1 day: trades are the densest dataset (a liquid symbol prints tens of thousands of
-- trades a session), a day per chunk keeps the chunk being written small, makes "the last N
-- minutes" scans exclude all but one chunk, and makes tiering exact at the lake's date= partition
-- (cold/trades/date=YYYY-MM-DD/<chunk>.parquet, storage/tiering.py).
--
-- Indexes: the primary key (symbol, ts, exchange, trade_id) serves every read of the router
-- (symbols and a time range); TimescaleDB's default ts index serves "every trade of a minute".

CREATE TABLE market.trades (
    symbol      text             NOT NULL,
    ts          timestamptz      NOT NULL,
    exchange    text             NOT NULL,
    trade_id    text             NOT NULL,
    price       double precision NOT NULL,
    size        bigint           NOT NULL,
    conditions  text,
    tape        text,
    source      text             NOT NULL,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts, exchange, trade_id)
);
SELECT create_hypertable('market.trades', by_range('ts', INTERVAL '1 day'));
