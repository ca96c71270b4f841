-- News articles and social posts (issue 16): one item table for every vendor, the symbols each item
-- is about, and the stories that syndicated copies of one article share.
--
-- news.items is keyed by the vendor's own identity (source, id) plus published_at, the time column
-- (every unique index of a hypertable must contain it; a vendor never moves an article's
-- publication time, an update moves updated_at). An update of an article replaces the stored row
-- (storage/news.py upserts on the key and keeps the newer updated_at), so one row per vendor item.
-- kind is 'news' (Polygon, Alpaca/Benzinga) or 'social' (Reddit posts); community is the
-- subreddit of a post. canonical_url is the URL without tracking parameters, mobile hosts or
-- fragments (quality/dedup.py): the first dedup key. minhash holds the item's MinHash signature
-- (uint32 x num_perm, little endian) so a later run's near-duplicate search does not recompute the
-- stored items' signatures. flags name what was done to the item on the way in (html_stripped,
-- truncated, non_english, unknown_symbols, spam, ...). sentiment is ours (compound in [-1, 1], by
-- sentiment_model); vendor_sentiment is the vendor's own label when it sends one (Polygon's
-- insights, per symbol in news.item_symbols; the item's is their mean label).
--
-- news.stories: one row per story (story_id bigint, stable: news.story_embeddings of migration
-- 0022 references it). first_seen is the earliest publication among its items, the canonical URL
-- and headline are those of that first item, polarity the mean of its items' sentiment.
--
-- news.item_symbols links an item to each symbol it is about, with the per-symbol sentiment
-- (ours and the vendor's); a hypertable on published_at keyed for "this symbol's news in a window"
-- (the feature store's sentiment features and the news-sentiment scanner read it that way).
-- An update whose symbols changed deletes the item's old links in the same transaction.

CREATE SCHEMA IF NOT EXISTS news;

CREATE TABLE news.stories (
    story_id        bigint      PRIMARY KEY,
    first_seen      timestamptz NOT NULL,
    canonical_url   text,
    headline        text        NOT NULL,
    symbols         text[]      NOT NULL DEFAULT '{}',
    items           integer     NOT NULL DEFAULT 1,
    polarity        double precision,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stories_first_seen_idx ON news.stories (first_seen DESC);

CREATE TABLE news.items (
    source              text        NOT NULL,
    id                  text        NOT NULL,
    published_at        timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('news', 'social')),
    story_id            bigint      NOT NULL,
    headline            text        NOT NULL,
    summary             text,
    body                text,
    author              text,
    publisher           text,
    community           text,
    url                 text,
    canonical_url       text,
    symbols             text[]      NOT NULL DEFAULT '{}',
    lang                text,
    flags               text[]      NOT NULL DEFAULT '{}',
    sentiment           double precision,
    sentiment_model     text,
    vendor_sentiment    double precision,
    score               bigint,
    comments            bigint,
    minhash             bytea,
    ingested_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, id, published_at)
);
SELECT create_hypertable('news.items', by_range('published_at', INTERVAL '7 days'));
CREATE INDEX items_story_idx ON news.items (story_id);
CREATE INDEX items_canonical_url_idx ON news.items (canonical_url, published_at DESC) WHERE canonical_url IS NOT NULL;

CREATE TABLE news.item_symbols (
    symbol              text        NOT NULL,
    published_at        timestamptz NOT NULL,
    source              text        NOT NULL,
    id                  text        NOT NULL,
    story_id            bigint      NOT NULL,
    kind                text        NOT NULL,
    sentiment           double precision,
    vendor_sentiment    double precision,
    vendor_label        text,
    PRIMARY KEY (symbol, published_at, source, id)
);
SELECT create_hypertable('news.item_symbols', by_range('published_at', INTERVAL '7 days'));
CREATE INDEX item_symbols_item_idx ON news.item_symbols (source, id);
