-- Story vectors written in a transaction of their own, after their items: what each vector was
-- computed from, and what a committed batch still owes.
--
-- The news path stores a batch's items in one transaction (under the dedup lock) and embeds the
-- stories it touched in the next (pipeline/news.py, storage/story_vectors.py): the HNSW inserts,
-- the largest part of storing news, no longer hold the dedup lock, so the processor's other lane
-- dedups and writes its batch meanwhile.
--
-- text_md5: the MD5 of the exact text the model read (features.embeddings.story_text: headline,
-- then lead). A vector was stale when an item of its story had been written after it
-- (ingested_at > updated_at); across two transactions that test can miss a change (now() is a
-- transaction's start, and one batch's embedding may read the stories before another batch's items
-- commit, after that batch began). A story is now embedded again when its text, first_seen or
-- tickers differ from its vector's. Rows stored before this migration have none and keep the old
-- rule: a database upgraded with a million vectors does not embed them all again; each gets its
-- digest the next time its story's vector is written. No backfill: rewriting every row would insert
-- every vector into the HNSW graphs again (~8 min per million stories).
ALTER TABLE news.story_embeddings ADD COLUMN text_md5 uuid;

-- The stories whose vectors are owed: the items' transaction queues each news story it touched
-- (queued_at: clock_timestamp(), a new value each time, under the dedup lock), the vectors'
-- transaction deletes the entries it read in the same statement as the stories (an entry queued
-- again meanwhile has another queued_at and stays). A process killed between the two, or a
-- vectors' transaction that failed, leaves its entries: the flows' story-vectors step embeds them.
-- No foreign key: a story deleted meanwhile is dropped from the queue by that step.
CREATE TABLE news.story_vector_queue (
    story_id   bigint      PRIMARY KEY,
    queued_at  timestamptz NOT NULL
);
