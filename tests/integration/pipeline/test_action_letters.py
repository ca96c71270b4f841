"""Corporate actions of a symbol whose dividends request failed while its splits request did not:
the splits' later ex date moved the symbol's one corporate-action watermark past the dividends the
failed request should have brought. The next incremental run asks them again. Polygon's adapter on
the stack's market sandbox; the failure is the transport's (the seam every vendor client takes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date

import httpx
import pytest

from core.settings import Settings
from db.connect import async_database_connection, database_connection
from pipeline.request import IngestRequest, parse_ingest_request
from sources.dead_letters import record_dead_letter_sync
from sources.factory import build_source
from tasks.collection import SymbolCollection, collect_symbol
from tasks.ingestion import incremental_starts
from tasks.pending import process_symbol_pending
from tasks.resources import RunResources
from tests.support.collection import NOW

# In the sandbox's seed-42 market CABB splits on 2024-05-08 and pays a dividend every quarter: the
# split's ex date is later than the year's first dividend's.
SYMBOL = "CABB"
SPLIT = date(2024, 5, 8)
YEAR = ("2024-01-01", "2024-12-31")


class FailingDividends(httpx.AsyncBaseTransport):
    """The sandbox over HTTP, but Polygon's dividends endpoint answers 400 while ``failing``."""

    def __init__(self) -> None:
        self.failing = True
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failing and request.url.path == "/v3/reference/dividends":
            return httpx.Response(400, json={"status": "ERROR", "error": "refused for the test"}, request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def clean(stack: Settings) -> Iterator[None]:
    def forget() -> None:
        with database_connection(stack) as conn, conn.transaction():
            for table in ("market.corporate_actions", "ops.raw_pages", "ops.watermarks"):
                conn.execute(f"DELETE FROM {table} WHERE symbol = %s", (SYMBOL,))  # type: ignore[arg-type]
            conn.execute("DELETE FROM ops.dead_letters WHERE request->'context'->>'symbol' = %s", (SYMBOL,))

    forget()
    yield
    forget()


def ingest(stack: Settings, request: IngestRequest, transport: httpx.AsyncBaseTransport) -> SymbolCollection | None:
    """An incremental ingest of the symbol's corporate actions: its start, its collection, its processing."""
    with RunResources.from_settings(stack) as resources:
        start = incremental_starts(resources, request)[SYMBOL]
        if start is None:
            return None

        async def collect() -> SymbolCollection:
            source = build_source("polygon", stack, options={"transport": transport})
            async with source, await async_database_connection(stack, autocommit=True) as conn:
                return await collect_symbol(
                    source, request, SYMBOL, start, resources.lake, conn, run_id=str(uuid.uuid4()), keep_parsed=True
                )

        outcome = asyncio.run(collect())
        process_symbol_pending(resources, "polygon", SYMBOL, None, "corporate_actions", outcome.parsed)
    return outcome


def stored_actions(stack: Settings) -> dict[str, list[date]]:
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT action, ex_date FROM market.corporate_actions WHERE symbol = %s ORDER BY ex_date", (SYMBOL,)
        ).fetchall()
    out: dict[str, list[date]] = {"split": [], "dividend": []}
    for action, ex_date in rows:
        out[action].append(ex_date)
    return out


def test_a_failed_dividends_request_is_asked_again_by_the_next_run(stack: Settings, clean) -> None:
    request = parse_ingest_request(
        data_type="corporate_actions",
        symbols=[SYMBOL],
        start_date=YEAR[0],
        end_date=YEAR[1],
        timeframe="1day",
        source="polygon",
        now=NOW,
    )
    transport = FailingDividends()
    first = ingest(stack, request, transport)
    assert first is not None and first.error is not None and first.dead_letter_ids  # the dividends' letter
    assert stored_actions(stack) == {"split": [SPLIT], "dividend": []}

    transport.failing = False  # the vendor answers again; nobody replayed the letter
    second = ingest(stack, request, transport)
    assert second is not None and second.error is None
    dividends = stored_actions(stack)["dividend"]
    assert len(dividends) == 4 and dividends[0] < SPLIT < dividends[-1]


def test_a_letter_of_a_page_that_does_not_parse_does_not_make_every_run_ask_the_range_again(
    stack: Settings, clean
) -> None:
    request = parse_ingest_request(
        data_type="corporate_actions",
        symbols=[SYMBOL],
        start_date=YEAR[0],
        end_date=YEAR[1],
        timeframe="1day",
        source="polygon",
        now=NOW,
    )
    transport = FailingDividends()
    transport.failing = False
    assert ingest(stack, request, transport) is not None  # the watermark at the newest ex date
    dividends = {"url": "/v3/reference/dividends", "params": {}, "context": {"symbol": SYMBOL}}
    with database_connection(stack) as conn:
        record_dead_letter_sync(  # what processing writes for a stored page that no longer parses
            conn,
            source="polygon",
            dataset="dividends",
            request=dividends,
            error="polygon dividends: malformed",
            payload_lake_key=f"raw/source=polygon/dataset=dividends/symbol={SYMBOL}/date=2024-01-01/x.json.gz",
        )
        conn.commit()

    with RunResources.from_settings(stack) as resources:
        start = incremental_starts(resources, request)[SYMBOL]
    assert start is None or start > request.start

    with database_connection(stack) as conn:  # a request that was not answered: asked again whole
        record_dead_letter_sync(
            conn, source="polygon", dataset="dividends", request={**dividends, "params": {"x": 1}}, error="HTTP 400"
        )
        conn.commit()
    with RunResources.from_settings(stack) as resources:
        assert incremental_starts(resources, request)[SYMBOL] == request.start
