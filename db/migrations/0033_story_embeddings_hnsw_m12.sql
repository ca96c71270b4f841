-- Story vectors: HNSW graphs with 12 links a node instead of 16, so storing news keeps up with ingest.
--
-- Every story the news flow stores is inserted into its chunk's HNSW graph in the same transaction
-- as its items (storage/story_vectors.py). An insertion searches the graph for the new node's
-- neighbours and then rewrites each neighbour's link list, choosing again among its links; that
-- second part grows with m. On the news bench (bench/news.py: 2,012 stories, 180 days) inserting
-- the batch's vectors was the largest single cost of the news path: 1.16-1.26 s with m = 16, 0.85 s
-- with m = 12 (ef_construction 64 both; 0.76 s at ef_construction 40, 0.54-0.66 s at m 8-10),
-- the server's time for the whole run's items and links being ~0.35 s.
--
-- The search (storage/story_vectors.py) walks the graphs for two thousand candidates and ranks them
-- by the float32 vectors, so a graph with fewer links loses little: measured on the search bench
-- (bench/news_search.py, 1M stories, graphs rebuilt by this definition) and reported in the README.
-- ef_construction stays 64 (its cost is the first part, which fewer links make cheaper too).
--
-- The graphs are built again from the stored vectors: on a database with many stories this takes
-- about as long as migration 0024 did (~8-10 min per million stories on 2 cores).
DROP INDEX news.story_embeddings_hnsw_idx;
SET LOCAL maintenance_work_mem = '512MB';
CREATE INDEX story_embeddings_hnsw_idx ON news.story_embeddings
    USING hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) WITH (m = 12, ef_construction = 64);
