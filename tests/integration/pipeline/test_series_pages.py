"""A series' pending raw pages processed together (``tasks.processing.process_symbol_bars``):
which page a rejected bar is dead-lettered under, and which version of a bar several pending pages
hold is stored. Vendor pages (Polygon aggregates) written to the real lake and manifest."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from core.settings import Settings
from db.connect import database_connection
from storage.lake import Lake
from storage.raw import raw_key, store_raw_page
from tasks.processing import pending_pages, process_symbol_bars

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
        (pages,) = pending_pages(conn, source="polygon", symbols=[symbol], timeframe="1min")
        conn.commit()
        outcome, _ = process_symbol_bars(conn, Lake.from_settings(stack.lake), pages, mode=mode)
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
