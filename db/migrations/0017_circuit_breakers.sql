-- The vendors' circuit breakers, shared by every process on every host (sources/breaker_store.py).
--
-- A breaker lives in the memory of each process that makes vendor requests; this table is where
-- a process publishes its breaker's changes of state (opened after N consecutive transient
-- failures, half-open when the cool-down has passed and a trial request goes out, closed when
-- a request succeeds), and where the other processes and `marketpipe health` read them. A worker
-- that finds a vendor down thus stops the others hammering it; a worker whose trial succeeds
-- closes it for all. One row per source: the newest change wins (updated_at). last_error is the
-- error text with the source's credentials removed; written_by names the host and process.
CREATE TABLE IF NOT EXISTS ops.circuit_breakers (
    source                text             PRIMARY KEY CHECK (source <> ''),
    state                 text             NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    opened_at             timestamptz,
    consecutive_failures  integer          NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    cooldown_seconds      double precision NOT NULL CHECK (cooldown_seconds > 0),
    last_error            text,
    written_by            text             NOT NULL,
    updated_at            timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT circuit_breakers_opened CHECK (state = 'closed' OR opened_at IS NOT NULL)
);
