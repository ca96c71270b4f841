-- Dead letters: every vendor page or record the pipeline could not process.
--
-- One row per failing request: the natural key is (source, dataset, request_key), where
-- request_key is the SHA-256 of the redacted request (URL, params, parser context), so the same
-- page failing again bumps attempts/last_seen instead of adding a row. request never holds a
-- credential. The failing body is kept inline (payload, when it is JSON or short text) or in the
-- lake (payload_lake_key). A replay that succeeds sets resolved_at; a failure reopens the row.
CREATE TABLE IF NOT EXISTS ops.dead_letters (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source            text        NOT NULL,
    dataset           text        NOT NULL,
    request_key       text        NOT NULL,
    request           jsonb       NOT NULL,
    payload           jsonb,
    payload_lake_key  text,
    error             text        NOT NULL,
    error_type        text        NOT NULL,
    attempts          integer     NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    first_seen        timestamptz NOT NULL DEFAULT now(),
    last_seen         timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz,
    CONSTRAINT dead_letters_natural_key UNIQUE (source, dataset, request_key)
);

-- `marketpipe dlq list` and replay read the open letters, newest failures first.
CREATE INDEX IF NOT EXISTS dead_letters_open_idx
    ON ops.dead_letters (source, dataset, last_seen DESC)
    WHERE resolved_at IS NULL;
