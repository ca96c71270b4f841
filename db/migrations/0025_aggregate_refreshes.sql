-- The 1-minute ranges whose continuous aggregates (5min..1day) still have to be refreshed.
--
-- The policies refresh only the last 3 days; an older range the processing stage changes (a
-- backfill, a gap repair, a vendor's correction) is refreshed by the run that wrote it, right
-- after. That range lived only in the run's memory: a run killed between its processing commit
-- and the refresh (or a lost connection during the commit's acknowledgement, retried and then
-- finding every row unchanged) left those sessions' aggregates stale for good. The processing
-- transaction now inserts the range of each series whose 1-minute bars it inserted or changed
-- here, with the bars (storage.aggregates.record_changed_minutes); the refresh reads every row,
-- refreshes what they cover and deletes the rows it read (tasks.aggregates), so any later run
-- refreshes what a killed one left. range_to is the start of the last minute written.
CREATE TABLE IF NOT EXISTS ops.aggregate_refreshes (
    id          bigserial   PRIMARY KEY,
    range_from  timestamptz NOT NULL,
    range_to    timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT aggregate_refreshes_range CHECK (range_from <= range_to)
);
