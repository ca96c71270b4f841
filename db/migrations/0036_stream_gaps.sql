-- The spans a hybrid stream missed (streaming/service.py, streaming/gaps.py), one row per span,
-- symbol and dataset. They lived only in the stream's memory: a process killed while a span was
-- open or its catch-up in flight left it to the watermarks held at its start, which a non-hybrid
-- run moves past, and `marketpipe health` could not name it once the process was gone.
-- A row is inserted 'open' in the transaction of the first commit after its span is known (a
-- micro-batch, or the catch-up's own data), set 'applied' in the transaction that stores the
-- catch-up's data, and 'given_up' when the run that recorded it spent its retries. The next
-- hybrid run of the stream loads its symbols' rows not applied and fetches them first.
CREATE TABLE ops.stream_gaps (
    span_id     text        NOT NULL,
    stream      text        NOT NULL,
    source      text        NOT NULL,
    symbol      text        NOT NULL,
    dataset     text        NOT NULL CHECK (dataset IN ('trades', 'bars')),
    span_start  timestamptz NOT NULL,
    span_end    timestamptz NOT NULL,
    cause       text        NOT NULL,
    state       text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'applied', 'given_up')),
    error       text,
    retries     integer     NOT NULL DEFAULT 0,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (span_id, symbol, dataset),
    CONSTRAINT stream_gaps_span CHECK (span_start <= span_end)
);
CREATE INDEX stream_gaps_unfilled ON ops.stream_gaps (stream, symbol) WHERE state <> 'applied';
