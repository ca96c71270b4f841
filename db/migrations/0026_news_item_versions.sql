-- The superseded versions of news items (review pit.md finding 4): an update of an article replaces
-- its row in news.items and its links in news.item_symbols (migration 0021: the latest version is
-- what `news latest|search|story` and the readers show), so the earlier version's headline,
-- sentiment and symbols were lost and the sentiment features, joined point in time to bars by
-- publication time, counted a 15:30 update's sentiment and symbols for a 10:06 bar.
--
-- Before an update overwrites or deletes a stored version (storage/news.py write_news), that version
-- is copied here with superseded_at, the updated_at of the version that replaced it. A version is
-- thus known over [updated_at, superseded_at); the one in news.items from its updated_at on. The
-- sentiment features of a bar closing at T count each item as its version known at T, and an item
-- whose first stored version was updated after T not at all.
--
-- news.item_versions       the columns of news.items (minhash left out: only the current version is
--                          a dedup candidate), ingested_at when that version was stored, and
--                          superseded_at. One row per version: (source, id, updated_at), and
--                          published_at, the hypertable's time column (an update may move it).
-- news.item_symbol_versions the links of each superseded version (an update can change the
--                          symbols: the old version's keep counting until it was superseded, the
--                          new ones from then on), keyed like news.item_symbols plus updated_at.
--
-- Only updates write here (a few in a hundred items), so the tables stay small; hypertables on
-- published_at in 7-day chunks like the tables they shadow, so they compress (61_news_columnstore.sql)
-- and tier to the lake (news_item_versions, news_item_symbol_versions) with the same weeks.

CREATE TABLE news.item_versions (
    source              text        NOT NULL,
    id                  text        NOT NULL,
    published_at        timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    superseded_at       timestamptz NOT NULL,
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
    ingested_at         timestamptz NOT NULL,
    CHECK (superseded_at > updated_at),
    PRIMARY KEY (source, id, updated_at, published_at)
);
SELECT create_hypertable('news.item_versions', by_range('published_at', INTERVAL '7 days'));

CREATE TABLE news.item_symbol_versions (
    symbol              text        NOT NULL,
    published_at        timestamptz NOT NULL,
    source              text        NOT NULL,
    id                  text        NOT NULL,
    updated_at          timestamptz NOT NULL,
    superseded_at       timestamptz NOT NULL,
    story_id            bigint      NOT NULL,
    kind                text        NOT NULL,
    sentiment           double precision,
    vendor_sentiment    double precision,
    vendor_label        text,
    CHECK (superseded_at > updated_at),
    PRIMARY KEY (symbol, published_at, source, id, updated_at)
);
SELECT create_hypertable('news.item_symbol_versions', by_range('published_at', INTERVAL '7 days'));
