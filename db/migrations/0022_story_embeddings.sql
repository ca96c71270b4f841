-- One embedding per news story (issue 16), for "stories like this text" and "more like this story".
--
-- pgvector (the extension `vector`) gives the vector type, the cosine distance operator <=> and the
-- HNSW index. It is not part of PostgreSQL: scripts/install-system.sh builds it for the local server
-- (`make install`); the migrator checks that the server has it before applying this file and says
-- how to install it when it has not. Creating it needs a superuser (its control file is not marked
-- trusted): the embedded stack creates it when it bootstraps the database (`marketpipe up`), as it
-- does TimescaleDB, so here IF NOT EXISTS finds it in place; on an external server the migrating
-- role must be allowed to create it, or an administrator creates it first.
--
-- news.story_embeddings is a hypertable on first_seen (the story's earliest publication, copied
-- from news.stories): a search over a time range touches only that range's chunks, each with its own
-- HNSW index. Its primary key must hold the time column, so "one row per story" is kept by the
-- writer (storage/story_vectors.py): an upsert deletes the story's row under any other first_seen in
-- the same transaction, then inserts or replaces. symbols (the story's tickers) is copied too, so
-- the symbol filter needs no join; the GIN index serves exact symbol look-ups. model names the
-- embedding model (features/embeddings.py): vectors of different models are never compared, and the
-- dimension (384, all-MiniLM-L6-v2) is fixed by the column: a model of another size needs a
-- migration of its own. Vectors are unit length (cosine distance = 1 - dot product).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE news.story_embeddings (
    story_id    bigint      NOT NULL REFERENCES news.stories (story_id) ON DELETE CASCADE,
    first_seen  timestamptz NOT NULL,
    symbols     text[]      NOT NULL DEFAULT '{}',
    model       text        NOT NULL,
    embedding   vector(384) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (story_id, first_seen)
);
SELECT create_hypertable('news.story_embeddings', by_range('first_seen', INTERVAL '30 days'));
CREATE INDEX story_embeddings_story_idx ON news.story_embeddings (story_id);
CREATE INDEX story_embeddings_symbols_idx ON news.story_embeddings USING gin (symbols);
-- m = 16, ef_construction = 64: pgvector's defaults (recall above 0.95 at ef_search 40 on 384-d text
-- embeddings); the search raises ef_search when it filters.
CREATE INDEX story_embeddings_hnsw_idx ON news.story_embeddings
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
