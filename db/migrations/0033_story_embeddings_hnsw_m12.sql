-- Story vectors: HNSW graphs with 12 links a node instead of 16, so storing news keeps up with ingest.
--
-- Every story the news flow stores is inserted into its chunk's HNSW graph in the same transaction
-- as its items (storage/story_vectors.py). An insertion searches the graph for the new node's
-- neighbours and then rewrites each neighbour's link list, choosing again among its links; that
-- second part grows with m, the first with ef_construction. On the news bench (bench/news.py: 2,012
-- stories, 180 days) inserting the run's vectors was the largest single cost of the news path
-- (measured on an idle machine, two rounds): m = 16, ef_construction = 64: 1.17-1.18 s; m = 12: 0.84-0.87
-- s; m = 12, ef_construction = 40: 0.75-0.78 s; m = 10, ef_construction = 40: 0.54-0.62 s; m = 8: 0.47 s;
-- the server's time for the whole run's items and links being ~0.25 s.
--
-- Fewer links cost recall: on the search bench (bench/news_search.py, 1M stories, graphs rebuilt by
-- each definition; the search keeps max(40, 2k) candidates per graph and ranks them by the float32
-- vectors) recall@10 for no range / 30 days / one ticker / like-story / a named ticker was 0.994 /
-- 0.994 / 1.0 / 1.0 / 1.0 at m = 16, 0.994 / 0.994 / 1.0 / 1.0 / 0.981 at m = 12 (ef_construction 64),
-- 0.91 / 0.94 / 1.0 / 0.91 / 0.95 at m = 12, ef_construction = 40, and 0.85 / 0.94 / 1.0 / 0.83 / 0.88 at
-- m = 10, ef_construction = 40 (no range 0.96-0.99 only with 100-200 candidates a graph). So m = 12
-- and ef_construction stays 64: the insertions' cost drops by a quarter, the recall by 0.02 at most.
--
-- The graphs are built again from the stored vectors: on a database with many stories this takes
-- about as long as migration 0024 did (~8-10 min per million stories on 2 cores).
DROP INDEX news.story_embeddings_hnsw_idx;
SET LOCAL maintenance_work_mem = '512MB';
CREATE INDEX story_embeddings_hnsw_idx ON news.story_embeddings
    USING hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) WITH (m = 12, ef_construction = 64);
