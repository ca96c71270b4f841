-- A stream commit that deletes a closed bar (every counted trade of its window was cancelled,
-- storage/streams.py _delete_bars) logs the bar's key in ops.bar_changes too, with removed = true:
-- subscribe_bars tells its listeners that bar is gone (attrs["removed"]) instead of leaving them
-- holding a bar the store no longer has.
ALTER TABLE ops.bar_changes ADD COLUMN removed boolean NOT NULL DEFAULT false;
