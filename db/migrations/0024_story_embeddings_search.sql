-- Search without a time range within 50 ms at 1M stories (issue 16): fewer, smaller HNSW graphs.
--
-- A search without a time range (and "more like this story") walks the HNSW graph of every chunk of
-- news.story_embeddings and merges what they find. Measured on the news bench (1M stories over two
-- years, bench/news_search.py): each chunk's search is about 1 ms when its graph is in shared_buffers
-- and about 8-12 ms when it is not (a thousand page reads from the OS cache per chunk); 25 chunks
-- of 30 days made 100-300 ms. So:
--
-- - 90-day chunks (were 30): 9 graphs over two years instead of 25. A graph of ~110k stories costs
--   little more to search than one of ~40k (the search is logarithmic in the graph's size); a 30-day
--   search reads one or two chunks and the iterative scan filters the rest of the range out.
-- - The graphs index a half-precision copy of each vector (halfvec, 2 bytes a dimension): half the
--   pages (1.1 GB instead of 2.0 GB at 1M stories), so the graphs a search walks stay in
--   shared_buffers. The table keeps the float32 vectors; the search (storage/story_vectors.py)
--   takes twice k candidates in the graphs' order and ranks them by the float32 distance, so the
--   distances it returns are exact. The index expression must be written the same way in the query
--   (`embedding::halfvec(384) <=> $1::halfvec(384)`) for the planner to use it.
--
-- A hypertable's chunk interval applies to chunks created after it is set, so the stored rows are
-- moved into a table of 90-day chunks (every column as it was), which then takes the old one's name,
-- constraints and indexes. The HNSW graphs are built once, after the rows are in (on a database with
-- many stories this migration takes as long as building the index: ~10 min per million on 2 cores).
CREATE TABLE news.story_embeddings_90d (
    story_id    bigint      NOT NULL,
    first_seen  timestamptz NOT NULL,
    symbols     text[]      NOT NULL DEFAULT '{}',
    model       text        NOT NULL,
    embedding   vector(384) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable(
    'news.story_embeddings_90d', by_range('first_seen', INTERVAL '90 days'), create_default_indexes => false
);
INSERT INTO news.story_embeddings_90d (story_id, first_seen, symbols, model, embedding, updated_at)
SELECT story_id, first_seen, symbols, model, embedding, updated_at FROM news.story_embeddings;
DROP TABLE news.story_embeddings;
ALTER TABLE news.story_embeddings_90d RENAME TO story_embeddings;

ALTER TABLE news.story_embeddings ADD CONSTRAINT story_embeddings_pkey PRIMARY KEY (story_id, first_seen);
ALTER TABLE news.story_embeddings ADD CONSTRAINT story_embeddings_story_id_fkey
    FOREIGN KEY (story_id) REFERENCES news.stories (story_id) ON DELETE CASCADE;
CREATE INDEX story_embeddings_first_seen_idx ON news.story_embeddings (first_seen DESC);
CREATE INDEX story_embeddings_story_idx ON news.story_embeddings (story_id);
CREATE INDEX story_embeddings_symbols_idx ON news.story_embeddings USING gin (symbols);
-- A chunk's graph is built in memory when it fits in maintenance_work_mem (~130 MB for a chunk of
-- 110k stories), on disk and several times slower when it does not; the server's default is 64 MB.
SET LOCAL maintenance_work_mem = '512MB';
-- m = 16, ef_construction = 64 as before (pgvector's defaults): at 1M stories the search finds
-- 0.99-1.0 of the exact ten nearest on each kind of query the bench measures.
CREATE INDEX story_embeddings_hnsw_idx ON news.story_embeddings
    USING hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);
