"""Story vectors are written in the transaction after the items (issue 16's items/s): a vector records
the text it was computed from, and is computed again when that text changes, not when another copy
of the story arrives; writers of one story take turns, writers of other stories do not wait; a
process killed between the items and the vectors leaves stories without vectors, which the rerun's
``story-vectors`` step fills."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pandas as pd
import psycopg
import pytest

from core import model
from core.settings import Settings
from db.connect import database_connection
from features.news_search import text_digest
from features.sentiment import load_sentiment_model
from pipeline.news import embed_queued, embed_stories, embed_written, embed_written_or_owe, store_items
from quality.dedup import DedupConfig
from storage.news import NewsWriteResult
from storage.story_vectors import dequeue_story_vectors, lock_story_vectors, queue_story_vectors, stories_to_embed
from tests.support.embeddings import HashedWords
from tests.support.news import sandbox_now

SOURCE = "vectortest"  # items of this file only, removed after each test


def _frame(rows: list[dict]) -> pd.DataFrame:
    base = {"source": SOURCE, "url": None, "author": None, "publisher": None, "body": None, "updated_ts": None}
    columns = {name: [{**base, **r}.get(name) for r in rows] for name in model.NEWS}
    return model.frame(model.NEWS, columns, what="test news")


def _store(conn: psycopg.Connection, rows: list[dict], queue: bool = False) -> NewsWriteResult:
    with conn.transaction():
        written, rejected = store_items(
            conn, _frame(rows), "news", load_sentiment_model(), DedupConfig(), queue_vectors=queue
        )
    assert not rejected
    return written


def _vector(conn: psycopg.Connection, story_id: int) -> tuple:
    return conn.execute(
        "SELECT text_md5, updated_at, embedding::text FROM news.story_embeddings WHERE story_id = %s", (story_id,)
    ).fetchone()


def _forget(conn: psycopg.Connection) -> None:
    conn.rollback()
    conn.execute(
        "DELETE FROM news.stories WHERE story_id IN (SELECT story_id FROM news.items WHERE source = %s)", (SOURCE,)
    )
    conn.execute(
        "DELETE FROM news.story_vector_queue WHERE story_id IN (SELECT story_id FROM news.items WHERE source = %s)",
        (SOURCE,),
    )
    conn.execute("DELETE FROM news.item_symbols WHERE source = %s", (SOURCE,))
    conn.execute("DELETE FROM news.items WHERE source = %s", (SOURCE,))
    conn.commit()


def test_a_vector_is_computed_again_when_its_text_changes_not_when_a_copy_arrives(stack: Settings) -> None:
    words = HashedWords()
    first = {"id": "a1", "ts": "2002-03-04T14:00:00Z", "symbols": "ZZVT"}
    first |= {"headline": "ZZVT wins a large defence contract", "summary": "The award runs ten years."}
    first["url"] = "https://news.example.com/zzvt-contract"
    with database_connection(stack) as conn:
        try:
            written = _store(conn, [first])
            assert len(written.stories) == 1
            story = written.stories[0]
            assert embed_written(conn, written, words) == 1
            text_md5, stamped, vector = _vector(conn, story)
            assert text_md5 == text_digest(first["headline"], first["summary"])

            # the same article a minute later under another id, its headline reworded: the story's text
            # (its first item's headline and lead) is unchanged, so its vector stays as it was
            copy = {**first, "id": "a2", "ts": "2002-03-04T14:01:00Z", "headline": "ZZVT wins large defence contract"}
            copy["url"] = "https://m.news.example.com/zzvt-contract?utm_source=feed"  # the same article's URL
            again = _store(conn, [copy])
            assert again.stories == (story,)
            assert embed_written(conn, again, words) == 0
            assert _vector(conn, story) == (text_md5, stamped, vector)

            # the first item updated with another summary: the story's lead changed, its vector follows
            update = {**first, "summary": "The award runs twelve years and may be extended."}
            update["updated_ts"] = "2002-03-04T16:00:00Z"
            changed = _store(conn, [update])
            assert embed_written(conn, changed, words) == 1
            new_md5, new_stamp, new_vector = _vector(conn, story)
            assert new_md5 == text_digest(first["headline"], update["summary"]) != text_md5
            assert new_vector != vector and new_stamp > stamped
            conn.commit()
        finally:
            _forget(conn)


def test_writers_of_one_story_take_turns_and_writers_of_others_do_not_wait(stack: Settings) -> None:
    words = HashedWords()
    rows = [
        {"id": "b1", "ts": "2002-05-06T14:00:00Z", "symbols": "ZZVU", "headline": "ZZVU recalls its new sedan"},
        {"id": "c1", "ts": "2002-05-06T15:00:00Z", "symbols": "ZZVW", "headline": "ZZVW opens a plant in Ohio"},
    ]
    holder = database_connection(stack)
    waiter = database_connection(stack)
    try:
        with database_connection(stack) as conn:
            written = _store(conn, rows)
        held, other = written.stories
        done: list[int] = []
        with holder.transaction():
            lock_story_vectors(holder, [held])  # a writer of that story, between its read and its commit
            thread = threading.Thread(target=lambda: done.append(_embed(waiter, [held], words)), daemon=True)
            thread.start()
            waiting = False
            for _ in range(100):  # bounded: 10 s
                waiting = _waits_for_advisory_lock(holder, waiter.info.backend_pid)
                if waiting:
                    break
                time.sleep(0.1)
            assert waiting and not done  # the second writer of the story waits for the first
            with database_connection(stack) as third:
                assert _embed(third, [other], words) == 1  # another story's writer goes on meanwhile
        thread.join(timeout=30)
        assert done == [1]  # then the waiting writer reads the story and stores its vector
    finally:
        holder.close()
        waiter.close()
        with database_connection(stack) as conn:
            _forget(conn)


def _embed(conn: psycopg.Connection, story_ids: list[int], embedder: HashedWords) -> int:
    with conn.transaction():
        return embed_stories(conn, story_ids, embedder)


def _waits_for_advisory_lock(conn: psycopg.Connection, pid: int) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted", (pid,)
    ).fetchone()
    return bool(row and row[0])


def test_a_kill_between_the_items_and_their_vectors_is_mended_by_the_rerun(stack: Settings, marketpipe_cli) -> None:
    end = sandbox_now(stack)
    start = end - timedelta(days=120)
    args = ["ingest", "--data-type", "news", "--source", "polygon", "--symbols", "UNH"]
    args += ["--start", start.date().isoformat(), "--end", end.date().isoformat()]
    crashed = marketpipe_cli(*args, env={"MARKETPIPE_CRASH_AT": "news:before_vectors"}, timeout=300)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    with database_connection(stack) as conn:
        stored, without = _stories_and_missing_vectors(conn, start)
    assert stored > 0 and without > 0  # the items committed, their stories' vectors did not
    with database_connection(stack) as conn:
        assert _owed(conn, start) >= without  # owed in the queue, with the items

    rerun = marketpipe_cli(*args, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    with database_connection(stack) as conn:
        after, missing = _stories_and_missing_vectors(conn, start)
        current = conn.execute(
            """
            SELECT count(*) FROM news.stories s JOIN news.story_embeddings e USING (story_id)
            WHERE s.story_id IN (SELECT story_id FROM news.item_symbols
                                 WHERE symbol = 'UNH' AND kind = 'news' AND published_at >= %s)
              AND e.first_seen = s.first_seen AND e.symbols = s.symbols AND e.text_md5 IS NOT NULL
            """,
            (start,),
        ).fetchone()[0]
    assert after >= stored and missing == 0 and current == after
    with database_connection(stack) as conn:
        assert _owed(conn, start) == 0


def _owed(conn: psycopg.Connection, start) -> int:
    return conn.execute(
        "SELECT count(*) FROM news.story_vector_queue WHERE story_id IN (SELECT story_id FROM news.item_symbols"
        " WHERE symbol = 'UNH' AND kind = 'news' AND published_at >= %s)",
        (start,),
    ).fetchone()[0]


def _stories_and_missing_vectors(conn: psycopg.Connection, start) -> tuple[int, int]:
    row = conn.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE NOT EXISTS
            (SELECT 1 FROM news.story_embeddings e WHERE e.story_id = s.story_id))
        FROM news.stories s
        WHERE s.story_id IN (SELECT story_id FROM news.item_symbols
                             WHERE symbol = 'UNH' AND kind = 'news' AND published_at >= %s)
        """,
        (start,),
    ).fetchone()
    return int(row[0]), int(row[1])


def test_a_vector_stored_before_the_digest_keeps_the_rule_of_its_time(stack: Settings) -> None:
    # rows written before migration 0037 have no text_md5: not all embedded again on upgrade, but
    # when an item of their story is written after them (the old rule), and then they get one
    words = HashedWords()
    first = {"id": "d1", "ts": "2002-07-08T14:00:00Z", "symbols": "ZZVX", "url": "https://news.example.com/zzvx"}
    first |= {"headline": "ZZVX names a new chief executive", "summary": "She starts in May."}
    with database_connection(stack) as conn:
        try:
            written = _store(conn, [first])
            (story,) = written.stories
            assert embed_written(conn, written, words) == 1
            conn.execute("UPDATE news.story_embeddings SET text_md5 = NULL WHERE story_id = %s", (story,))
            assert embed_stories(conn, [story], words) == 0  # nothing written since: current
            copy = {**first, "id": "d2", "ts": "2002-07-08T14:05:00Z", "url": "https://news.example.com/zzvx?ref=rss"}
            again = _store(conn, [copy])
            assert again.stories == (story,) and embed_written(conn, again, words) == 1
            assert _vector(conn, story)[0] == text_digest(first["headline"], first["summary"])
            conn.commit()
        finally:
            _forget(conn)


class _Failing(HashedWords):
    def embed(self, texts):  # type: ignore[no-untyped-def]
        raise RuntimeError("the model's process ran out of memory")


def test_vectors_that_fail_stay_owed_and_a_writer_leaves_an_entry_queued_again_after_its_read(
    stack: Settings,
) -> None:
    first = {"id": "e1", "ts": "2002-09-10T14:00:00Z", "symbols": "ZZVY", "url": "https://news.example.com/zzvy"}
    first |= {"headline": "ZZVY buys a rival chipmaker", "summary": "The deal is worth two billion."}
    with database_connection(stack) as conn, database_connection(stack) as other:
        try:
            written = _store(conn, [first], queue=True)
            (story,) = written.stories
            with pytest.raises(RuntimeError, match="out of memory"):
                embed_written(conn, written, _Failing())
            # as the batch path and the stream call it: the items stay stored, the vector owed, no error
            assert embed_written_or_owe(conn, written, _Failing(), "news of ZZVY") == 0
            assert _queued(conn, story) is not None

            # a writer reads the story and its entry; meanwhile another batch of the story queues it again
            with conn.transaction():
                lock_story_vectors(conn, [story])
                work = stories_to_embed(conn, [story], "hashed-words-384", text_digest)
                with other.transaction():
                    queue_story_vectors(other, [story])
                dequeue_story_vectors(conn, work.queued)
            assert work.queued and _queued(conn, story) not in (None, work.queued[story])  # it stays owed

            assert embed_queued(conn, HashedWords()) == 1  # the flows' story-vectors step pays the debt
            assert _queued(conn, story) is None and _vector(conn, story)[0] == text_digest(
                first["headline"], first["summary"]
            )
            assert embed_queued(conn, HashedWords()) == 0
        finally:
            _forget(conn)


def _queued(conn: psycopg.Connection, story_id: int):
    row = conn.execute("SELECT queued_at FROM news.story_vector_queue WHERE story_id = %s", (story_id,)).fetchone()
    conn.commit()
    return row[0] if row else None
