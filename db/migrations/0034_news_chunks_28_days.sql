-- News hypertables in chunks of 28 days instead of 7, for chunks created from now on.
--
-- A backfill of news meets a new chunk of news.items and of news.item_symbols for every week of
-- history it stores, and creating one is not free: a table, its constraints, its indexes (four on
-- the items, three on the links) and its columnstore settings, ~6 ms of server time for an items
-- chunk and ~3 ms for a links chunk (measured on the news bench's database, 20 chunks each). The
-- news bench (bench/news.py: 180 days, 4,056 items) spent ~0.2 s of its ~2 s creating 54 chunks;
-- with 28-day chunks it creates 14. A live poll is not affected (one chunk a week or a month).
--
-- 28 days of news is small next to memory (tens of thousands of items, a few hundred MB with their
-- bodies), so a chunk's indexes stay cached. The superseded versions (migration 0026) follow the
-- same interval, so an item and its versions tier to the lake together.
--
-- set_chunk_time_interval applies to chunks created after it: stored chunks keep their 7 days, so
-- nothing is moved and this migration is instant on any database.
SELECT set_chunk_time_interval('news.items', INTERVAL '28 days');
SELECT set_chunk_time_interval('news.item_symbols', INTERVAL '28 days');
SELECT set_chunk_time_interval('news.item_versions', INTERVAL '28 days');
SELECT set_chunk_time_interval('news.item_symbol_versions', INTERVAL '28 days');
