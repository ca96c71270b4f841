"""The processing of filings and earnings-calendar pages: raw pages -> parse -> validate -> hot store.

The same path as corporate actions (:func:`tasks.processing.process_symbol_actions`): per symbol,
its pending pages are taken as the collection parsed them or re-parsed from the raw zone, then
ONE transaction stores the accepted records (filings advance their watermark), dead-letters the
rejected ones with their reasons (one letter per raw page, like rejected bars) and marks the pages
processed. A filing is validated as a whole (:mod:`quality.fundamentals`): a bad line item keeps
every line of its filing out, so no filing is half-stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pandas as pd
import psycopg
from prefect import task
from prefect.cache_policies import NONE

from core import model
from features.fundamentals import EARNINGS_FEATURE_SET, earnings_bar_features
from pipeline.request import IngestRequest
from quality.fundamentals import Checked, check_earnings, check_financials
from sources.registry import SourceRegistry
from storage.fundamentals import read_earnings_versions, write_earnings, write_earnings_features, write_financials
from storage.lake import Lake
from storage.news import bar_stamps
from tasks.collection import ParsedPage
from tasks.processing import PAGE_KEY as _PAGE
from tasks.processing import (
    PendingPage,
    SymbolProcessing,
    at_hand,
    claim_pages,
    page_frames,
    quarantine_by_page,
    read_unparsed,
)
from tasks.resources import RunResources
from tasks.retries import DATABASE_RETRY_OPTIONS

FUNDAMENTAL_DATASETS = ("financials",)
EARNINGS_DATASETS = ("earnings",)


def process_symbol_fundamentals(
    conn: psycopg.Connection,
    lake: Lake,
    pages: Sequence[PendingPage],
    parsed: Mapping[str, ParsedPage] | None = None,
    registry: SourceRegistry | None = None,
) -> SymbolProcessing:
    """Store one symbol's pending filing or earnings pages in one transaction (module docstring)."""
    symbol, dataset = pages[0].symbol, pages[0].dataset
    earnings = dataset in EARNINGS_DATASETS
    schema = model.EARNINGS if earnings else model.FINANCIALS
    outcome = SymbolProcessing(symbol, pages=len(pages))
    stored = read_unparsed(lake, pages, parsed)
    with conn.transaction():
        claimed = claim_pages(conn, at_hand(pages, parsed, stored))
        outcome.pages = len(claimed)
        framed = page_frames(conn, claimed, parsed, stored, registry)
        parts = [kept.frame.assign(**{_PAGE: page.key}) for page, kept in framed if len(kept.frame)]
        records = pd.concat(parts, ignore_index=True) if parts else model.empty_frame(schema).assign(**{_PAGE: ""})
        checked: Checked = (check_earnings if earnings else check_financials)(records, symbol)
        accepted = checked.accepted.drop(columns=_PAGE)
        written = write_earnings(conn, accepted) if earnings else write_financials(conn, accepted)
        quarantine_by_page(conn, framed, checked.rejected)
    outcome.records = len(records)
    outcome.accepted, outcome.rejected = len(checked.accepted), len(checked.rejected)
    outcome.inserted, outcome.updated, outcome.unchanged = written.inserted, written.updated, written.unchanged
    return outcome


def refresh_earnings_features(conn: psycopg.Connection, symbols: Sequence[str], start: datetime, end: datetime) -> int:
    """Recompute the earnings features (feature set ``earnings1``) of the stored daily bars of
    ``symbols`` in [start, end] from every stored version of their calendar, each bar seeing what
    was known by its session's close (features.fundamentals.earnings_bar_features); returns the
    feature rows changed (0 on a rerun)."""
    bars = bar_stamps(conn, symbols, "1day", start, end)
    if bars.empty:
        return 0
    long = earnings_bar_features(read_earnings_versions(conn, sorted(set(bars["symbol"]))), bars)
    with conn.transaction():
        written = write_earnings_features(conn, long, EARNINGS_FEATURE_SET)
    return written.changed


@task(name="earnings-features", cache_policy=NONE, **DATABASE_RETRY_OPTIONS)
async def earnings_features_task(resources: RunResources, request: IngestRequest) -> int:
    """The earnings features of the request's symbols' daily bars in its range, after its calendar
    versions are stored."""

    def run() -> int:
        with resources.connect() as conn:
            start, end = request.start - timedelta(days=1), request.end + timedelta(days=1)
            return refresh_earnings_features(conn, request.symbols, start, end)

    return await asyncio.to_thread(run)
