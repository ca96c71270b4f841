-- edition: timescale
-- Native compression of the news hypertables (migration 0021), the warm temperature between hot and
-- the lake, as 60_columnstore.sql does for market history (whose header says how the policy is set).
--
-- news.items          segmentby kind; orderby published_at DESC; bloom filters on id, story_id and
--                      canonical_url.
--   Readers ask for the newest items (news latest, the dedup window of the last days), or items by
--   their key whenever they were published (storage.news.stored_items: a vendor's update of an
--   article, an item seen again), by story (the story refresh) or by URL (dedup). A week's chunk of
--   one kind is one segment, newest first. A batch's (source, id) min/max spans nearly every key
--   (a batch is 1,000 items in time order), so it cannot skip a batch on a key lookup: a bloom
--   filter on id can (`id = ANY(...)`), which an orderby column may not have, so the key is out of
--   the order. Measured on 400k items over two years: the key lookup of 50 items 70 -> 29 ms.
--   Changed settings apply to chunks compressed afterwards; earlier ones keep theirs.
-- news.item_symbols   no segment; orderby symbol, published_at DESC, source, id.
--   Readers take a few symbols over a window (the sentiment features, the news scanner): rows of a
--   symbol stay adjacent and each 1,000-row batch's symbol min/max lets a read skip the others.
-- news.item_versions, news.item_symbol_versions (migration 0026: the superseded versions) as the
--   tables they shadow, the version's updated_at last in the order: the sentiment features read
--   them as they read news.item_symbols, joined to their item's version by its whole key.

ALTER TABLE news.items SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'kind',
    timescaledb.compress_orderby = 'published_at DESC',
    timescaledb.sparse_index = 'bloom(id), bloom(story_id), bloom(canonical_url)'
);

ALTER TABLE news.item_symbols SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = '',
    timescaledb.compress_orderby = 'symbol, published_at DESC, source, id'
);

ALTER TABLE news.item_versions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'kind',
    timescaledb.compress_orderby = 'published_at DESC, updated_at',
    timescaledb.sparse_index = 'bloom(id)'
);

ALTER TABLE news.item_symbol_versions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = '',
    timescaledb.compress_orderby = 'symbol, published_at DESC, source, id, updated_at'
);
