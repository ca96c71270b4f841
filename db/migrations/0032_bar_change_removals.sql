-- A stream commit that deletes a closed bar (every counted trade of its window was cancelled,
-- storage/streams.py _delete_bars) logs the bar's key in ops.bar_changes too, with removed = true:
-- subscribe_bars tells its listeners that bar is gone (attrs["removed"]) instead of leaving them
-- holding a bar the store no longer has.
ALTER TABLE ops.bar_changes ADD COLUMN removed boolean NOT NULL DEFAULT false;

-- The highest change number the writer's retention deleted (storage/streams.py _log_changes):
-- subscribe_bars refuses to resume from a number below it, and a subscriber that fell behind it
-- while listening is told, instead of reading a span with changes missing. The numbers have gaps
-- (a rolled-back commit's) and a commit's committed_at is its transaction's start, so neither the
-- oldest number kept nor the deletion order says exactly what was deleted; this does. Existing
-- rows: everything below the oldest kept (or every number drawn, when none is kept) counts as gone.
CREATE TABLE ops.bar_change_retention (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    pruned_through bigint  NOT NULL
);

INSERT INTO ops.bar_change_retention (pruned_through)
SELECT coalesce(
    (SELECT min(seq) - 1 FROM ops.bar_changes),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ops.bar_change_seq)
);
