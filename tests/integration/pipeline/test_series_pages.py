"""A series' pending raw pages processed together (``tasks.processing.process_symbol_bars``):
which page a rejected bar is dead-lettered under, and which version of a bar several pending pages
hold is stored. Vendor pages (Polygon aggregates) written to the real lake and manifest."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from core.settings import Settings
from db.connect import database_connection
from sources.http import Request
from storage.lake import Lake
from storage.raw import StoredPage, decode_envelope, raw_key, store_raw_page
from tasks.collection import ParsedPage, parse_stored_page
from tasks.processing import (
    PendingPage,
    claim_pages,
    pending_pages,
    process_series_bars,
    process_symbol_bars,
    series_lock_key,
)

SESSIONS = (date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6))  # before DST: open at 14:30 UTC
FETCHED = datetime(2024, 3, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def symbol(stack: Settings) -> Iterator[Callable[[], str]]:
    """Symbols no other test uses; what was stored and dead-lettered for them is deleted afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(f"SP{secrets.token_hex(2).upper()}")
        return made[-1]

    yield make
    with database_connection(stack) as conn, conn.transaction():
        for table in ("market.bars_intraday", "market.latest_bars", "ops.raw_pages", "ops.watermarks"):
            conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (made,))  # type: ignore[arg-type]
        conn.execute("DELETE FROM ops.dead_letters WHERE request->'context'->>'symbol' = ANY(%s)", (made,))


def session_bars(day: date, *, volume: int = 1000, bad: int | None = None) -> list[dict]:
    """A full session of Polygon minute aggregates; bar ``bad`` has high < low."""
    open_ms = int(datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC).timestamp() * 1000)
    bars = []
    for i in range(390):
        price = 100 + 0.01 * i
        high, low = (price - 1, price + 1) if i == bad else (price + 0.05, price - 0.05)
        bars.append(
            {"t": open_ms + 60_000 * i, "o": price, "h": high, "l": low, "c": price, "v": volume, "n": 5, "vw": price}
        )
    return bars


def write_page(stack: Settings, symbol: str, bars: list[dict], *, first: date, last: date, fetched: datetime) -> str:
    """A page of the range ``first``..``last`` as received, stored and listed pending (fetched at
    ``fetched``); its key names the range asked for, as the collection's do."""
    request = {
        "url": f"/v2/aggs/ticker/{symbol}/range/1/minute/{first}/{last}",
        "params": {},
        "context": {"symbol": symbol, "timeframe": "1min"},
    }
    payload = {"ticker": symbol, "status": "OK", "resultsCount": len(bars), "results": bars}
    lake = Lake.from_settings(stack.lake)
    stored = store_raw_page(
        lake, source="polygon", dataset="bars", symbol=symbol, data_date=first, request=request, payload=payload
    )
    with database_connection(stack) as conn:
        conn.execute(
            "INSERT INTO ops.raw_pages (key, source, dataset, symbol, timeframe, data_date, records, checksum, "
            "fetched_at) VALUES (%s, 'polygon', 'bars', %s, '1min', %s, %s, %s, %s)",
            (stored.key, symbol, first, len(bars), stored.checksum, fetched),
        )
    return stored.key


def process(stack: Settings, symbol: str, mode: str = "strict") -> tuple[int, int]:
    """The symbol's pending pages processed as the processing stage does: (accepted, rejected)."""
    with database_connection(stack) as conn:
        pending = pending_pages(conn, source="polygon", symbols=[symbol], timeframe="1min")
        conn.commit()
        if not pending:
            return 0, 0
        outcome, _ = process_symbol_bars(conn, Lake.from_settings(stack.lake), pending[0], mode=mode)
    return outcome.accepted, outcome.rejected


def letters(conn: psycopg.Connection, symbol: str) -> list[dict]:
    rows = conn.execute(
        "SELECT payload FROM ops.dead_letters WHERE request->'context'->>'symbol' = %s AND resolved_at IS NULL",
        (symbol,),
    ).fetchall()
    return [row[0] if isinstance(row[0], dict) else json.loads(row[0]) for row in rows]


def test_a_rejected_bar_on_a_later_session_of_a_page_is_dead_lettered_under_that_page(stack: Settings, symbol) -> None:
    """Rejects were matched to pages by the page's first day alone: a bad bar on the third session
    of a three-session page was rejected with no dead letter, the watermark past it."""
    name = symbol()
    bars = session_bars(SESSIONS[0]) + session_bars(SESSIONS[1]) + session_bars(SESSIONS[2], bad=200)
    key = write_page(stack, name, bars, first=SESSIONS[0], last=SESSIONS[2], fetched=FETCHED)
    assert process(stack, name) == (3 * 390 - 1, 1)
    with database_connection(stack) as conn:
        (letter,) = letters(conn, name)
    assert letter["raw_key"] == key and letter["records"] == 1
    bad_ts = datetime(2024, 3, 6, 14, 30, tzinfo=UTC) + timedelta(minutes=200)
    assert [datetime.fromisoformat(r["ts"]) for r in letter["rejected"]] == [bad_ts]


def corrected(bars: list[dict], index: int) -> list[dict]:
    """The vendor's correction of bar ``index``: its volume."""
    return [{**bar, "v": bar["v"] - 500} if i == index else bar for i, bar in enumerate(bars)]


def stale_key_sorting_last(stack: Settings, symbol: Callable[[], str]) -> str:
    """A symbol whose stale page's key sorts after its correction's (keys are hashes): ordered by
    key, the stale version came last, the one lenient validation keeps."""

    def key(name: str, last: date) -> str:
        url = f"/v2/aggs/ticker/{name}/range/1/minute/{SESSIONS[0]}/{last}"
        request = {"url": url, "params": {}, "context": {"symbol": name, "timeframe": "1min"}}
        return raw_key("polygon", "bars", name, SESSIONS[0], request)

    while True:
        name = symbol()
        if key(name, SESSIONS[0]) > key(name, SESSIONS[2]):
            return name


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_a_stale_pending_page_neither_beats_nor_blocks_its_correction(stack: Settings, symbol, mode: str) -> None:
    """A killed run left its page of the 4th pending; a rerun days later asked 4th..6th, another
    key, and got the 4th's bar 200 corrected. Both pending: strict rejected both versions as a
    conflict (the bar lost, the watermark past it), lenient kept whichever key sorted last."""
    name = stale_key_sorting_last(stack, symbol)
    stale = session_bars(SESSIONS[0])
    fresh = corrected(stale, 200) + session_bars(SESSIONS[1]) + session_bars(SESSIONS[2])
    write_page(stack, name, stale, first=SESSIONS[0], last=SESSIONS[0], fetched=FETCHED)
    write_page(stack, name, fresh, first=SESSIONS[0], last=SESSIONS[2], fetched=FETCHED + timedelta(days=2))
    assert process(stack, name, mode) == (3 * 390, 0)
    with database_connection(stack) as conn:
        volume = conn.execute(
            "SELECT volume FROM market.bars_intraday WHERE symbol = %s AND timeframe = '1min' AND ts = %s",
            (name, datetime(2024, 3, 4, 14, 30, tzinfo=UTC) + timedelta(minutes=200)),
        ).fetchone()
        assert letters(conn, name) == []
        pending = conn.execute(
            "SELECT count(*) FROM ops.raw_pages WHERE symbol = %s AND processed_at IS NULL", (name,)
        ).fetchone()
    assert volume == (500,) and pending == (0,)


def collect_again(stack: Settings, symbol: str, key: str, bars: list[dict]) -> None:
    """Another run's collection of the page ``key`` (the same range asked, so the same key) that
    got ``bars`` this time: the object rewritten, the row's checksum changed and its page pending
    again, as the collection's manifest upsert does."""
    stored = rewrite_object(stack, symbol, key, bars)
    with database_connection(stack) as conn:
        conn.execute(
            "UPDATE ops.raw_pages SET checksum = %s, records = %s, fetched_at = now(), processed_at = NULL, "
            "process_error = NULL WHERE key = %s AND checksum <> %s",
            (stored.checksum, len(bars), key, stored.checksum),
        )


def rewrite_object(stack: Settings, symbol: str, key: str, bars: list[dict]) -> StoredPage:
    """The raw-zone object of page ``key`` written again with ``bars`` (its row left as it is)."""
    lake = Lake.from_settings(stack.lake)
    raw = decode_envelope(key, lake.get_bytes(key))
    payload = {**raw.payload, "resultsCount": len(bars), "results": bars}
    stored = store_raw_page(
        lake,
        source="polygon",
        dataset="bars",
        symbol=symbol,
        data_date=SESSIONS[0],
        request=raw.request,
        payload=payload,
    )
    assert stored.key == key
    return stored


def kept_by_collection(stack: Settings, key: str) -> dict[str, ParsedPage]:
    """The frame a run's collection keeps in memory for its processing, with the page's checksum."""
    raw = decode_envelope(key, Lake.from_settings(stack.lake).get_bytes(key))
    frame = parse_stored_page("polygon", Request.from_redacted("polygon", "bars", raw.request), raw.payload)
    with database_connection(stack) as conn:
        row = conn.execute("SELECT checksum FROM ops.raw_pages WHERE key = %s", (key,)).fetchone()
    assert row is not None
    return {key: ParsedPage(raw.request, frame, raw.fetched_at, row[0])}


def looked_up(stack: Settings, symbols: list[str]) -> list[list[PendingPage]]:
    with database_connection(stack) as conn:
        return pending_pages(conn, source="polygon", symbols=symbols, timeframe="1min")


def volume_of_bar(stack: Settings, symbol: str, index: int) -> int:
    with database_connection(stack) as conn:
        row = conn.execute(
            "SELECT volume FROM market.bars_intraday WHERE symbol = %s AND timeframe = '1min' AND ts = %s",
            (symbol, datetime(2024, 3, 4, 14, 30, tzinfo=UTC) + timedelta(minutes=index)),
        ).fetchone()
    assert row is not None
    return int(row[0])


def pending_count(stack: Settings, symbol: str) -> int:
    with database_connection(stack) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ops.raw_pages WHERE symbol = %s AND processed_at IS NULL", (symbol,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("correction_processed", ["after", "before"])
def test_a_run_never_stores_its_stale_frame_over_another_runs_correction(
    stack: Settings, symbol, correction_processed: str
) -> None:
    """Runs A (scheduled) and B (manual) on one series, the same day, so the same key: A collected
    the page and looked it up pending; B collects it again with bar 200 corrected, then A
    processes the frame its collection kept. Marked processed by key alone, A's stale frame was
    stored and the page marked processed: B found nothing pending (``after``), or B's correction
    stored first was overwritten by A's commit (``before``)."""
    name = symbol()
    stale = session_bars(SESSIONS[0])
    key = write_page(stack, name, stale, first=SESSIONS[0], last=SESSIONS[0], fetched=FETCHED)
    kept = kept_by_collection(stack, key)
    (pages_of_a,) = looked_up(stack, [name])
    collect_again(stack, name, key, corrected(stale, 200))
    if correction_processed == "before":
        assert process(stack, name) == (390, 0)
    with database_connection(stack) as conn_a:
        outcome, _ = process_symbol_bars(conn_a, Lake.from_settings(stack.lake), pages_of_a, mode="strict", parsed=kept)
    assert outcome.pages == 0 and outcome.inserted == outcome.updated == 0  # the page was not A's to store
    if correction_processed == "after":
        assert process(stack, name) == (390, 0)
    assert volume_of_bar(stack, name, 200) == 500 and pending_count(stack, name) == 0


def test_a_batch_waits_for_the_run_holding_its_series_and_skips_the_page_that_run_collected_again(
    stack: Settings, symbol
) -> None:
    """A batch of two series (one transaction) meets a run that holds the second series' lock and
    collects its page again meanwhile: the batch waits, then stores the first series and leaves
    the changed page pending; the page's new data is what the next processing stores."""
    free, held = symbol(), symbol()
    pages = {name: session_bars(SESSIONS[0]) for name in (free, held)}
    keys = {
        name: write_page(stack, name, pages[name], first=SESSIONS[0], last=SESSIONS[0], fetched=FETCHED)
        for name in (free, held)
    }
    kept = {**kept_by_collection(stack, keys[free]), **kept_by_collection(stack, keys[held])}
    groups = looked_up(stack, [free, held])
    outcomes: list = []
    with database_connection(stack) as holder:
        lock = series_lock_key("polygon", held, "bars", "1min")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))

        def batch() -> None:
            with database_connection(stack) as conn:
                outcomes.extend(
                    process_series_bars(conn, Lake.from_settings(stack.lake), groups, mode="strict", parsed=kept)
                )

        worker = threading.Thread(target=batch)
        worker.start()
        while worker.is_alive() and not waiting_for_advisory_lock(holder, lock):
            worker.join(0.05)
        waited = worker.is_alive()
        collect_again(stack, held, keys[held], corrected(pages[held], 200))
        holder.commit()
        worker.join()
    assert waited, "the batch did not wait for the run holding its series"
    assert {outcome.symbol: outcome.pages for outcome, _ in outcomes} == {free: 1, held: 0}
    assert pending_count(stack, free) == 0 and pending_count(stack, held) == 1
    assert process(stack, held) == (390, 0)
    assert volume_of_bar(stack, held, 200) == 500 and volume_of_bar(stack, free, 200) == 1000


def listed_pending(stack: Settings, symbol: str, dataset: str) -> PendingPage:
    """A non-bar page (timeframe '', as collections list them) listed pending; no lake object: a
    claim reads only the row."""
    page = PendingPage(f"test/{dataset}/{symbol}", "polygon", dataset, symbol, "", SESSIONS[0], "c" * 64)
    with database_connection(stack) as conn:
        conn.execute(
            "INSERT INTO ops.raw_pages (key, source, dataset, symbol, timeframe, data_date, records, checksum, "
            "fetched_at) VALUES (%s, 'polygon', %s, %s, '', %s, 1, %s, %s)",
            (page.key, dataset, symbol, page.data_date, page.checksum, FETCHED),
        )
    return page


def test_a_symbols_options_are_claimed_while_its_news_processing_holds_its_lock(stack: Settings, symbol) -> None:
    """All non-bar datasets have timeframe '': keyed by (source, symbol, timeframe) alone, a
    symbol's news processing (sentiment, embeddings, the global dedup lock) held up its options.
    Each dataset family has its own lock: the options claim does not wait (lock_timeout turns a
    wait into an error), another news claim of the symbol still does."""
    name = symbol()
    news, options = listed_pending(stack, name, "news"), listed_pending(stack, name, "option_snapshots")
    with database_connection(stack) as holder, database_connection(stack) as other:
        assert claim_pages(holder, [news]) == [news]  # holder's transaction stays open: its lock is held
        other.execute("SET lock_timeout = '5s'")
        assert claim_pages(other, [options]) == [options]
        other.commit()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            claim_pages(other, [news])
        other.rollback()
        holder.rollback()


def waiting_for_advisory_lock(conn: psycopg.Connection, key: int) -> bool:
    """Whether a session waits for the advisory lock ``key`` (a bigint key is classid: its high 32
    bits, objid: its low 32 bits, objsubid 1)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1)",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
    return bool(row and row[0])


def test_a_page_whose_raw_object_holds_other_data_than_its_checksum_stays_pending(stack: Settings, symbol) -> None:
    """Two collections of one key crossed: the lake writes landed B then A, the row updates A then
    B, so the row has B's checksum and the object A's data. Processing read the object, claimed
    the page with B's checksum and stored A's data: B's data was never processed."""
    name = symbol()
    bars = session_bars(SESSIONS[0])
    key = write_page(stack, name, bars, first=SESSIONS[0], last=SESSIONS[0], fetched=FETCHED)
    rewrite_object(stack, name, key, corrected(bars, 200))  # the other collection's data, its row update lost

    assert process(stack, name) == (0, 0)

    with database_connection(stack) as conn:
        stored = conn.execute("SELECT count(*) FROM market.bars_intraday WHERE symbol = %s", (name,)).fetchone()
    assert stored == (0,) and pending_count(stack, name) == 1
    # once a collection writes the object and the row again, the page is processed
    collect_again(stack, name, key, corrected(bars, 200))
    assert process(stack, name) == (390, 0) and volume_of_bar(stack, name, 200) == 500
