"""The ingestion stage's work: fetch a symbol's pages from a vendor into the raw zone.

For each symbol: build the vendor requests (raw, unadjusted prices: adjustment is ours, from
corporate actions), follow pagination, store every page in the lake as received, and record it
in ``ops.raw_pages`` for the processing stage. A page that fails after the source's retries is
dead-lettered with its request (replay resumes pagination from it); pages already fetched are
kept. One symbol failing never stops the others.

Plugin sources that only implement the seed's ``fetch_data`` have no pages: their frame is stored
as one page of records; a failing ``fetch_data`` is dead-lettered with what was asked, and
replaying the letter asks again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

import pandas as pd
import psycopg

from core import model
from core.errors import MarketpipeError, SourceError
from pipeline.request import IngestRequest
from sources.base import BaseSource, SymbolRequest
from sources.dead_letters import DeadLetter, record_source_error
from sources.http import Page, Request, drain
from sources.records import RECORDS_DATASET, records_page_of, records_request
from sources.registry import SourceRegistry
from storage.lake import Lake
from storage.raw import store_raw_page


@dataclass(frozen=True)
class ParsedPage:
    """A page as the processing stage would get it back from the raw zone: the redacted request
    stored in its envelope and the frame its vendor parser makes of the payload. Kept in memory
    for the processing that follows in the same run, so that run does not read, decompress and
    re-parse what it has just stored (a replay still reads the raw zone). ``served_at``: the
    envelope's ``fetched_at``, the vendor's clock when it sent a Date (what validation judges
    forming bars by). ``checksum``: the stored page's (``ops.raw_pages.checksum``); processing
    takes the frame only while the page still has it (another run may have collected it again)."""

    request: dict[str, Any]
    frame: pd.DataFrame
    served_at: datetime | None = None
    checksum: str | None = None


@dataclass
class SymbolCollection:
    """What one symbol's collection did. :meth:`record` is its serializable part (summaries,
    artifacts); ``parsed`` holds the frames of the pages stored, by raw key, when asked for."""

    symbol: str
    pages: int = 0
    records: int = 0
    raw_keys: list[str] = field(default_factory=list)
    dead_letter_ids: list[int] = field(default_factory=list)
    error: str | None = None
    parsed: dict[str, ParsedPage] = field(default_factory=dict, repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """Every field but ``parsed`` (plain values, JSON-ready)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "parsed"}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def first_requests(source: BaseSource, request: IngestRequest, symbol: str, start: datetime) -> list[Request] | None:
    """The vendor requests that start a symbol's collection, or None for a source without pages."""
    wanted = SymbolRequest(symbol, start, request.end, request.timeframe, request.data_type)
    return source.first_requests(wanted)


def parse_stored_page(
    source: str, request: Request, payload: Any, registry: SourceRegistry | None = None
) -> pd.DataFrame:
    """Re-parse a stored page with its source's own parser (pure); the built-in vendors' unless a
    ``registry`` is given."""
    return (registry or SourceRegistry.builtin()).parse_page(source, request, payload)


def page_data_date(page: Page, fallback: date) -> date:
    """The date a page's data starts (its raw-zone partition)."""
    if len(page.frame) and "ts" in page.frame:
        first = page.frame["ts"].min()
        if pd.notna(first):
            return first.tz_convert(model.EXCHANGE_TZ).date()
    return fallback


async def collect_symbol(
    source: BaseSource,
    request: IngestRequest,
    symbol: str,
    start: datetime,
    lake: Lake,
    conn: psycopg.AsyncConnection,
    run_id: str,
    reprocess: bool = False,
    keep_parsed: bool = False,
) -> SymbolCollection:
    """Fetch every page of one symbol into the raw zone; never raises for a vendor failure.

    A page fetched again with the same data is not processed again, unless ``reprocess`` (a
    backfill or gap repair: the hot store may have lost rows the page holds). With
    ``keep_parsed`` the outcome's ``parsed`` holds each stored vendor page's frame for the
    processing that follows (plugin records are always re-read: their frame is the plugin's own).
    """
    outcome = SymbolCollection(symbol)
    sink = _RawSink(
        source.context.name,
        symbol,
        request.timeframe,
        start.date(),
        lake,
        conn,
        run_id,
        outcome,
        reprocess,
        keep_parsed,
    )
    try:
        requests = first_requests(source, request, symbol, start)
        if requests is None:
            await _collect_records(source, request, symbol, start, sink)
            return outcome
        for first in requests:
            pages, failure = await drain(source.iter_pages(first))
            for page in pages:
                await sink.store(page)
            if failure is not None:
                letter = await record_source_error(conn, failure)
                if letter is not None:
                    outcome.dead_letter_ids.append(letter)
                outcome.error = str(failure)
    except MarketpipeError as exc:
        outcome.error = str(exc)
    return outcome


async def _collect_records(
    source: BaseSource,
    request: IngestRequest,
    symbol: str,
    start: datetime,
    sink: _RawSink,
) -> None:
    """The plugin's ``fetch_data`` frame as one records page. A plugin serving bars has no
    corporate actions: nothing is asked of it for them. A failure is dead-lettered with what was
    asked, so ``marketpipe dlq replay`` asks ``fetch_data`` again."""
    if request.data_type != "market_data" and source.dataset == "bars":
        return
    asked = records_request(
        source.context.name,
        symbol=symbol,
        start=start,
        end=request.end,
        timeframe=request.timeframe,
        schema=source.dataset,
    )
    try:
        frame = await fetch_records(source, asked)
    except SourceError as exc:
        letter = await record_source_error(sink.conn, exc)
        if letter is not None:
            sink.outcome.dead_letter_ids.append(letter)
        raise
    await sink.store(records_page_of(asked, frame))


async def fetch_records(source: BaseSource, asked: Request) -> pd.DataFrame:
    """``fetch_data`` for a records request; any failure of the plugin's own code becomes a
    SourceError naming the request (the plugin is third-party code: translated at this seam)."""
    symbol, start, end = asked.params["symbol"], asked.params["start"], asked.params["end"]
    try:
        return await source.fetch_data(symbol, datetime.fromisoformat(start), datetime.fromisoformat(end))
    except SourceError as exc:
        exc.request = exc.request or asked
        raise
    except MarketpipeError:
        raise  # the plugin's configuration, say: nothing a replay would fix
    except Exception as exc:
        raise SourceError(
            f"source {asked.source!r} failed to fetch {symbol} {start}..{end}: {type(exc).__name__}: {exc}",
            request=asked,
        ) from exc


async def replay_dead_letter(
    source: BaseSource, letter: DeadLetter, lake: Lake, conn: psycopg.AsyncConnection, run_id: str
) -> SymbolCollection:
    """Fetch a dead-lettered request again (and the pages after it) into the raw zone.

    Raises the vendor's error when it still fails, so the replay counts another attempt; pages
    stored before the failure keep their idempotent keys, so a later replay rewrites the same keys.
    A letter that names the raw page it was written for (records its validation rejected, a page
    that no longer parsed) has its pages processed again even when the vendor's data is unchanged:
    that page was marked processed, and otherwise the replay only closed the letter.
    """
    request = letter.to_request()
    symbol = str(request.context.get("symbol") or str(request.params.get("symbols", "")).split(",")[0] or "_all")
    outcome = SymbolCollection(symbol)
    timeframe = str(request.context.get("timeframe", ""))
    reprocess = letter.payload_lake_key is not None
    sink = _RawSink(
        source.context.name, symbol, timeframe, letter.first_seen.date(), lake, conn, run_id, outcome, reprocess
    )
    if request.dataset == RECORDS_DATASET:  # a plugin without pages: ask fetch_data again
        await sink.store(records_page_of(request, await fetch_records(source, request)))
        return outcome
    pages, failure = await drain(source.iter_pages(request))
    for page in pages:
        await sink.store(page)
    if failure is not None:
        raise failure
    return outcome


@dataclass
class _RawSink:
    """Where one symbol's pages go: the lake, then the manifest row."""

    source: str
    symbol: str
    timeframe: str
    fallback_date: date
    lake: Lake
    conn: psycopg.AsyncConnection
    run_id: str
    outcome: SymbolCollection
    reprocess: bool = False
    keep_parsed: bool = False

    async def store(self, page: Page) -> None:
        data_date = page_data_date(page, self.fallback_date)
        dataset = page.request.dataset
        redacted = page.request.redacted()
        stored = await asyncio.to_thread(
            store_raw_page,
            self.lake,
            source=self.source,
            dataset=dataset,
            symbol=self.symbol,
            data_date=data_date,
            request=redacted,
            payload=page.payload,
            fetched_at=page.served_at,
            body=page.body,
        )
        timeframe = self.timeframe if dataset in ("bars", "chart", RECORDS_DATASET) else None
        await self.conn.execute(
            """
            INSERT INTO ops.raw_pages (key, source, dataset, symbol, timeframe, data_date, records, checksum, run_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (key) DO UPDATE SET
                records = excluded.records, checksum = excluded.checksum, fetched_at = now(),
                run_id = excluded.run_id,
                processed_at = CASE WHEN ops.raw_pages.checksum = excluded.checksum AND NOT %s
                                    THEN ops.raw_pages.processed_at END,
                process_error = CASE WHEN ops.raw_pages.checksum = excluded.checksum AND NOT %s
                                     THEN ops.raw_pages.process_error END
            """,
            (
                stored.key,
                self.source,
                dataset,
                self.symbol,
                timeframe,
                data_date,
                len(page.frame),
                stored.checksum,
                self.run_id,
                self.reprocess,
                self.reprocess,
            ),
        )
        self.outcome.pages += 1
        self.outcome.records += len(page.frame)
        self.outcome.raw_keys.append(stored.key)
        if self.keep_parsed and dataset != RECORDS_DATASET:
            self.outcome.parsed[stored.key] = ParsedPage(redacted, page.frame, page.served_at, stored.checksum)
