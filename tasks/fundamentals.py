"""The processing of filings and earnings-calendar pages: raw pages -> parse -> validate -> hot store.

The same path as corporate actions (:func:`tasks.processing.process_symbol_actions`): per symbol,
its pending pages are taken as the collection parsed them or re-parsed from the raw zone, then
ONE transaction stores the accepted records (filings advance their watermark), dead-letters the
rejected ones with their reasons (one letter per raw page, like rejected bars) and marks the pages
processed. A filing is validated as a whole (:mod:`quality.fundamentals`): a bad line item keeps
every line of its filing out, so no filing is half-stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import psycopg

from core import model
from quality.fundamentals import Checked, check_earnings, check_financials
from sources.registry import SourceRegistry
from storage.fundamentals import write_earnings, write_financials
from storage.lake import Lake
from tasks.collection import ParsedPage
from tasks.processing import PAGE_KEY as _PAGE
from tasks.processing import PendingPage, SymbolProcessing, page_frames, quarantine_by_page, read_unparsed

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
        framed = page_frames(conn, pages, parsed, stored, registry)
        parts = [kept.frame.assign(**{_PAGE: page.key}) for page, kept in framed if len(kept.frame)]
        records = pd.concat(parts, ignore_index=True) if parts else model.empty_frame(schema).assign(**{_PAGE: ""})
        checked: Checked = (check_earnings if earnings else check_financials)(records, symbol)
        accepted = checked.accepted.drop(columns=_PAGE)
        written = write_earnings(conn, accepted) if earnings else write_financials(conn, accepted)
        quarantine_by_page(conn, framed, checked.rejected)
        conn.execute(
            "UPDATE ops.raw_pages SET processed_at = now(), process_error = NULL "
            "WHERE key = ANY(%s) AND process_error IS NULL",
            ([p.key for p in pages],),
        )
    outcome.records = len(records)
    outcome.accepted, outcome.rejected = len(checked.accepted), len(checked.rejected)
    outcome.inserted, outcome.updated, outcome.unchanged = written.inserted, written.updated, written.unchanged
    return outcome
