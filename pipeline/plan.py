"""Planning pipeline runs (pure): where each symbol resumes after its committed watermark and what
the source has not stored of the range asked for, which ingest calls a pipeline run makes, and
which sessions the historical stage must refetch."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from core.calendar import SessionSchedule, expected_bar_ns, nyse_sessions
from core.model import EXCHANGE_TZ
from core.settings import PipelineSettings
from pipeline.request import IngestRequest

BAR_WIDTH = {
    "1min": timedelta(minutes=1),
    "5min": timedelta(minutes=5),
    "15min": timedelta(minutes=15),
    "1hour": timedelta(hours=1),
    "1day": timedelta(days=1),
}
NO_TIMEFRAME = ""
TEXT_DATA_TYPES = ("news", "social")
TEXT_OVERLAP = timedelta(hours=1)  # news and posts resume this long before their newest stored item
TEXT_BACKFILL = timedelta(days=1)  # a request starting earlier than this before it takes its whole range


def watermark_dataset(data_type: str) -> tuple[str, str | None]:
    """(dataset, timeframe filter) under which a data type's watermarks are committed. Filings
    resume after the newest filing date; the earnings calendar commits none (a report changes
    after it is first seen: every run asks its whole window again)."""
    if data_type == "market_data":
        return ("bars", None)
    return ({"fundamentals": "financials"}.get(data_type, data_type), NO_TIMEFRAME)


def resume_starts(request: IngestRequest, high_water: Mapping[str, datetime]) -> dict[str, datetime | None]:
    """Per symbol, where an incremental run resumes inside the request (None: nothing new).

    A symbol with no watermark starts at the request's start. Otherwise the watermark is the
    *start* of the newest committed bar: daily (and corporate-action) runs resume one step later;
    intraday runs resume at the start of the session that holds the next bar, so every batch
    holds whole sessions (refetching the part of a session already stored costs nothing: the
    upsert leaves unchanged rows alone) and is validated against the calendar as such. A session
    whose last bar is committed moves on to the next day.
    """
    intraday = request.data_type == "market_data" and request.timeframe != "1day"
    step = BAR_WIDTH[request.timeframe] if request.data_type == "market_data" else timedelta(days=1)
    starts: dict[str, datetime | None] = {}
    for symbol in request.symbols:
        mark = high_water.get(symbol)
        if mark is None or request.data_type == "options":  # a chain snapshot is taken whatever is stored
            start = request.start
        elif request.data_type in TEXT_DATA_TYPES:
            # a poll resumes an hour before the newest stored item (items arrive late; the upsert keeps
            # a refetch exact); a request reaching further back than TEXT_BACKFILL before it is a
            # backfill (nothing says that range was fetched): its whole range
            backfill = request.start < mark - TEXT_BACKFILL
            start = request.start if backfill else max(request.start, mark - TEXT_OVERLAP)
        elif intraday:
            start = max(request.start, _session_resume(mark, step))
        else:
            start = max(request.start, mark + step)
        starts[symbol] = start if start <= request.end else None
    return starts


# Data types whose symbol asks the vendor several requests (Polygon's splits and dividends) that
# commit one watermark (the newest ex date of either): one request's failure is not seen by it.
SHARED_WATERMARK_DATA_TYPES = ("corporate_actions",)


def unfinished_starts(
    request: IngestRequest, resumes: Mapping[str, datetime | None], unfinished: Collection[str]
) -> dict[str, datetime | None]:
    """``resumes`` with the symbols in ``unfinished`` (an open dead letter for one of their
    requests) starting at the request's start, for the data types whose requests share one
    watermark: there the watermark may have moved past what the failed request should have
    brought (Polygon's dividends failed, its splits returned a later ex date), and resuming after
    it skipped that range for good. Asked again whole (the upsert keeps it exact) until the letter
    is replayed."""
    if request.data_type not in SHARED_WATERMARK_DATA_TYPES:
        return dict(resumes)
    return {symbol: request.start if symbol in unfinished else start for symbol, start in resumes.items()}


def sessions_to_check(request: IngestRequest, resumes: Mapping[str, datetime | None]) -> list[date]:
    """The sessions of the request that lie before some symbol's resume point (all of them for a
    symbol with nothing new): where :func:`uncovered_starts` needs to know what is stored.
    Corporate actions have no sessions to check (they resume after their watermark alone)."""
    if request.data_type != "market_data" or not request.symbols:
        return []
    bounds = [request.end if resume is None else resume for resume in resumes.values()]
    if not bounds:
        return []
    schedule = nyse_sessions(request.start.date(), request.end.date())
    latest = pd.Timestamp(max(bounds)).value
    return [pd.Timestamp(d).date() for d, m in zip(schedule.dates, schedule.midnight_ns, strict=True) if m < latest]


def uncovered_starts(
    request: IngestRequest,
    resumes: Mapping[str, datetime | None],
    sessions: Sequence[date],
    stored: pd.DataFrame,
) -> dict[str, datetime | None]:
    """Where each symbol of an incremental run starts, given what the source has stored.

    ``resumes`` are the watermark's answer (:func:`resume_starts`): after the newest committed
    bar. But the watermark is one high mark: a range before the first stored bar, or a session
    missing in between, would never be fetched. So each session of ``sessions`` (the request's,
    :func:`sessions_to_check`) that lies before a symbol's resume point and holds none of the
    source's bars (``stored``: columns symbol, session_date) moves that symbol's start back to
    the midnight New York of the first such session; the run then fetches from there to the
    request's end (the sessions already stored in between are refetched and left unchanged by the
    upsert). A session stored in part is the historical stage's gap repair, as before.
    """
    have = {(str(s), pd.Timestamp(d).date()) for s, d in zip(stored["symbol"], stored["session_date"], strict=True)}
    starts: dict[str, datetime | None] = {}
    for symbol in request.symbols:
        resume = resumes.get(symbol, request.start)
        bound = request.end if resume is None else resume
        missing = next(
            (day for day in sessions if _ny_midnight(day) < bound and (symbol, day) not in have),
            None,
        )
        starts[symbol] = resume if missing is None else max(request.start, _ny_midnight(missing))
    return starts


def _ny_midnight(day: date) -> datetime:
    return pd.Timestamp(day, tz=EXCHANGE_TZ).tz_convert("UTC").to_pydatetime()


def _session_resume(mark: datetime, step: timedelta) -> datetime:
    """Midnight New York of the session holding the bar after ``mark`` (or of the next day when
    ``mark`` is the session's last bar)."""
    following = pd.Timestamp(mark + step).tz_convert(EXCHANGE_TZ)
    day = following.date()
    schedule = nyse_sessions(day, day)
    closed = not len(schedule) or following.value >= int(schedule.close_ns[0])
    if closed:
        day = day + timedelta(days=1)
    return _ny_midnight(day)


# ---------------------------------------------------------------------------------------------
# What run_pipeline() keeps current


@dataclass(frozen=True)
class IngestJob:
    """One ``ingest`` call of a pipeline run."""

    data_type: str
    timeframe: str
    symbols: tuple[str, ...]
    start: date
    end: date


def pipeline_jobs(pipeline: PipelineSettings, today: date, symbols: Sequence[str] | None = None) -> list[IngestJob]:
    """Corporate actions first (so processing knows the splits of the bars it validates), then
    every configured bar series, each over its lookback window ending today."""
    universe = tuple(symbols or pipeline.symbols)
    jobs = []
    if pipeline.bars and pipeline.corporate_actions:
        longest = max(job.lookback_days for job in pipeline.bars)
        jobs.append(IngestJob("corporate_actions", "1day", universe, today - timedelta(days=longest), today))
    for bar_job in pipeline.bars:
        start = today - timedelta(days=bar_job.lookback_days)
        jobs.append(IngestJob("market_data", bar_job.timeframe, universe, start, today))
    return jobs


# ---------------------------------------------------------------------------------------------
# Gaps: sessions whose bars are missing from the hot store


@dataclass(frozen=True)
class GapRange:
    """A run of consecutive sessions to refetch for some symbols."""

    symbols: tuple[str, ...]
    start: date
    end: date
    sessions: int


def missing_sessions(
    stored: pd.DataFrame, schedule: SessionSchedule, timeframe: str, symbols: Sequence[str]
) -> pd.DataFrame:
    """Symbol-sessions holding fewer bars than the calendar expects.

    ``stored`` has columns symbol, session_date (datetime64[D] or date) and bars (count).
    Returns symbol, session_date (``datetime64[D]``), expected, stored.
    """
    _, session_of_bar = expected_bar_ns(schedule, timeframe)
    expected = np.bincount(session_of_bar, minlength=len(schedule))
    grid = pd.DataFrame(
        {
            "symbol": np.repeat(np.asarray(list(symbols), dtype=object), len(schedule)),
            "session_date": np.tile(schedule.dates, len(symbols)),
            "expected": np.tile(expected, len(symbols)),
        }
    )
    have = stored.assign(session_date=pd.to_datetime(stored["session_date"]).values.astype("datetime64[D]"))
    merged = grid.merge(have[["symbol", "session_date", "bars"]], on=["symbol", "session_date"], how="left")
    merged["stored"] = merged["bars"].fillna(0).astype(np.int64)
    missing = merged[merged["stored"] < merged["expected"]]
    return missing[["symbol", "session_date", "expected", "stored"]].reset_index(drop=True)


def gap_ranges(missing: pd.DataFrame, schedule: SessionSchedule, max_sessions: int) -> list[GapRange]:
    """Consecutive missing sessions per symbol, cut into chunks of at most ``max_sessions`` (a
    vendor page's worth), with symbols sharing identical ranges grouped into one request."""
    if missing.empty:
        return []
    position = {d: i for i, d in enumerate(schedule.dates.astype("datetime64[D]").tolist())}
    ranges: dict[tuple[date, date, int], list[str]] = {}
    for symbol, group in missing.groupby("symbol", sort=True):
        days = sorted(pd.to_datetime(group["session_date"]).dt.date)
        run: list[date] = []
        for day in days:
            if run and (position[day] != position[run[-1]] + 1 or len(run) >= max_sessions):
                ranges.setdefault((run[0], run[-1], len(run)), []).append(str(symbol))
                run = []
            run.append(day)
        ranges.setdefault((run[0], run[-1], len(run)), []).append(str(symbol))
    return [GapRange(tuple(syms), start, end, n) for (start, end, n), syms in sorted(ranges.items())]


def sessions_per_request(timeframe: str) -> int:
    """How many sessions one refetch covers: within Polygon's 50,000-row page for minute bars."""
    return {"1min": 60, "5min": 300, "15min": 900, "1hour": 2000, "1day": 5000}[timeframe]
