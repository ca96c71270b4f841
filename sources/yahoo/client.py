"""Yahoo Finance chart API: :class:`YahooClient` builds ``/v8/finance/chart/{T}`` requests.

One request covers the whole range; its response holds both the bars and the corporate actions.
Intraday bars take a second request: the daily chart's splits up to the vendor's today, which
Yahoo applied to them (see :mod:`sources.yahoo.parsing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pandas as pd

from core import model
from core.errors import PermanentSourceError, SourceError
from sources.http import Page, Request, Response, VendorClient, collect
from sources.resilience import Resilience, source_error
from sources.yahoo.parsing import (
    SOURCE,
    later_splits_context,
    parse_chart_bars,
    parser_for,
    served_on_context,
    serves_no_bars,
)

DEFAULT_BASE_URL = "https://query1.finance.yahoo.com"
USER_AGENT = "marketpipe/0.1"
_INTERVAL = {
    (1, "min"): "1m",
    (2, "min"): "2m",
    (5, "min"): "5m",
    (15, "min"): "15m",
    (30, "min"): "30m",
    (60, "min"): "60m",
    (90, "min"): "90m",
    (1, "hour"): "1h",
    (1, "day"): "1d",
    (5, "day"): "5d",
    (1, "week"): "1wk",
    (1, "month"): "1mo",
    (3, "month"): "3mo",
}
# The span of bars one chart request may cover (Yahoo refuses longer ones with a 422).
_MAX_INTRADAY_SPAN = {(1, "min"): pd.Timedelta(days=7)}
_OTHER_INTRADAY_SPAN = pd.Timedelta(days=60)


class YahooClient(VendorClient):
    """Yahoo chart API. Receives its transport (``VendorHttp``) through the constructor."""

    source = SOURCE

    @classmethod
    def create(
        cls,
        *,
        base_url: str = DEFAULT_BASE_URL,
        resilience: Resilience | None = None,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> YahooClient:
        return cls(
            cls._transport(
                base_url,
                resilience=resilience,
                timeout_seconds=timeout_seconds,
                transport=transport,
                headers={"User-Agent": USER_AGENT},
            )
        )

    def chart_request(
        self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day", dataset: str = "chart"
    ) -> Request:
        """One chart request. Daily (or longer) bars and the ``corporate_actions`` dataset (the daily
        chart's events) run to the vendor's today, so the response lists every later split (the
        parsers undo them in prices and dividend amounts, then keep ``start``..``end``)."""
        interval = _INTERVAL.get(model.parse_timeframe(timeframe))
        if interval is None:
            raise PermanentSourceError(
                f"yahoo has no interval for timeframe {timeframe!r}; use one of "
                + ", ".join(f"{m}{u}" for m, u in _INTERVAL)
            )
        first, last = model.to_utc(start), model.to_utc(end)
        params: dict[str, Any] = {"period1": int(first.timestamp()), "period2": int(last.timestamp())}
        if dataset == "corporate_actions" or model.parse_timeframe(timeframe)[1] in ("day", "week", "month"):
            del params["period2"]
        return Request(
            SOURCE,
            dataset,
            f"/v8/finance/chart/{model.vendor_symbol(symbol, SOURCE)}",
            {**params, "interval": interval, "events": "div,splits", "includeAdjustedClose": "true"},
            {
                "symbol": model.normalize_symbol(symbol),
                "timeframe": model.canonical_timeframe(timeframe),
                "start": first.isoformat(),
                "end": last.isoformat(),
            },
        )

    def chart_requests(self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day") -> list[Request]:
        """The chart requests covering ``start``..``end``: one, or for intraday bars one per span
        Yahoo serves in a request (7 days of 1-minute bars, 60 days of the other intraday bars)."""
        span = _MAX_INTRADAY_SPAN.get(model.parse_timeframe(timeframe))
        if span is None and model.parse_timeframe(timeframe)[1] in ("min", "hour"):
            span = _OTHER_INTRADAY_SPAN
        first, last = model.to_utc(start), model.to_utc(end)
        if span is None:
            return [self.chart_request(symbol, first, last, timeframe=timeframe)]
        requests = []
        while first <= last:
            chunk_end = min(first + span - pd.Timedelta(seconds=1), last)
            requests.append(self.chart_request(symbol, first, chunk_end, timeframe=timeframe))
            first += span
        return requests

    def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        """The chart is one page; its frame holds the bars (events: :meth:`corporate_actions`)."""
        if request.dataset == "chart" and _intraday(request):
            return self._intraday_page(request)
        return self._served_page(request)

    async def _served_page(self, request: Request) -> AsyncIterator[Page]:
        """A daily chart's one page, its request's context holding the New York date of its HTTP
        Date (``served_on``): the splits Yahoo had applied to it are those ex up to that day."""
        response = await self.http.get_json(request)
        dated = replace(request, context={**request.context, **served_on_context(response.served_at)})
        yield _page(request, dated, response)

    async def _intraday_page(self, request: Request) -> AsyncIterator[Page]:
        """An intraday chart's one page, its request's context holding the splits Yahoo adjusted its
        bars for (``later_splits``): those of the daily chart from the range's start to the vendor's
        today, asked right after the bars (so it knows at least as far as they were adjusted; not
        asked when no bar was served). A failure of that second request fails the page (its letter
        replays both): without it the bars' basis is unknown."""
        bars = await self.http.get_json(request)
        context = request.context
        if serves_no_bars(bars.payload):  # nothing to date (a range after the vendor's now, say)
            dated = replace(request, context={**context, "later_splits": []})
            yield Page(dated, parser_for(dated)(bars.payload), bars.payload, bars.served_at, bars.body)
            return
        splits = self.chart_request(
            str(context["symbol"]), context["start"], context["end"], timeframe="1day", dataset="corporate_actions"
        )
        try:
            daily = await self.http.get_json(splits)
            later = later_splits_context(daily.payload, bars.served_at, bars.payload)
        except SourceError as exc:
            raise source_error(
                type(exc),
                f"yahoo intraday bars {request.describe()} not taken: the splits they are adjusted for could not be "
                f"read from {splits.describe()}: {exc}",
                request=request,
                status_code=exc.status_code,
                retry_after_seconds=exc.retry_after_seconds,
                payload_text=exc.payload_text,
            ) from exc
        yield _page(request, replace(request, context={**context, **later}), bars)

    async def bars(self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day") -> pd.DataFrame:
        frames = [
            await collect(self.iter_pages(request), model.empty_frame(model.BARS))
            for request in self.chart_requests(symbol, start, end, timeframe=timeframe)
        ]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    async def chart(
        self, symbol: str, start: Any, end: Any, *, timeframe: str = "1day"
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Daily (or longer) bars and corporate actions of ``start``..``end`` from one request (it runs
        to the vendor's today, so every later split is undone)."""
        if model.parse_timeframe(timeframe)[1] not in ("day", "week", "month"):
            raise PermanentSourceError(
                f"yahoo chart(): bars and actions from one request are daily or longer, not {timeframe!r}; "
                "ask bars() for intraday bars"
            )
        request = self.chart_request(symbol, start, end, timeframe=timeframe, dataset="corporate_actions")
        page = await anext(self.iter_pages(request))  # its frame: the events
        bars = parse_chart_bars(
            page.payload,
            timeframe=timeframe,
            symbol=symbol,
            start=start,
            end=end,
            served_on=page.request.context.get("served_on"),
        )
        return bars, page.frame

    async def corporate_actions(self, symbol: str, start: Any, end: Any) -> pd.DataFrame:
        return (await self.chart(symbol, start, end))[1]


def _page(asked: Request, dated: Request, response: Response) -> Page:
    """The page of a chart ``response``, parsed with its ``dated`` request's context (what the
    stored page keeps); a chart its parser refuses raises a PermanentSourceError carrying the
    request ``asked`` (its dead letter asks again, and dates the new response)."""
    try:
        frame = parser_for(dated)(response.payload)
    except PermanentSourceError as exc:
        raise source_error(
            PermanentSourceError,
            f"yahoo {asked.dataset} page {asked.describe()} is malformed: {exc}",
            request=asked,
            payload_text=response.text,
        ) from exc
    return Page(dated, frame, response.payload, response.served_at, response.body)


def _intraday(request: Request) -> bool:
    return model.parse_timeframe(str(request.context.get("timeframe", "1day")))[1] in ("min", "hour")
