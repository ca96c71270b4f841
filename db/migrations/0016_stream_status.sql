-- The live streams' status (streaming/service.py), one row per stream (vendor, and feed for
-- Alpaca): written when a stream starts, every few seconds while it runs and when it stops, so
-- `marketpipe health` (any process, any host) sees spills, drops, dead letters and a stream that
-- stopped reporting (a stalled or killed stream: state 'running' but updated_at old).
CREATE TABLE ops.stream_status (
    stream      text        PRIMARY KEY,
    source      text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('running', 'stopped')),
    symbols     integer     NOT NULL,
    hybrid      boolean     NOT NULL,
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    newest_event timestamptz,
    counters    jsonb       NOT NULL DEFAULT '{}'::jsonb
);
