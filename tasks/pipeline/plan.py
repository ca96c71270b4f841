"""Planning incremental runs (pure): where each symbol resumes, given committed watermarks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from tasks.pipeline.request import IngestRequest

BAR_WIDTH = {
    "1min": timedelta(minutes=1),
    "5min": timedelta(minutes=5),
    "15min": timedelta(minutes=15),
    "1hour": timedelta(hours=1),
    "1day": timedelta(days=1),
}
NO_TIMEFRAME = ""


def watermark_dataset(data_type: str) -> tuple[str, str | None]:
    """(dataset, timeframe filter) under which a data type's watermarks are committed."""
    return ("bars", None) if data_type == "market_data" else ("corporate_actions", NO_TIMEFRAME)


def resume_starts(request: IngestRequest, high_water: Mapping[str, datetime]) -> dict[str, datetime | None]:
    """Per symbol, the first instant not yet committed inside the request (None: nothing new).

    A symbol with no watermark starts at the request's start; one whose watermark is at or past
    the request's end has nothing to fetch. The watermark is the *start* of the newest committed
    bar, so the next bar starts one bar width later.
    """
    step = BAR_WIDTH[request.timeframe] if request.data_type == "market_data" else timedelta(days=1)
    starts: dict[str, datetime | None] = {}
    for symbol in request.symbols:
        mark = high_water.get(symbol)
        start = request.start if mark is None else max(request.start, mark + step)
        starts[symbol] = start if start <= request.end else None
    return starts
