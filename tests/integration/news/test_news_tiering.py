"""News tiers to the lake like bars: chunks of news.items and news.item_symbols older than the hot
window become Parquet (cold/news_items, cold/news_item_symbols), listed in the manifest, and leave
the hot store. Items of 1999 only (a range no other test stores), tiered by an explicit range."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from core import model
from core.errors import StorageError
from core.settings import Settings
from features.sentiment import load_sentiment_model
from pipeline.news import store_items
from quality.dedup import DedupConfig
from storage.lake import Lake
from storage.lifecycle import compact
from storage.news import NewsWriteResult
from storage.tiering import manifest_files, tier_chunks

OLD = datetime(1999, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, tzinfo=UTC)


def test_old_news_moves_to_the_lake_with_its_links(stack: Settings, conn, lake) -> None:
    rows = [
        {"id": f"t{i}", "ts": f"1999-03-0{i + 1}T15:00:00Z", "headline": f"ZZQT wins contract {i}",
         "body": f"Text {i}.", "symbols": "ZZQT,ZZQU" if i % 2 else "ZZQT", "source": "tiertest"}
        for i in range(4)
    ]  # fmt: skip
    frame = model.frame(model.NEWS, {k: [r.get(k) for r in rows] for k in model.NEWS}, what="test news")
    with conn.transaction():
        written, _ = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig())
    assert written.inserted == 4
    report = tier_chunks(
        conn, lake, stack, older_than=OLD[1], newer_than=OLD[0], dataset=["news_items", "news_item_symbols"]
    )
    moved: dict[str, int] = {}
    for r in report.chunks:
        moved[r.dataset] = moved.get(r.dataset, 0) + r.rows
    assert moved == {"news_items": 4, "news_item_symbols": 6}
    left = conn.execute("SELECT count(*) FROM news.items WHERE source = 'tiertest'").fetchone()[0]
    assert left == 0
    keys = [k for r in report.chunks if r.dataset == "news_items" for k in r.files]
    ids = [i for k in keys for i in lake.read_parquet(k)["id"].to_pylist()]
    symbols = {s for k in keys for s in lake.read_parquet(k)["symbols"].to_pylist()}
    assert sorted(ids) == ["t0", "t1", "t2", "t3"] and symbols == {"{ZZQT,ZZQU}", "{ZZQT}"}
    assert keys and all(k.startswith("cold/news_items/date=1999-03-0") for k in keys)
    manifest = conn.execute(
        "SELECT dataset, sum(row_count) FROM ops.lake_files WHERE dataset LIKE 'news%%' AND min_ts < '2000-01-01'"
        " GROUP BY dataset ORDER BY dataset"
    ).fetchall()
    assert manifest == [("news_item_symbols", 6), ("news_items", 4)]


def test_a_stale_version_written_after_the_newest_was_tiered_does_not_replace_it_in_the_lake(
    stack: Settings, conn, lake
) -> None:
    """Items of 1973 only. Stored without the lake (store_items' ``lake`` not given: the writer's
    updated_at guard sees hot rows only), a late copy of an article's earlier version, arriving after
    the newest was tiered, is stored hot as new and tiered as a newer object of the same partition;
    compaction keeps the latest version, not that object's."""
    body = "The company said so in a statement on its results and outlook."
    newest = {
        "id": "v1",
        "ts": "1973-03-05T15:00:00Z",
        "updated_ts": "1973-03-06T09:00:00Z",
        "headline": "ZZQX raises its outlook",
        "body": f"Raised. {body}",
        "symbols": "ZZQX",
        "source": "tierver",
    }
    stale = {**newest, "updated_ts": "1973-03-05T15:00:00Z", "headline": "ZZQX to report results"}
    year = datetime(1973, 1, 1, tzinfo=UTC), datetime(1973, 12, 31, tzinfo=UTC)

    def store(row: dict[str, str]) -> int:
        frame = model.frame(model.NEWS, {k: [row.get(k)] for k in model.NEWS}, what="test news")
        with conn.transaction():
            written, _ = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig())
        tier_chunks(
            conn, lake, stack, older_than=year[1], newer_than=year[0], dataset=["news_items", "news_item_symbols"]
        )
        return written.inserted

    assert store(newest) == 1
    assert store(stale) == 1  # the hot store no longer holds the newest version to refuse it against

    compact(conn, lake, stack, dataset="news_items", min_files=2)

    files = [f for f in manifest_files(conn, dataset="news_items") if f.partition == "date=1973-03-05"]
    assert len(files) == 1
    kept = lake.read_parquet(files[0].key).to_pylist()
    assert [(r["id"], r["headline"]) for r in kept if r["source"] == "tierver"] == [("v1", "ZZQX raises its outlook")]


def test_the_superseded_versions_of_old_news_move_to_the_lake_too(stack: Settings, conn, lake) -> None:
    """An article of 1998 and its update: the replaced version and its link tier like the items."""
    versions = [
        {"id": "v1", "ts": "1998-03-02T15:00:00Z", "updated_ts": updated, "headline": headline, "body": "Text.",
         "symbols": symbols, "source": "tiertest"}
        for updated, headline, symbols in (
            ("1998-03-02T15:00:00Z", "ZZQT wins a contract", "ZZQT"),
            ("1998-03-02T18:00:00Z", "ZZQT and ZZQU win a contract", "ZZQT,ZZQU"),
        )
    ]  # fmt: skip
    for version in versions:
        frame = model.frame(model.NEWS, {k: [version.get(k)] for k in model.NEWS}, what="test news")
        with conn.transaction():
            store_items(conn, frame, "news", load_sentiment_model(), DedupConfig())
    datasets = ["news_item_versions", "news_item_symbol_versions"]
    report = tier_chunks(
        conn, lake, stack, older_than=datetime(1998, 12, 31, tzinfo=UTC), newer_than=datetime(1998, 1, 1, tzinfo=UTC),
        dataset=datasets,
    )  # fmt: skip
    moved = {r.dataset: r.rows for r in report.chunks}
    assert moved == {"news_item_versions": 1, "news_item_symbol_versions": 1}
    left = conn.execute("SELECT count(*) FROM news.item_versions WHERE source = 'tiertest'").fetchone()[0]
    assert left == 0
    (key,) = [k for r in report.chunks if r.dataset == "news_item_versions" for k in r.files]
    cold = lake.read_parquet(key).to_pylist()
    assert [(r["headline"], r["symbols"], str(r["superseded_at"])) for r in cold] == [
        ("ZZQT wins a contract", "{ZZQT}", "1998-03-02 18:00:00+00:00")
    ]


def test_an_article_whose_item_is_tiered_but_not_its_links_is_stored_again(stack: Settings, conn, lake) -> None:
    """Items of 1965 only. news_items tiers alone (its own hot window, or ``lake tier --dataset
    news_items``): the item goes cold, its links stay hot. Storing the article again (a re-ingest,
    then an update that drops a symbol) wrote its links by a plain COPY, which failed on their key
    and lost the whole batch; now the links are rewritten, one per symbol of the version stored."""
    first = {
        "id": "m1",
        "ts": "1965-03-02T15:00:00Z",
        "updated_ts": "1965-03-02T15:00:00Z",
        "headline": "ZZQM and ZZQN sign a supply deal",
        "body": "The companies said so in a statement on the deal and its terms.",
        "symbols": "ZZQM,ZZQN",
        "source": "tiermix",
    }
    update = {**first, "updated_ts": "1965-03-02T18:00:00Z", "headline": "ZZQM signs a supply deal", "symbols": "ZZQM"}
    year = datetime(1965, 1, 1, tzinfo=UTC), datetime(1965, 12, 31, tzinfo=UTC)

    def store(row: dict[str, str]) -> int:
        frame = model.frame(model.NEWS, {k: [row.get(k)] for k in model.NEWS}, what="test news")
        with conn.transaction():
            written, _ = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig())
        return written.inserted + written.updated

    def tier_items_alone() -> None:
        tier_chunks(conn, lake, stack, older_than=year[1], newer_than=year[0], dataset="news_items")
        assert conn.execute("SELECT count(*) FROM news.items WHERE source = 'tiermix'").fetchone()[0] == 0

    def hot_links() -> list[tuple[str, str]]:
        return conn.execute(
            "SELECT l.symbol, i.headline FROM news.item_symbols l"
            " LEFT JOIN news.items i USING (source, id, published_at) WHERE l.source = 'tiermix' ORDER BY 1"
        ).fetchall()

    assert store(first) == 1
    tier_items_alone()
    assert [s for s, _ in hot_links()] == ["ZZQM", "ZZQN"]

    assert store(first) == 1  # a re-ingest: the item is hot again, its links once each
    assert hot_links() == [("ZZQM", first["headline"]), ("ZZQN", first["headline"])]

    tier_items_alone()
    assert store(update) == 1  # the dropped symbol's link goes
    assert hot_links() == [("ZZQM", update["headline"])]


def _store_one(conn, row: dict[str, str], lake: Lake | None) -> NewsWriteResult:
    frame = model.frame(model.NEWS, {k: [row.get(k)] for k in model.NEWS}, what="test news")
    with conn.transaction():
        written, _ = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig(), lake=lake)
    return written


def _article(source: str, ts: str, updated: str, headline: str) -> dict[str, str]:
    body = "The company said so in a statement on its results and outlook."
    return {"id": "a1", "ts": ts, "updated_ts": updated, "headline": headline, "body": body, "symbols": "ZZQR",
            "source": source}  # fmt: skip


def _tier_year(conn, lake: Lake, stack: Settings, year: int) -> None:
    bounds = datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, tzinfo=UTC)
    tier_chunks(
        conn, lake, stack, older_than=bounds[1], newer_than=bounds[0], dataset=["news_items", "news_item_symbols"]
    )


def test_a_re_ingest_of_a_tiered_article_keeps_its_story(stack: Settings, conn, lake) -> None:
    """Items of 1963 only. Two vendors' copies of one article (one canonical URL) are one story; both
    tiered, the second vendor's period is re-ingested. The writer deduplicated against the hot items
    only, so the copy founded a story of its own; the tiered copies are read now (the manifest lists
    the object of their day) and it keeps the story it had."""
    url = "https://example.com/news/zzqr-wins-a-large-contract"
    copies = [
        {**_article(source, ts, ts, "ZZQR wins a large contract"), "url": url}
        for source, ts in (("tierstory1", "1963-03-05T15:00:00Z"), ("tierstory2", "1963-03-05T15:10:00Z"))
    ]
    frame = model.frame(model.NEWS, {k: [r.get(k) for r in copies] for k in model.NEWS}, what="test news")
    with conn.transaction():
        store_items(conn, frame, "news", load_sentiment_model(), DedupConfig(), lake=lake)
    stories = "SELECT DISTINCT story_id FROM news.items WHERE source LIKE 'tierstory%'"
    (story_id,) = conn.execute(stories).fetchall()
    _tier_year(conn, lake, stack, 1963)

    again = _store_one(conn, copies[1], lake)

    assert again.inserted == 1 and again.stories_founded == 0
    assert conn.execute(stories).fetchall() == [story_id]


def test_a_stale_copy_arriving_after_the_newest_version_was_tiered_is_refused(stack: Settings, conn, lake) -> None:
    """Items of 1962 only. The newest version is tiered; a late copy of the earlier version, at the
    same publication time and at another, was stored hot as new (the upsert saw no row to refuse
    it against); now the tiered version counts as stored and both are refused."""
    newest = _article("tierstale", "1962-03-05T15:00:00Z", "1962-03-06T09:00:00Z", "ZZQR raises its outlook")
    _store_one(conn, newest, lake)
    _tier_year(conn, lake, stack, 1962)

    for published in ("1962-03-05T15:00:00Z", "1962-03-05T14:58:00Z"):
        stale = _article("tierstale", published, published, "ZZQR to report results")
        written = _store_one(conn, stale, lake)
        assert (written.inserted, written.updated, written.unchanged) == (0, 0, 1)
    assert conn.execute("SELECT count(*) FROM news.items WHERE source = 'tierstale'").fetchone()[0] == 0


def test_storing_news_whose_window_is_not_tiered_reads_no_lake_object(stack: Settings, conn, lake) -> None:
    """Items of 1961 only, the ingest of news whose dedup window holds nothing tiered: the manifest
    says so and no object is read, proved by a lake whose bucket does not exist (any read fails).
    Once that window is tiered the same lake is read, and fails: the error names the object, and
    nothing of the batch is stored (the caller's transaction rolls back; the batch path's pages
    stay pending with the error)."""
    absent = Lake(lake.endpoint_url, stack.lake.access_key, stack.lake.secret_key.get_secret_value(),  # type: ignore[union-attr]
                  "no-such-bucket-news3", stack.lake.region)  # fmt: skip
    row = _article("tierquiet", "1961-03-05T15:00:00Z", "1961-03-05T15:00:00Z", "ZZQR names a new chief")
    assert _store_one(conn, row, absent).inserted == 1
    assert _store_one(conn, {**row, "id": "a2"}, absent).inserted == 1

    _tier_year(conn, lake, stack, 1961)
    (tiered,) = manifest_files(conn, dataset="news_items", start=datetime(1961, 1, 1, tzinfo=UTC),
                               end=datetime(1962, 1, 1, tzinfo=UTC))  # fmt: skip
    with pytest.raises(StorageError, match=re.escape(f"s3://no-such-bucket-news3/{tiered.key}")):
        _store_one(conn, {**row, "id": "a3"}, absent)
    assert conn.execute("SELECT count(*) FROM news.items WHERE source = 'tierquiet' AND id = 'a3'").fetchone()[0] == 0


@pytest.mark.parametrize(("year", "symbols"), [(1963, "ZZQP"), (1964, "")], ids=["disjoint", "none"])
def test_a_version_naming_none_of_the_hot_links_symbols_drops_them(
    stack: Settings, conn, lake, year: int, symbols: str
) -> None:
    """The item row is tiered, its ZZQM link stays hot; the version stored next names only ZZQP
    (or no symbol). No link of it met the old one, so the old link was kept and joined the new row
    (counted with the old sentiment by scan.news_sentiment and the features). Now it goes."""
    first = {
        "id": f"d{year}",
        "ts": f"{year}-03-02T15:00:00Z",
        "updated_ts": f"{year}-03-02T15:00:00Z",
        "headline": "ZZQM signs a supply deal",
        "body": "The company said so in a statement on the deal and its terms.",
        "symbols": "ZZQM",
        "source": "tierdisjoint",
    }
    update = {**first, "updated_ts": f"{year}-03-02T18:00:00Z", "headline": "A deal is signed", "symbols": symbols}
    span = datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, tzinfo=UTC)

    def store(row: dict[str, str]) -> int:
        frame = model.frame(model.NEWS, {k: [row.get(k)] for k in model.NEWS}, what="test news")
        with conn.transaction():
            written, _ = store_items(conn, frame, "news", load_sentiment_model(), DedupConfig())
        return written.inserted + written.updated

    def hot_links() -> list[str]:
        return [
            r[0]
            for r in conn.execute(
                "SELECT symbol FROM news.item_symbols WHERE source = 'tierdisjoint' AND id = %s ORDER BY 1",
                (first["id"],),
            ).fetchall()
        ]

    assert store(first) == 1
    tier_chunks(conn, lake, stack, older_than=span[1], newer_than=span[0], dataset="news_items")
    assert conn.execute("SELECT count(*) FROM news.items WHERE id = %s", (first["id"],)).fetchone()[0] == 0
    assert hot_links() == ["ZZQM"]

    assert store(update) == 1
    assert hot_links() == (["ZZQP"] if symbols else [])
