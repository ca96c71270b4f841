"""ops.dead_letters on the real embedded PostgreSQL: one row per failing page, idempotent replay."""

import asyncio

import psycopg

from core.errors import PermanentSourceError, RetryableSourceError
from sources.dead_letters import (
    list_dead_letters,
    mark_replayed,
    record_dead_letter,
    record_source_error,
    replay_dead_letters,
)
from sources.http import Request
from sources.resilience import source_error
from tests.support.vendors import KEY, polygon_client


async def connect(settings) -> psycopg.AsyncConnection:
    db = settings.database
    conn = await psycopg.AsyncConnection.connect(db.conninfo(), password=db.password.get_secret_value())
    await conn.execute("DELETE FROM ops.dead_letters")
    await conn.commit()
    return conn


def page_error(cursor: str = "c1") -> PermanentSourceError:
    request = Request(
        "polygon",
        "bars",
        "/v2/aggs/ticker/AAPL/range/1/minute/2024-06-03/2024-06-28",
        {"adjusted": "true", "sort": "asc", "limit": 500, "cursor": cursor},
        {"symbol": "AAPL", "timeframe": "1min"},
    )
    return source_error(PermanentSourceError, "polygon bars page is malformed", request=request, payload_text='{"res')


def test_the_same_failing_page_is_one_row_whose_attempts_grow(stack):
    async def scenario():
        conn = await connect(stack)
        try:
            first = await record_source_error(conn, page_error())
            second = await record_source_error(conn, page_error())
            other = await record_source_error(conn, page_error("c2"))
            return first, second, other, await list_dead_letters(conn)
        finally:
            await conn.close()

    first, second, other, letters = asyncio.run(scenario())
    assert first == second != other
    by_id = {letter.id: letter for letter in letters}
    assert by_id[first].attempts == 2 and by_id[other].attempts == 1
    assert by_id[first].payload == '{"res' and by_id[first].error_type == "PermanentSourceError"
    assert by_id[first].last_seen >= by_id[first].first_seen
    assert by_id[first].request["params"]["cursor"] == "c1"


def test_requests_are_stored_without_credentials(stack):
    async def scenario():
        conn = await connect(stack)
        try:
            await record_dead_letter(
                conn,
                source="polygon",
                dataset="bars",
                request=Request("polygon", "bars", f"/x?apiKey={KEY}", {"apiKey": KEY, "limit": 5}).redacted(),
                error=f"failed for {KEY}".replace(KEY, "***"),
            )
            async with conn.cursor() as cur:
                await cur.execute("SELECT request::text FROM ops.dead_letters")
                return (await cur.fetchone())[0]
        finally:
            await conn.close()

    assert KEY not in asyncio.run(scenario())


def test_replay_resumes_the_page_resolves_it_and_is_idempotent(stack, sandbox_url):
    delivered = []

    async def scenario():
        conn = await connect(stack)
        client = polygon_client(sandbox_url)

        async def fetcher(letter):
            delivered.extend([page.frame async for page in client.iter_pages(letter.to_request())])

        try:
            request = client.aggregates_request("AAPL", "2024-06-03", "2024-06-07", timeframe="1min", limit=1000)
            await record_source_error(conn, source_error(RetryableSourceError, "503", request=request))
            first = await replay_dead_letters(conn, fetcher)
            second = await replay_dead_letters(conn, fetcher)
            open_letters = await list_dead_letters(conn)
            all_letters = await list_dead_letters(conn, include_resolved=True)
            return first, second, open_letters, all_letters
        finally:
            await client.aclose()
            await conn.close()

    first, second, open_letters, all_letters = asyncio.run(scenario())
    assert first.as_dict() == {"replayed": 1, "failed": 0, "skipped": 0}
    assert second.as_dict() == {"replayed": 0, "failed": 0, "skipped": 0}
    assert open_letters == [] and all_letters[0].resolved_at is not None
    assert sum(len(f) for f in delivered) == 5 * 390  # five full sessions of minute bars, fetched once


def test_a_failed_replay_counts_an_attempt_and_stays_open(stack):
    async def failing(letter):
        raise source_error(RetryableSourceError, "still down")

    async def scenario():
        conn = await connect(stack)
        try:
            letter_id = await record_source_error(conn, page_error())
            summary = await replay_dead_letters(conn, failing)
            (letter,) = await list_dead_letters(conn)
            resolved_once = await mark_replayed(conn, letter_id)
            resolved_twice = await mark_replayed(conn, letter_id)
            return summary, letter, resolved_once, resolved_twice
        finally:
            await conn.close()

    summary, letter, resolved_once, resolved_twice = asyncio.run(scenario())
    assert summary.failed == [letter.id] and letter.attempts == 2 and letter.error == "still down"
    assert resolved_once is True and resolved_twice is False
