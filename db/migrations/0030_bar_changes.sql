-- Every final bar a stream commit wrote, by key, numbered in commit order (storage/streams.py):
-- what subscribe_bars reads, from the number it had reached. A listener gets each change once (not
-- the announced range's other bars again), and one that lost its connection resumes from its
-- number without a gap. Numbers are taken under a transaction-level advisory lock, so a higher
-- number is never committed before a lower one; rows older than a day are deleted by the writer.
CREATE SEQUENCE ops.bar_change_seq;

CREATE TABLE ops.bar_changes (
    seq          bigint      PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now(),
    source       text        NOT NULL,
    timeframe    text        NOT NULL,
    symbol       text        NOT NULL,
    ts           timestamptz NOT NULL
);

CREATE INDEX bar_changes_timeframe_seq ON ops.bar_changes (timeframe, seq);
CREATE INDEX bar_changes_committed_at ON ops.bar_changes (committed_at);
