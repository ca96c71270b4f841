"""What a user may ask the pipeline for, checked before any vendor request or write.

``parse_ingest_request`` is the one gate for the CLI, the facade (``run_ingestion``) and the
``ingest`` flow's parameters: every mistake becomes a RequestError naming the value, what is
allowed and what to do. The sources it accepts are the registry's (``sources.factory.
market_data_sources(settings)``: built-ins, entry points and the ``sources:`` setting), so a plugin
is accepted wherever a built-in vendor is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from core.errors import RequestError
from core.model import normalize_symbol
from sources.registry import ENTRY_POINT_GROUP, SourceRegistry

DATA_TYPES = ("market_data", "corporate_actions", "fundamentals", "earnings", "news", "social", "options")
# Data types only some vendors serve, and which: financial statements and the earnings calendar
# (Benzinga's, through Polygon) come from Polygon alone.
DATA_TYPE_SOURCES = {
    "fundamentals": ("polygon",),
    "earnings": ("polygon",),
    "news": ("polygon", "alpaca"),
    "social": ("reddit",),
    "options": ("polygon",),
}
EARNINGS_HORIZON_DAYS = 366  # how far ahead an earnings calendar may be asked for
TIMEFRAMES = ("1min", "5min", "15min", "1hour", "1day")
_TIMEFRAME_ALIASES = {
    "1m": "1min",
    "1minute": "1min",
    "5m": "5min",
    "15m": "15min",
    "1h": "1hour",
    "60min": "1hour",
    "1d": "1day",
    "d": "1day",
    "day": "1day",
    "daily": "1day",
}
# Tickers as vendors spell them: letters/digits, an optional share class after . - or /, and the
# prefixes some vendors use (^ for indices). Anything else (quotes, semicolons, spaces) is refused.
_SYMBOL = re.compile(r"^\^?[A-Z0-9]{1,10}([.\-/][A-Z0-9]{1,4})?$")
EARLIEST = date(2000, 1, 1)
MAX_SYMBOLS = 10_000


@dataclass(frozen=True)
class IngestRequest:
    data_type: str
    symbols: tuple[str, ...]
    start: datetime  # inclusive, UTC
    end: datetime  # inclusive, UTC
    timeframe: str
    source: str


def parse_symbols(symbols: str | Iterable[str] | None) -> tuple[str, ...]:
    """Comma/space separated text or a list; canonical spelling (BRK-B -> BRK.B), deduplicated in order."""
    if symbols is None:
        raise RequestError("no symbols given: pass at least one ticker, e.g. --symbols AAPL,MSFT")
    items = re.split(r"[,\s]+", symbols) if isinstance(symbols, str) else list(symbols)
    cleaned: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise RequestError(f"symbol {item!r} is not text; pass tickers such as 'AAPL' or 'BRK.B'")
        ticker = item.strip().upper()
        if not ticker:
            continue
        if not _SYMBOL.match(ticker):
            raise RequestError(
                f"symbol {item!r} is not a valid ticker: use letters and digits with an optional share class "
                "(AAPL, BRK.B, BRK-B); quotes, spaces and punctuation are not allowed"
            )
        ticker = normalize_symbol(ticker)
        if ticker not in cleaned:
            cleaned.append(ticker)
    if not cleaned:
        raise RequestError("the symbol list is empty: pass at least one ticker, e.g. --symbols AAPL,MSFT")
    if len(cleaned) > MAX_SYMBOLS:
        raise RequestError(f"{len(cleaned)} symbols in one request; the limit is {MAX_SYMBOLS}: split the request")
    return tuple(cleaned)


def check_source(source: str, known_sources: Iterable[str]) -> str:
    """``source`` if it is one of ``known_sources``; else a RequestError that lists them and says
    how a plugin is registered."""
    known = sorted(known_sources)
    if source not in known:
        raise RequestError(
            f"unknown source {source!r}: use one of {', '.join(known)}, or register a plugin (a BaseSource "
            f"subclass) in the settings' sources: {{{source}: 'package.module:Class'}} or with a "
            f"{ENTRY_POINT_GROUP!r} entry point"
        )
    return source


def parse_timeframe_choice(timeframe: str) -> str:
    key = str(timeframe).strip().lower()
    key = _TIMEFRAME_ALIASES.get(key, key)
    if key not in TIMEFRAMES:
        raise RequestError(f"unknown timeframe {timeframe!r}: use one of {', '.join(TIMEFRAMES)}")
    return key


def parse_when(value: Any, name: str) -> datetime:
    """A date, datetime or ISO text as an aware UTC datetime (naive means UTC)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise RequestError(f"{name} {value!r} is not a date: use YYYY-MM-DD or an ISO timestamp") from None
    else:
        raise RequestError(f"{name} {value!r} is not a date: use YYYY-MM-DD or an ISO timestamp")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_ingest_request(
    *,
    data_type: str,
    symbols: str | Sequence[str] | None,
    start_date: Any,
    end_date: Any,
    timeframe: str = "1day",
    source: str = "polygon",
    known_sources: Iterable[str] | None = None,
    now: datetime | None = None,
) -> IngestRequest:
    """``known_sources``: the names the settings' registry knows (``market_data_sources(settings)``);
    None: the built-in vendors only (no settings at hand)."""
    if data_type not in DATA_TYPES:
        raise RequestError(f"unknown data_type {data_type!r}: use one of {', '.join(DATA_TYPES)}")
    if data_type != "social":  # posts come from a source of another dataset (Reddit): checked below
        check_source(source, SourceRegistry.builtin().market_data_names() if known_sources is None else known_sources)
    serving = DATA_TYPE_SOURCES.get(data_type)
    if serving is not None and source not in serving:
        raise RequestError(
            f"source {source!r} serves no {data_type}: use --source {' or '.join(serving)} for {data_type}"
        )
    now = now or datetime.now(UTC)
    if data_type == "options":  # a chain is a snapshot of now: the dates only name the run
        start_date, end_date = start_date or now.date().isoformat(), end_date or now.date().isoformat()
    start = parse_when(start_date, "start_date")
    end = parse_when(end_date, "end_date")
    horizon = now + timedelta(days=EARNINGS_HORIZON_DAYS) if data_type == "earnings" else now
    if start > end:
        raise RequestError(
            f"start_date {start.date().isoformat()} is after end_date {end.date().isoformat()}: swap them"
        )
    if start > now:
        raise RequestError(f"start_date {start.date().isoformat()} is in the future (today is {now.date()})")
    if end.date() > horizon.date():
        allowed = "today or earlier" if horizon is now else f"{horizon.date()} or earlier (the calendar's horizon)"
        raise RequestError(f"end_date {end.date().isoformat()} is in the future (today is {now.date()}): use {allowed}")
    if start.date() < EARLIEST:
        raise RequestError(f"start_date {start.date().isoformat()} is before {EARLIEST}, the earliest date served")
    return IngestRequest(
        data_type=data_type,
        symbols=parse_symbols(symbols),
        start=start,
        end=end,
        timeframe=parse_timeframe_choice(timeframe),
        source=source,
    )
