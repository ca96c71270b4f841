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
from sources.dead_letters import record_dead_letter_sync
from sources.registry import SourceRegistry
from storage.fundamentals import write_earnings, write_financials
from storage.lake import Lake
from tasks.collection import ParsedPage
from tasks.processing import MAX_QUARANTINED_RECORDS, PendingPage, SymbolProcessing
from tasks.processing import _page_frames as page_frames
from tasks.processing import _read_unparsed as read_unparsed

FUNDAMENTAL_DATASETS = ("financials",)
EARNINGS_DATASETS = ("earnings",)
_PAGE = "_raw_key"


def _quarantine(
    conn: psycopg.Connection,
    pages: Sequence[tuple[PendingPage, ParsedPage]],
    rejected: pd.DataFrame,
) -> int:
    """One dead letter per raw page holding rejected records: the records and their reasons."""
    letters = 0
    for page, kept in pages:
        part = rejected[rejected[_PAGE] == page.key].drop(columns=_PAGE)
        if part.empty:
            continue
        records = part.head(MAX_QUARANTINED_RECORDS).astype(object).where(part.notna(), None)
        reasons = part["reason"].value_counts().to_dict()
        record_dead_letter_sync(
            conn,
            source=page.source,
            dataset=page.dataset,
            request=kept.request,
            error=f"{len(part)} record(s) of {page.symbol} failed validation: "
            + "; ".join(f"{reason} (x{count})" for reason, count in list(reasons.items())[:5]),
            payload={
                "raw_key": page.key,
                "records": len(part),
                "rejected": [
                    {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
                    for r in records.to_dict("records")
                ],
            },
            payload_lake_key=page.key,
        )
        letters += 1
    return letters


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
        _quarantine(conn, framed, checked.rejected)
        conn.execute(
            "UPDATE ops.raw_pages SET processed_at = now(), process_error = NULL "
            "WHERE key = ANY(%s) AND process_error IS NULL",
            ([p.key for p in pages],),
        )
    outcome.records = len(records)
    outcome.accepted, outcome.rejected = len(checked.accepted), len(checked.rejected)
    outcome.inserted, outcome.updated, outcome.unchanged = written.inserted, written.updated, written.unchanged
    return outcome
