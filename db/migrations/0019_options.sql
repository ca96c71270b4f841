-- Option chains (issue 17): the contract reference, chain snapshots with the vendor's and our own
-- implied volatility and greeks, and the flat rate curve the IV kernel prices with.
--
-- market.option_contracts: one row per OCC contract (``O:AAPL260116C00150000``), the reference
-- the vendors' contract endpoints serve (Polygon /v3/reference/options/contracts) or the snapshot
-- implies. Upserted: the last vendor to describe a contract wins (the terms of a listed contract do
-- not change; an adjusted contract after a split gets a new OCC symbol). A plain table, not a
-- hypertable: read whole per underlying.
CREATE TABLE market.option_contracts (
    contract            text             PRIMARY KEY,
    underlying          text             NOT NULL,
    expiration          date             NOT NULL,
    strike              double precision NOT NULL CHECK (strike > 0),
    contract_type       text             NOT NULL CHECK (contract_type IN ('call', 'put')),
    exercise_style      text,
    shares_per_contract integer          NOT NULL DEFAULT 100 CHECK (shares_per_contract > 0),
    primary_exchange    text,
    source              text             NOT NULL,
    ingested_at         timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX option_contracts_underlying_idx ON market.option_contracts (underlying, expiration, strike);

-- market.option_quotes: one row per contract and chain snapshot, keyed (contract, ts). ``ts`` is
-- the snapshot's time (the vendor's clock when the chain was taken: every contract of one snapshot
-- shares it, so the term structure and skew of a snapshot are one ``ts``); ``quote_ts`` is the
-- vendor's time of the contract's last quote (older than ``ts`` for a stale quote).
-- The contract's terms are repeated from market.option_contracts so chain readers and scanners
-- (the term structure, the ATM straddle of an expiry) read one table.
--
-- Vendor figures (vendor_*) are stored as sent. Ours (iv, delta, gamma, vega, theta, rho) come from
-- features/options.py (Black-Scholes-Merton with the continuous dividend yield and the rate stored
-- in ``rate`` and ``dividend_yield``) on the mid of bid and ask, or the last trade when there is
-- no two-sided quote. ``iv_reason`` is the kernel's reason code (features.options.REASONS: 0 ok,
-- 3 crossed, 4 below intrinsic, ...), non-zero exactly where iv and the greeks are NULL: a quote
-- without a solution has no number, not a wrong one. ``quote_flags`` is a bitmask of what a quote
-- looks like (storage/options.py QuoteFlag: 1 crossed, 2 stale, 4 zero bid, 8 below intrinsic,
-- 16 no quote), kept whether or not an IV was found.
CREATE TABLE market.option_quotes (
    contract          text             NOT NULL,
    ts                timestamptz      NOT NULL,
    underlying        text             NOT NULL,
    expiration        date             NOT NULL,
    strike            double precision NOT NULL CHECK (strike > 0),
    contract_type     text             NOT NULL CHECK (contract_type IN ('call', 'put')),
    bid               double precision CHECK (bid >= 0),
    ask               double precision CHECK (ask >= 0),
    bid_size          bigint,
    ask_size          bigint,
    last_price        double precision CHECK (last_price > 0),
    quote_ts          timestamptz,
    volume            bigint           CHECK (volume >= 0),
    open_interest     bigint           CHECK (open_interest >= 0),
    underlying_price  double precision CHECK (underlying_price > 0),
    vendor_iv         double precision,
    vendor_delta      double precision,
    vendor_gamma      double precision,
    vendor_theta      double precision,
    vendor_vega       double precision,
    rate              double precision NOT NULL,
    dividend_yield    double precision NOT NULL,
    iv                double precision,
    delta             double precision,
    gamma             double precision,
    vega              double precision,
    theta             double precision,
    rho               double precision,
    iv_reason         smallint         NOT NULL DEFAULT 0,
    quote_flags       integer          NOT NULL DEFAULT 0,
    source            text             NOT NULL,
    ingested_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (contract, ts),
    CONSTRAINT option_quotes_iv_reason CHECK ((iv_reason = 0) = (iv IS NOT NULL))
);
SELECT create_hypertable('market.option_quotes', by_range('ts', INTERVAL '1 day'));
CREATE INDEX option_quotes_underlying_ts_idx ON market.option_quotes (underlying, ts DESC, expiration, strike);

COMMENT ON COLUMN market.option_quotes.iv_reason IS
    'features.options.REASONS code: 0 = iv and greeks computed; otherwise why not (iv NULL)';
COMMENT ON COLUMN market.option_quotes.quote_flags IS
    'storage/options.py QuoteFlag bitmask: 1 crossed, 2 stale, 4 zero bid, 8 below intrinsic, 16 no quote';

-- market.rate_curve: the risk-free rate (continuously compounded, a fraction) by tenor, the curve
-- the IV kernel reads (linear in tenor between points, flat beyond the ends). The pipeline has no
-- rate vendor yet: the curve is seeded with one flat point from settings (options.risk_free_rate)
-- at the first options ingest and can be replaced by a real curve (one row per tenor and date).
CREATE TABLE market.rate_curve (
    as_of        date             NOT NULL,
    tenor_days   integer          NOT NULL CHECK (tenor_days >= 0),
    rate         double precision NOT NULL CHECK (rate > -1 AND rate < 1),
    source       text             NOT NULL,
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of, tenor_days)
);
