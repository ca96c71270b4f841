-- The feature store: features computed by features (FeatureSet.compute) for stored bars.
--
-- features.bar_features is wide: one row per bar and feature-set version, one double precision
-- column per standard feature (features.kernels.FEATURES, same names and order). Keyed like
-- the bars plus feature_set, the FeatureSet's version string ("std1-<hash>", which changes with a
-- window length or a plugin): two versions of the same bar coexist, so a new parameterisation never
-- overwrites the features a model was trained on. NULL means the feature is undefined at that bar
-- (a window not yet full); the writer stores NaN as NULL.
--
-- Written only by features/store.py through the hot store's idempotent upsert
-- (storage.hot.upsert_frame): a rerun rewrites nothing, and a recomputation after a data
-- correction rewrites exactly the rows whose values changed (IS DISTINCT FROM); computed_at moves
-- only then.
--
-- Chunks of 1 day, like market.bars_intraday: one table holds every timeframe, and its volume is
-- the intraday features' (5,000 symbols x 390 one-minute bars is about 2M rows a session, ~0.5 GB
-- with the key index at this width), so a day per chunk keeps the chunk being written in memory and
-- lets range reads exclude all but the chunks they touch. Daily features then make small chunks
-- (5,000 rows a session); that costs some planning time on multi-year daily reads, which is cheaper
-- than a second table per timeframe for every reader and writer.
CREATE TABLE features.bar_features (
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL CHECK (timeframe IN ('1min', '5min', '15min', '1hour', '1day')),
    ts           timestamptz      NOT NULL,
    feature_set  text             NOT NULL CHECK (feature_set <> ''),
    ret          double precision,
    log_ret      double precision,
    volatility   double precision,
    sma          double precision,
    ema          double precision,
    rsi          double precision,
    macd         double precision,
    macd_signal  double precision,
    macd_hist    double precision,
    bb_upper     double precision,
    bb_middle    double precision,
    bb_lower     double precision,
    bb_pctb      double precision,
    atr          double precision,
    obv          double precision,
    vwap         double precision,
    volume_z     double precision,
    dist_high    double precision,
    dist_low     double precision,
    gap_pct      double precision,
    computed_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, ts, feature_set)
);
SELECT create_hypertable('features.bar_features', by_range('ts', INTERVAL '1 day'));

-- Plugin outputs (FeatureBuilder subclasses registered through settings or entry points): any
-- number of columns with any names, so they are stored long, one row per bar, feature set and
-- output name, and a new plugin needs no DDL. Same chunking, writer and NULL convention.
CREATE TABLE features.bar_feature_values (
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL CHECK (timeframe IN ('1min', '5min', '15min', '1hour', '1day')),
    ts           timestamptz      NOT NULL,
    feature_set  text             NOT NULL CHECK (feature_set <> ''),
    name         text             NOT NULL CHECK (name <> ''),
    value        double precision,
    computed_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, ts, feature_set, name)
);
SELECT create_hypertable('features.bar_feature_values', by_range('ts', INTERVAL '1 day'));
