"""The processing stage's work: raw pages -> parse -> standardize -> validate -> hot store.

Per symbol, the pending pages of ``ops.raw_pages`` are read back from the lake and re-parsed with
the vendor's own parser (or, right after their collection in the same run, taken as the
collection parsed them: see :class:`tasks.collection.ParsedPage`), standardized and
validated. Then ONE transaction claims the pages (:func:`claim_pages`: the series locked, the
pages marked processed if still pending with the checksum they were looked up with), writes the
accepted bars, advances their watermarks and quarantines the rejected records to the dead-letter
table (strict mode): a crash anywhere leaves all of it to the next run, and the idempotent upsert
makes that rerun exact. Two runs on one series (a scheduled and a manual one) take turns, and a
page collected again with other data since it was looked up is left pending for the run that
collected it: its stale frame is never stored over the correction. A page whose stored payload
no longer parses is dead-lettered (with its lake key) and marked with its error; the symbol's
other pages go on.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from loguru import logger

from core import model
from core.errors import MarketpipeError
from core.settings import DEFAULT_SOURCE_PRECEDENCE
from quality.score import batch_score
from quality.standardize import standardize_bars
from quality.validate import ValidationResult, validate_bars
from sources.dead_letters import record_dead_letter_sync
from sources.http import Request
from sources.registry import SourceRegistry
from storage.aggregates import record_changed_minutes
from storage.corporate_actions import read_corporate_actions, write_corporate_actions
from storage.hot import UpsertResult, write_series_bars
from storage.lake import Lake
from storage.options import OPTION_DATASET
from storage.raw import decode_envelope_of
from tasks.collection import ParsedPage, parse_stored_page

BAR_DATASETS = ("bars", "chart", "records")
ACTION_DATASETS = ("splits", "dividends", "corporate_actions")
MAX_QUARANTINED_RECORDS = 1000  # per dead letter; the raw page in the lake holds them all


@dataclass(frozen=True)
class PendingPage:
    key: str
    source: str
    dataset: str
    symbol: str
    timeframe: str | None
    data_date: date
    checksum: str  # of the page's data when it was looked up (ops.raw_pages.checksum)


@dataclass
class SymbolProcessing:
    """What processing one symbol did; serializable for Prefect results and artifacts."""

    symbol: str
    pages: int = 0
    records: int = 0
    accepted: int = 0
    rejected: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    # bars kept apart in market.vendor_bars_*: a vendor of better precedence has them served
    kept_apart: int = 0
    quality_score: float | None = None
    error: str | None = None
    # the time range of the 1-minute bars this processing inserted or changed (ISO, UTC): recorded
    # with them in ops.aggregate_refreshes, the aggregates built on them are refreshed over it
    # (tasks.aggregates)
    minutes_from: str | None = None
    minutes_to: str | None = None


def pending_pages(
    conn: psycopg.Connection,
    *,
    source: str,
    symbols: Sequence[str] | None = None,
    datasets: Sequence[str] = BAR_DATASETS,
    timeframe: str | None = None,
) -> list[list[PendingPage]]:
    """Unprocessed raw pages grouped by (symbol, timeframe), each group one series (validated
    against the calendar as a whole), its pages in the order they were fetched: where two pages
    hold the same bar, the later fetch is the vendor's newer word (see :func:`newest_bars`). The
    key is a hash of the request, not a time: ordered by it, a page a killed run left pending
    could come after its own correction fetched later under another key (another range asked)."""
    rows = conn.execute(
        """
        SELECT key, source, dataset, symbol, timeframe, data_date, checksum FROM ops.raw_pages
        WHERE processed_at IS NULL AND source = %(source)s AND dataset = ANY(%(datasets)s)
          AND (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s))
          AND (%(timeframe)s::text IS NULL OR timeframe = %(timeframe)s)
        ORDER BY symbol, fetched_at, key
        """,
        {
            "source": source,
            "datasets": list(datasets),
            "timeframe": timeframe,
            "symbols": list(symbols) if symbols is not None else None,
        },
    ).fetchall()
    pending: dict[tuple[str, str | None], list[PendingPage]] = defaultdict(list)
    for row in rows:
        page = PendingPage(*row)
        pending[(page.symbol, page.timeframe)].append(page)
    return list(pending.values())


# The lock family of each non-bar raw dataset: the datasets one processing function stores
# together (it reads what the others wrote) share their symbol's lock; families never wait on each
# other (a symbol's news processing, slow with sentiment, embeddings and the global dedup lock, no
# longer holds up its options or fundamentals). Bars are keyed by their timeframe instead.
LOCK_FAMILIES: dict[str, str] = {
    **{dataset: "actions" for dataset in ACTION_DATASETS},
    "news": "news",
    "social_posts": "news",
    "financials": "fundamentals",
    "earnings": "fundamentals",
    OPTION_DATASET: "options",
}


def lock_family(dataset: str) -> str:
    """The family whose lock a page of ``dataset`` is claimed under (a dataset of no known family
    is its own)."""
    return "bars" if dataset in BAR_DATASETS else LOCK_FAMILIES.get(dataset, dataset)


def series_lock_key(source: str, symbol: str, dataset: str, timeframe: str | None) -> int:
    """The advisory lock id of a series of raw pages (a signed 64-bit digest of its source, symbol,
    dataset family and timeframe): processing of that series holds it for its transaction."""
    series = f"series\x1f{source}\x1f{symbol}\x1f{lock_family(dataset)}\x1f{timeframe or ''}"
    digest = hashlib.blake2b(series.encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def claim_pages(conn: psycopg.Connection, pages: Sequence[PendingPage]) -> list[PendingPage]:
    """The pages of ``pages`` this transaction stores: their series locked until it ends (one lock
    per source, symbol and dataset family, see :data:`LOCK_FAMILIES`; taken in one statement in
    one order, the lock ids', so batches of several series never deadlock), then those still pending
    with the checksum they were looked up with marked processed. A page processed by another run
    meanwhile (it waited for that run's commit) or collected again with other data since is left
    out: the run that collected it processes it, and the frame looked up (or kept in memory by
    this run's collection) is never stored over the newer one. Marked by key alone, such a page
    was processed with its stale frame and the correction skipped. Must run in a transaction."""
    if not pages:
        return []
    locks = sorted({series_lock_key(p.source, p.symbol, p.dataset, p.timeframe) for p in pages})
    conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS l(k, n) ORDER BY n", (locks,)
    )
    rows = conn.execute(
        """
        UPDATE ops.raw_pages r SET processed_at = now(), process_error = NULL
        FROM unnest(%s::text[], %s::text[]) AS p(key, checksum)
        WHERE r.key = p.key AND r.checksum = p.checksum AND r.processed_at IS NULL
        RETURNING r.key
        """,
        ([p.key for p in pages], [p.checksum for p in pages]),
    ).fetchall()
    claimed = {key for (key,) in rows}
    return [page for page in pages if page.key in claimed]


def processing_error(exc: BaseException) -> str:
    """How a symbol's failed processing reads on its outcome and on its pages left pending."""
    return f"processing failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:1000]


def record_process_error(
    conn: psycopg.Connection,
    *,
    source: str,
    symbol: str,
    timeframe: str | None,
    datasets: Sequence[str],
    error: str,
) -> None:
    """Say on a symbol's pending pages why its processing failed. They stay pending (the next run
    tries them again; the symbol's other series and the run's other symbols went on); the
    processing that finally stores them clears the error."""
    conn.execute(
        """
        UPDATE ops.raw_pages SET process_error = %(error)s
        WHERE processed_at IS NULL AND source = %(source)s AND dataset = ANY(%(datasets)s) AND symbol = %(symbol)s
          AND (%(timeframe)s::text IS NULL OR timeframe = %(timeframe)s)
        """,
        {"error": error, "source": source, "datasets": list(datasets), "symbol": symbol, "timeframe": timeframe},
    )


def read_unparsed(
    lake: Lake, pages: Sequence[PendingPage], parsed: Mapping[str, ParsedPage] | None
) -> dict[str, tuple[dict[str, Any], Any, datetime]]:
    """The stored request, payload and fetch instant of each page the collection did not keep
    (see :func:`kept_frame`), by key. A page whose raw-zone object does not hold the data its row's
    checksum is of (two collections of its key crossed: the row has one's checksum, the object the
    other's data) is left out and logged: claimed, the other's data would be stored as this
    checksum's, and never processed again. It stays pending (see :func:`at_hand`) until a
    collection writes its object and row again."""
    stored = {}
    for page in pages:
        if kept_frame(page, parsed) is not None:
            continue
        raw = decode_envelope_of(page.key, lake.get_bytes(page.key), page.checksum)
        if raw is None:
            logger.warning(
                "raw page {} is left pending: its raw-zone object does not hold the data of the checksum {} it was "
                "collected with (another collection of the key wrote it); collect it again if it stays so",
                page.key,
                page.checksum,
            )
            continue
        stored[page.key] = (raw.request, raw.payload, raw.fetched_at)
    return stored


def at_hand(
    pages: Sequence[PendingPage],
    parsed: Mapping[str, ParsedPage] | None,
    stored: Mapping[str, tuple[dict[str, Any], Any, datetime]],
) -> list[PendingPage]:
    """The pages whose data this run holds as they were looked up (kept by its collection, or read
    back by :func:`read_unparsed`): the only ones it may claim."""
    return [page for page in pages if page.key in stored or kept_frame(page, parsed) is not None]


def kept_frame(page: PendingPage, parsed: Mapping[str, ParsedPage] | None) -> ParsedPage | None:
    """The frame this run's collection kept of ``page``, if it is of the data the page was looked
    up with (same checksum; a frame without one is taken as is): another run may have collected
    the page again since, and its raw zone object is then the newer."""
    kept = (parsed or {}).get(page.key)
    if kept is None or (kept.checksum is not None and kept.checksum != page.checksum):
        return None
    return kept


def page_frames(
    conn: psycopg.Connection,
    pages: Sequence[PendingPage],
    parsed: Mapping[str, ParsedPage] | None,
    stored: Mapping[str, tuple[dict[str, Any], Any, datetime]],
    registry: SourceRegistry | None = None,
) -> list[tuple[PendingPage, ParsedPage]]:
    """Each pending page's request and frame: from ``parsed`` when the collection kept it, else
    re-parsed from its ``stored`` envelope. Pages that no longer parse are dead-lettered and left
    out."""
    out = []
    for page in pages:
        kept = kept_frame(page, parsed)
        if kept is None:
            request, payload, fetched_at = stored[page.key]
            frame = _parse(conn, page, request, payload, registry)
            if frame is None:
                continue
            kept = ParsedPage(request, frame, fetched_at)
        out.append((page, kept))
    return out


def _parse(
    conn: psycopg.Connection,
    page: PendingPage,
    stored_request: dict[str, Any],
    payload: Any,
    registry: SourceRegistry | None = None,
) -> pd.DataFrame | None:
    """The page's frame (by its source's parser in ``registry``: plugins' pages too), or None after
    dead-lettering a page that no longer parses."""
    request = Request.from_redacted(page.source, page.dataset, stored_request)
    try:
        return parse_stored_page(page.source, request, payload, registry)
    except MarketpipeError as exc:
        record_dead_letter_sync(
            conn, source=page.source, dataset=page.dataset, request=stored_request, error=exc, payload_lake_key=page.key
        )
        conn.execute(
            "UPDATE ops.raw_pages SET process_error = %s, processed_at = now() WHERE key = %s", (str(exc), page.key)
        )
        return None


def newest_bars(pages: Sequence[tuple[PendingPage, ParsedPage]]) -> list[tuple[PendingPage, ParsedPage]]:
    """A series' pages (in fetch order) less the bars a later page of theirs holds too: only the
    newest fetch of a bar is validated and stored. Both versions validated together were a
    ``duplicate_conflict`` (strict: neither stored, the watermark past the bar) or, lenient, the
    version of whichever page came last. Conflicts within one page are left to validation."""
    seen = np.array([], dtype=np.int64)
    out = []
    for page, kept in reversed(pages):
        stamps = np.asarray(_utc_ns(kept.frame["ts"])) if len(kept.frame) else seen[:0]
        newest = ~np.isin(stamps, seen)
        out.append((page, kept if newest.all() else replace(kept, frame=kept.frame[newest])))
        seen = np.union1d(seen, stamps)
    return out[::-1]


def served_at(pages: Sequence[ParsedPage]) -> datetime | None:
    """The instant a series was served: its newest page's (the page holding a forming bar is the
    last fetched); None (validation's now) when none is known."""
    known = [p.served_at for p in pages if p.served_at is not None]
    return max(known) if known else None


def quarantine(
    conn: psycopg.Connection, pages: Sequence[tuple[PendingPage, ParsedPage]], rejected: pd.DataFrame
) -> int:
    """Dead-letter a series' rejected bars, one letter per raw page they came from (see
    :func:`pages_of_bars`); returns letters written."""
    if rejected.empty:
        return 0
    return quarantine_by_page(conn, pages, rejected.assign(**{PAGE_KEY: pages_of_bars(pages, rejected["ts"])}))


def pages_of_bars(pages: Sequence[tuple[PendingPage, ParsedPage]], ts: pd.Series) -> pd.Series:
    """The key of the page of a series (``pages`` in fetch order) each of ``ts`` came from: the
    last page holding that instant. Matched by timestamp, not by the page's first day
    (``data_date``): a page spans several sessions, and a bad bar on a later one had no letter."""
    keys = pd.Series(
        [page.key for page, kept in pages for _ in range(len(kept.frame))], index=_utc_ns(_stamps(pages)), dtype=object
    )
    keys = keys[~keys.index.duplicated(keep="last")]
    return pd.Series(keys.reindex(_utc_ns(ts)).to_numpy(), index=ts.index).fillna(pages[-1][0].key)


def _stamps(pages: Sequence[tuple[PendingPage, ParsedPage]]) -> pd.Series:
    frames = [kept.frame["ts"] for _, kept in pages if len(kept.frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.Series([], dtype="datetime64[ns, UTC]")


def _utc_ns(ts: pd.Series) -> pd.Index:
    """Timestamps as UTC nanoseconds since the epoch, whatever their zone and unit."""
    return pd.Index(pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).as_unit("ns").asi8)


def process_symbol_bars(
    conn: psycopg.Connection,
    lake: Lake,
    pages: Sequence[PendingPage],
    *,
    mode: str,
    parsed: Mapping[str, ParsedPage] | None = None,
    precedence: Sequence[str] = DEFAULT_SOURCE_PRECEDENCE,
    registry: SourceRegistry | None = None,
) -> SeriesProcessed:
    """Process one symbol's pending bar pages in one transaction (see the module docstring).

    ``parsed``: frames the collection of this run kept, by raw key (pages not in it are read back).
    ``precedence``: storage.source_precedence (which vendor's bar the consolidated series keeps).
    ``registry``: the settings' sources, whose parsers read pages read back (default: the built-ins).
    """
    return process_series_bars(
        conn,
        lake,
        [pages],
        mode=mode,
        parsed=parsed,
        precedence=precedence,
        registry=registry,
    )[0]


SeriesProcessed = tuple[SymbolProcessing, ValidationResult | None]  # a series' outcome and its validation


def process_series_bars(
    conn: psycopg.Connection,
    lake: Lake,
    groups: Sequence[Sequence[PendingPage]],
    *,
    mode: str,
    parsed: Mapping[str, ParsedPage] | None = None,
    precedence: Sequence[str] = DEFAULT_SOURCE_PRECEDENCE,
    registry: SourceRegistry | None = None,
) -> list[SeriesProcessed]:
    """Several symbols' pending bar pages (a group per series, see :func:`pending_pages`) in ONE
    transaction: each series parsed on its own, all standardized and validated by one call that
    judges each series as :func:`process_symbol_bars` alone would (``series_spans``), and what is
    stored written together (one query for their corporate actions, one update of their pages,
    :func:`storage.hot.write_series_bars`): the statements and round trips per symbol were most of
    the processing's cost for a page of a few thousand bars. A failure anywhere leaves every series
    of the batch to the next run. Series of one symbol in several timeframes are processed one
    after the other instead (a transaction each): a batch keys its results by symbol."""
    if len({pages[0].symbol for pages in groups}) < len(groups):
        options = {"mode": mode, "parsed": parsed, "precedence": precedence, "registry": registry}
        return [done for pages in groups for done in process_series_bars(conn, lake, [pages], **options)]
    stored = read_unparsed(lake, [page for pages in groups for page in pages], parsed)
    done: list[SeriesProcessed] = []
    series: list[tuple[int, list[tuple[PendingPage, ParsedPage]], datetime | None]] = []
    with conn.transaction():
        claimed = {page.key for page in claim_pages(conn, at_hand([p for ps in groups for p in ps], parsed, stored))}
        for pages in groups:
            mine = [page for page in pages if page.key in claimed]
            outcome = SymbolProcessing(pages[0].symbol, pages=len(mine))
            frames = page_frames(conn, mine, parsed, stored, registry)
            if mine and not frames:
                outcome.error = "no page of this series could be parsed (dead-lettered)"
            # Pages that brought data define the range validated against the calendar: an empty page
            # (nothing new since the watermark) is not a missing session.
            with_data = [(p, k) for p, k in frames if len(k.frame)]
            if with_data:
                outcome.records = sum(len(k.frame) for _, k in with_data)
                series.append((len(done), newest_bars(with_data), served_at([k for _, k in with_data])))
            done.append((outcome, None))
        if not series:
            return done
        symbols = [done[index][0].symbol for index, _, _ in series]
        timeframes = {p.timeframe for _, with_data, _ in series for p, _ in with_data if p.timeframe}
        # The calendar range checked for each series is the one its bars span (sessions are fetched
        # whole, see pipeline.plan.resume_starts); missing sessions at its edges are the historical
        # stage's gap repair. One validation for the batch, each series judged as if alone.
        batch = validate_bars(
            standardize_bars(
                pd.concat([k.frame for _, with_data, _ in series for _, k in with_data], ignore_index=True)
            ),
            mode=mode,
            symbols=symbols,
            timeframe=next(iter(timeframes)) if len(timeframes) == 1 else None,
            corporate_actions=read_corporate_actions(conn, symbols),
            served_at={symbol: at for symbol, (_, _, at) in zip(symbols, series, strict=True) if at is not None},
            series_spans=True,
        ).by_symbol()
        lost = [symbol for symbol in symbols if model.normalize_symbol(symbol) not in batch]
        if lost:
            raise MarketpipeError(f"the validation of a processing batch returned no result for {lost}")
        results = [batch[model.normalize_symbol(symbol)] for symbol in symbols]
        for (_, with_data, _), result in zip(series, results, strict=True):
            quarantine(conn, with_data, result.rejected)
        written = write_series_bars(conn, [result.accepted for result in results], precedence=precedence)
        for (index, _, _), result, upsert in zip(series, results, written, strict=True):
            done[index] = _outcome(done[index][0], result, upsert)
        # with the bars: a run killed before its refresh leaves these ranges to the next (tasks.aggregates)
        record_changed_minutes(conn, [_changed_minutes(outcome) for outcome, _ in done if outcome.minutes_from])
    return done


def _changed_minutes(outcome: SymbolProcessing) -> tuple[datetime, datetime]:
    assert outcome.minutes_from is not None and outcome.minutes_to is not None
    return datetime.fromisoformat(outcome.minutes_from), datetime.fromisoformat(outcome.minutes_to)


def _outcome(outcome: SymbolProcessing, result: ValidationResult, written: UpsertResult) -> SeriesProcessed:
    """A series' outcome once its bars are stored: counts, the 1-minute range changed, its quality
    score (the quality report's; the report itself is made over the whole batch, see
    :func:`tasks.pending.batch_quality`)."""
    outcome.accepted, outcome.rejected = len(result.accepted), len(result.rejected)
    outcome.inserted, outcome.updated, outcome.unchanged = written.inserted, written.updated, written.unchanged
    outcome.kept_apart = written.refused
    minutes = result.accepted.loc[result.accepted["timeframe"] == "1min", "ts"]
    if written.changed and len(minutes):
        outcome.minutes_from, outcome.minutes_to = minutes.min().isoformat(), minutes.max().isoformat()
    outcome.quality_score = batch_score(result.coverage)
    return outcome, result


def process_symbol_actions(
    conn: psycopg.Connection,
    lake: Lake,
    pages: Sequence[PendingPage],
    parsed: Mapping[str, ParsedPage] | None = None,
    registry: SourceRegistry | None = None,
) -> SymbolProcessing:
    """Store one symbol's pending corporate-action pages (splits, dividends) in one transaction."""
    outcome = SymbolProcessing(pages[0].symbol)
    stored = read_unparsed(lake, pages, parsed)
    with conn.transaction():
        claimed = claim_pages(conn, at_hand(pages, parsed, stored))
        outcome.pages = len(claimed)
        frames = [kept.frame for _, kept in page_frames(conn, claimed, parsed, stored, registry)]
        actions = pd.concat(frames, ignore_index=True) if frames else model.empty_frame(model.CORPORATE_ACTIONS)
        outcome.records = outcome.accepted = len(actions)
        written = write_corporate_actions(conn, actions)
    outcome.inserted, outcome.updated, outcome.unchanged = written.inserted, written.updated, written.unchanged
    return outcome


#: The column a data type's checked records carry their raw page's key in (see :func:`quarantine_by_page`).
PAGE_KEY = "_raw_key"


def quarantine_by_page(
    conn: psycopg.Connection,
    pages: Sequence[tuple[PendingPage, ParsedPage]],
    rejected: pd.DataFrame,
    *,
    what: str = "record(s)",
    verdict: str = "failed validation",
) -> int:
    """One dead letter per raw page holding rejected records (``rejected`` has a ``reason`` and the
    page's key in :data:`PAGE_KEY`): at most ``MAX_QUARANTINED_RECORDS`` records and the count of
    each reason, the error naming them ("5 option contract(s) of AAPL refused: ..."). Returns the
    dead letters written."""
    letters = 0
    if rejected.empty:
        return letters
    for page, kept in pages:
        part = rejected[rejected[PAGE_KEY] == page.key].drop(columns=PAGE_KEY)
        if part.empty:
            continue
        records = part.head(MAX_QUARANTINED_RECORDS).astype(object).where(part.notna(), None)
        reasons = part["reason"].value_counts().to_dict()
        record_dead_letter_sync(
            conn,
            source=page.source,
            dataset=page.dataset,
            request=kept.request,
            error=f"{len(part)} {what} of {page.symbol} {verdict}: "
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
