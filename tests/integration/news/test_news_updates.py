"""An article's versions: the newest stored version wins whatever order they arrive in, also when
an update moved the publication time (the hypertable's key holds it, so two versions of one article
have different keys). Items of 2001 only, source 'updtest' (a range and a source no other test uses)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from core import model
from features.sentiment import load_sentiment_model
from pipeline.news import store_items
from quality.dedup import DedupConfig

SOURCE = "updtest"


def version(item: str, ts: str, updated: str, headline: str, symbols: str) -> dict[str, str]:
    body = f"{headline}. The company said so in a statement on its results and outlook."
    return {"id": item, "ts": ts, "updated_ts": updated, "headline": headline, "body": body, "symbols": symbols}


def store(conn: psycopg.Connection, *versions: dict[str, str]):
    rows = [{**v, "source": SOURCE} for v in versions]
    frame = model.frame(model.NEWS, {k: [r.get(k) for r in rows] for k in model.NEWS}, what="test news")
    with conn.transaction():
        written, _ = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig())
    return written


def stored(conn: psycopg.Connection, item: str) -> list[tuple]:
    rows = conn.execute(
        "SELECT published_at::text, headline, symbols FROM news.items WHERE source = %s AND id = %s", (SOURCE, item)
    ).fetchall()
    links = conn.execute(
        "SELECT symbol, published_at::text FROM news.item_symbols WHERE source = %s AND id = %s ORDER BY symbol",
        (SOURCE, item),
    ).fetchall()
    return [*rows, *links]


@pytest.fixture
def clean(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    yield conn
    for table in ("news.item_symbol_versions", "news.item_versions", "news.item_symbols", "news.items"):
        conn.execute(f"DELETE FROM {table} WHERE source = %s", (SOURCE,))  # type: ignore[arg-type]


NEWER = version("a1", "2001-03-05T15:00:00Z", "2001-03-06T09:00:00Z", "ZZQV raises its outlook", "ZZQV,ZZQW")
OLDER = version("a1", "2001-03-05T14:00:00Z", "2001-03-05T14:00:00Z", "ZZQV to report results", "ZZQV")


def test_a_stale_version_with_another_publication_time_changes_nothing(clean: psycopg.Connection) -> None:
    store(clean, NEWER)
    before = stored(clean, "a1")
    written = store(clean, OLDER)  # arrives late: an earlier version, published an hour earlier
    assert written.inserted == 0 and written.updated == 0
    assert stored(clean, "a1") == before
    assert before[0][1] == "ZZQV raises its outlook" and [r[0] for r in before[1:]] == ["ZZQV", "ZZQW"]


def test_a_newer_version_with_another_publication_time_replaces_the_stored_one(clean: psycopg.Connection) -> None:
    store(clean, OLDER)
    written = store(clean, NEWER)
    assert written.inserted == 1
    rows = stored(clean, "a1")
    assert rows[0] == ("2001-03-05 15:00:00+00", "ZZQV raises its outlook", ["ZZQV", "ZZQW"])
    assert rows[1:] == [("ZZQV", "2001-03-05 15:00:00+00"), ("ZZQW", "2001-03-05 15:00:00+00")]


def test_two_versions_in_one_batch_store_the_newer_once(clean: psycopg.Connection) -> None:
    written = store(clean, OLDER, NEWER)
    assert written.inserted == 1
    rows = stored(clean, "a1")
    assert rows[0] == ("2001-03-05 15:00:00+00", "ZZQV raises its outlook", ["ZZQV", "ZZQW"])
    assert [r[0] for r in rows[1:]] == ["ZZQV", "ZZQW"]


def filler(count: int, day: str, prefix: str) -> list[dict[str, str]]:
    return [
        version(
            f"{prefix}{i}",
            f"{day}T{10 + i // 60:02d}:{i % 60:02d}:00Z",
            f"{day}T20:00:00Z",
            f"ZZQV item {prefix} {i}",
            "ZZQV",
        )
        for i in range(count)
    ]


def test_updates_in_compressed_history_decompress_only_the_rows_they_change(clean: psycopg.Connection) -> None:
    """Three weeks apart, 151 and 600 items in compressed chunks; under a decompression limit of 500
    tuples a transaction, an update that moves an article's time, one at the same time and a stale
    one are written (a statement joining on (source, id) alone decompressed all 751 and failed)."""
    moved = version("c1", "2001-06-05T14:00:00Z", "2001-06-05T14:00:00Z", "ZZQV to report results", "ZZQV")
    same = version("c2", "2001-06-05T15:00:00Z", "2001-06-05T15:00:00Z", "ZZQV hires a new CFO", "ZZQV")
    store(clean, moved, same, *filler(149, "2001-06-05", "f"), *filler(600, "2001-06-26", "g"))
    for table in ("news.items", "news.item_symbols"):
        clean.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks(%s::regclass,"
            " older_than => '2001-07-15'::timestamptz, newer_than => '2001-06-01'::timestamptz) c",
            (table,),
        )
    with clean.transaction():
        clean.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 500")
        written = store(
            clean,
            version("c1", "2001-06-05T14:30:00Z", "2001-06-06T09:00:00Z", "ZZQV beats estimates", "ZZQV,ZZQW"),
            version("c2", "2001-06-05T15:00:00Z", "2001-06-06T10:00:00Z", "ZZQV names a new CFO", "ZZQV,ZZQX"),
            version("f0", "2001-06-05T09:00:00Z", "2001-06-04T09:00:00Z", "ZZQV item f 0 draft", "ZZQV"),  # stale
        )
    assert (written.inserted, written.updated) == (1, 1)
    assert stored(clean, "c1") == [
        ("2001-06-05 14:30:00+00", "ZZQV beats estimates", ["ZZQV", "ZZQW"]),
        ("ZZQV", "2001-06-05 14:30:00+00"),
        ("ZZQW", "2001-06-05 14:30:00+00"),
    ]
    assert stored(clean, "c2") == [
        ("2001-06-05 15:00:00+00", "ZZQV names a new CFO", ["ZZQV", "ZZQX"]),
        ("ZZQV", "2001-06-05 15:00:00+00"),
        ("ZZQX", "2001-06-05 15:00:00+00"),
    ]
    assert stored(clean, "f0")[0][:2] == ("2001-06-05 10:00:00+00", "ZZQV item f 0")
    count = clean.execute("SELECT count(*) FROM news.items WHERE source = %s", (SOURCE,)).fetchone()
    assert count == (751,)


def test_a_story_counts_its_copies_from_earlier_batches_and_an_earlier_copy_moves_its_start(
    clean: psycopg.Connection,
) -> None:
    """The story refresh reads items from the story's first one on (a bound that leaves older chunks
    out): copies stored in earlier batches, before the batch's own items, still count."""
    text = "ZZQY agrees to buy a rival chip designer for four billion dollars in cash"

    def copy(item: str, ts: str) -> dict[str, str]:
        return {**version(item, ts, ts, text, "ZZQY"), "body": text + ". The boards approved the deal."}

    story_of = "SELECT story_id FROM news.items WHERE source = %s AND id = %s"
    store(clean, copy("s1", "2001-09-04T10:00:00Z"))
    store(clean, copy("s2", "2001-09-04T09:00:00Z"))  # an earlier copy, in a later batch
    store(clean, copy("s3", "2001-09-04T11:00:00Z"))
    stories = {clean.execute(story_of, (SOURCE, i)).fetchone()[0] for i in ("s1", "s2", "s3")}
    assert len(stories) == 1
    row = clean.execute(
        "SELECT items, first_seen::text FROM news.stories WHERE story_id = %s", (stories.pop(),)
    ).fetchone()
    assert row == (3, "2001-09-04 09:00:00+00")


def _compressed_rows_read(plan: dict) -> int:
    """Rows the plan read from compressed chunks' tables: one row is one compressed batch."""
    own = plan["Actual Rows"] if str(plan.get("Relation Name", "")).startswith("compress_hyper_") else 0
    return own + sum(_compressed_rows_read(child) for child in plan.get("Plans", []))


def test_a_key_lookup_in_compressed_history_reads_only_the_batches_whose_bloom_filter_may_hold_it(
    clean: psycopg.Connection,
) -> None:
    """2,400 items of one chunk (Thursday 2001-08-09 to Sunday) compressed into three batches of up
    to 1,000 rows: the lookup of one item by key, far outside the dedup window, reads one batch; the
    bloom filter on id (61_news_columnstore.sql) rules out the two others, where the key's min/max
    could not (a batch in time order spans nearly every id)."""
    from datetime import UTC, datetime

    from storage.news import STORED_ITEMS_SQL, stored_items, stored_items_params

    items = [
        version(
            f"k{i}",
            f"2001-08-{9 + i // 600:02d}T{8 + i % 600 // 60:02d}:{i % 60:02d}:00Z",
            "2001-08-13T00:00:00Z",
            f"ZZQV item k {i}",
            "ZZQV",
        )
        for i in range(2400)
    ]
    store(clean, *items)
    chunks = clean.execute(
        "SELECT DISTINCT tableoid::regclass::text FROM news.items WHERE source = %s AND id LIKE 'k%%'", (SOURCE,)
    ).fetchall()
    assert len(chunks) == 1  # the chunk holding them all (28 days, migration 0034)
    (chunk,) = chunks[0]
    clean.execute("SELECT compress_chunk(%s::regclass)", (chunk,))
    compressed = clean.execute(
        "SELECT cc.schema_name, cc.table_name FROM _timescaledb_catalog.chunk c"
        " JOIN _timescaledb_catalog.chunk cc ON cc.id = c.compressed_chunk_id"
        " WHERE format('%%I.%%I', c.schema_name, c.table_name)::regclass = %s::regclass",
        (chunk,),
    ).fetchone()
    (batches,) = clean.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*compressed))).fetchone()
    assert batches == 3
    window = datetime(2001, 1, 1, tzinfo=UTC), datetime(2001, 1, 2, tzinfo=UTC)  # holds none of them
    key = [(SOURCE, "k1234")]
    assert [(i.source, i.id) for i in stored_items(clean, *window, key)] == key
    plan = clean.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + STORED_ITEMS_SQL, stored_items_params(*window, key))
    assert _compressed_rows_read(plan.fetchone()[0][0]["Plan"]) == 1
