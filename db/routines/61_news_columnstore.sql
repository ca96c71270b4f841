-- edition: timescale
-- Native compression of the news hypertables (migration 0021), the warm temperature between hot and
-- the lake, as 60_columnstore.sql does for market history (whose header says how the policy is set).
--
-- news.items          segmentby kind; orderby published_at DESC, source, id.
--   Readers ask for the newest items (news latest, the dedup window of the last days) or an item by
--   its key on update; a week's chunk of one kind is one segment, newest first, and the primary key
--   completes the order so ON CONFLICT finds a row's batch by its min/max.
-- news.item_symbols   no segment; orderby symbol, published_at DESC, source, id.
--   Readers take a few symbols over a window (the sentiment features, the news scanner): rows of a
--   symbol stay adjacent and each 1,000-row batch's symbol min/max lets a read skip the others.

ALTER TABLE news.items SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'kind',
    timescaledb.compress_orderby = 'published_at DESC, source, id'
);

ALTER TABLE news.item_symbols SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = '',
    timescaledb.compress_orderby = 'symbol, published_at DESC, source, id'
);
