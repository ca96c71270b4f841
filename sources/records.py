"""Pages of records: how the frame of a source without pages (a seed-style plugin that only
implements ``fetch_data``) is stored in the raw zone and read back. Pure, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from core import model
from sources.http import Page, Request

RECORDS_DATASET = "records"


def records_request(
    source: str, *, symbol: str, start: datetime, end: datetime, timeframe: str, schema: str
) -> Request:
    """What a records page was asked for: enough to ask ``fetch_data`` again (dead-letter replay)."""
    return Request(
        source,
        RECORDS_DATASET,
        f"plugin:{source}",
        {"symbol": symbol, "start": start.isoformat(), "end": end.isoformat()},
        {"symbol": symbol, "timeframe": timeframe, "schema": schema},
    )


def records_page(
    source: str, frame: pd.DataFrame, *, symbol: str, start: datetime, end: datetime, timeframe: str, schema: str
) -> Page:
    """``frame`` as one page: a request naming what was asked for, the frame's records as payload."""
    request = records_request(source, symbol=symbol, start=start, end=end, timeframe=timeframe, schema=schema)
    return records_page_of(request, frame)


def records_page_of(request: Request, frame: pd.DataFrame) -> Page:
    payload = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return Page(request, frame, payload)


def parse_records(request: Request, payload: Any) -> pd.DataFrame:
    """A stored records page back into its canonical frame (the schema is in the request)."""
    schema = model.SCHEMAS[request.context.get("schema", "bars")]
    if not payload:
        return model.empty_frame(schema)
    records = pd.DataFrame.from_records(payload)
    # model.frame takes a mapping of columns (a DataFrame itself is not one: its .values is an array)
    columns = {name: records[name] for name in records.columns}
    return model.frame(schema, columns, what=f"{request.source} stored records")
