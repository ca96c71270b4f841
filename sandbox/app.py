"""The ASGI app: every emulated vendor under its own paths, plus the `/_sandbox` control API.

This is the I/O edge. Each vendor route goes through one pipeline: count the request, check the
vendor's auth, draw the run's fault for it, run the pure handler in a worker thread (generation
is CPU work), apply record-level faults, serialize, count what was served.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from email.utils import formatdate
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox import alpaca_api, news, polygon_api, reddit_api, yahoo_api
from sandbox.clock import NS, MarketClock, end_of_day_ns, new_york_date, parse_now, to_ns
from sandbox.config import FaultConfig, SandboxConfig
from sandbox.defects import FilingDefects, defect_routes
from sandbox.faults import (
    FaultDecision,
    FaultPlan,
    drop_records,
    duplicate_records,
    malform_records,
    truncate_body,
)
from sandbox.handling import Handler, Payload, RequestContext, WireError
from sandbox.late_splits import LateSplits, late_split_routes
from sandbox.latency import LatencyConfig, VendorNetwork
from sandbox.market import Market, canonical_symbol
from sandbox.news import DEFAULT_UNIVERSE
from sandbox.skews import PriceSkews, skew_routes
from sandbox.stats import Stats
from sandbox.streams.hub import StreamHub
from sandbox.streams.routes import stream_routes
from sandbox.wire import alpaca as alpaca_wire
from sandbox.wire import polygon as polygon_wire
from sandbox.wire import reddit as reddit_wire
from sandbox.wire import yahoo as yahoo_wire
from sandbox.wire.common import request_id

VENDOR_ROUTES: tuple[tuple[str, str, str, Handler], ...] = (
    ("polygon", "aggs", "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}", polygon_api.aggregates),
    ("polygon", "trades", "/v3/trades/{ticker}", polygon_api.trades),
    ("polygon", "quotes", "/v3/quotes/{ticker}", polygon_api.quotes),
    ("polygon", "splits", "/v3/reference/splits", polygon_api.splits),
    ("polygon", "dividends", "/v3/reference/dividends", polygon_api.dividends),
    ("polygon", "news", "/v2/reference/news", polygon_api.news),
    ("polygon", "options_chain", "/v3/snapshot/options/{underlying}", polygon_api.options_chain),
    ("polygon", "options_contracts", "/v3/reference/options/contracts", polygon_api.options_contracts),
    ("polygon", "financials", "/vX/reference/financials", polygon_api.financials),
    ("polygon", "earnings", "/benzinga/v1/earnings", polygon_api.earnings),
    ("alpaca", "bars", "/v2/stocks/bars", alpaca_api.bars),
    ("alpaca", "bars", "/v2/stocks/{symbol}/bars", alpaca_api.bars),
    ("alpaca", "trades", "/v2/stocks/trades", alpaca_api.trades),
    ("alpaca", "trades", "/v2/stocks/{symbol}/trades", alpaca_api.trades),
    ("alpaca", "quotes", "/v2/stocks/quotes", alpaca_api.quotes),
    ("alpaca", "quotes", "/v2/stocks/{symbol}/quotes", alpaca_api.quotes),
    ("alpaca", "news", "/v1beta1/news", alpaca_api.news),
    ("alpaca", "corporate_actions", "/v1/corporate-actions", alpaca_api.corporate_actions),
    ("alpaca", "option_snapshots", "/v1beta1/options/snapshots/{underlying_symbol}", alpaca_api.option_chain),
    ("yahoo", "chart", "/v8/finance/chart/{symbol}", yahoo_api.chart),
    ("reddit", "listing", "/r/{subreddit}/{listing}.json", reddit_api.listing),
)
VENDORS = ("polygon", "alpaca", "yahoo", "reddit")
AUTH_QUERY_PARAMS = ("apiKey",)


class SandboxState:
    """Mutable run state of one app: the market (fixed), faults (swappable), stats."""

    def __init__(self, config: SandboxConfig, market: Market | None = None) -> None:
        self.config = config
        self.market = market or Market(
            config.seed,
            config.as_of or (new_york_date(to_ns(config.now)) if config.now else None),
            config.unknown_symbol_prefix,
            config.cache_mb * 2**20,
            MarketClock.for_config(config.as_of, config.now),
        )
        self.configured_ns = self.market.clock.pinned_ns  # what DELETE /_sandbox/clock returns to
        self.faults = FaultPlan(config.faults)
        self.stats = Stats()
        self.skews = PriceSkews()  # planted price discrepancies (sandbox.skews)
        self.filing_defects = FilingDefects()  # planted bad filings (sandbox.defects)
        self.late_splits = LateSplits()  # Yahoo late with a same-day split (sandbox.late_splits)
        self.network = VendorNetwork(LatencyConfig())  # latency and the vendors' plan limits (sandbox.latency)

    def set_faults(self, faults: FaultConfig) -> None:
        self.config = replace(self.config, faults=faults)
        self.faults = FaultPlan(faults)

    def set_latency(self, latency: LatencyConfig) -> None:
        self.network = VendorNetwork(latency)


# ---- vendor-specific edges ------------------------------------------------------------------------


def _auth_error(vendor: str, request: Request, config: SandboxConfig, rid: str) -> Response | None:
    """None when the caller is authorized the way the vendor checks it, else the vendor's 401."""
    bad_prefix = config.bad_key_prefix
    if vendor == "polygon":
        key = request.query_params.get("apiKey") or ""
        auth = request.headers.get("authorization", "")
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key:
            return JSONResponse(polygon_wire.error_body(polygon_wire.MESSAGES["no_key"], rid), 401)
        if bad_prefix and key.startswith(bad_prefix):
            return JSONResponse(polygon_wire.error_body(polygon_wire.MESSAGES["bad_key"], rid), 401)
    elif vendor == "alpaca":
        key = request.headers.get("apca-api-key-id", "")
        secret = request.headers.get("apca-api-secret-key", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and not key:
            key = secret = auth[7:].strip()
        if not key or not secret:
            return JSONResponse(alpaca_wire.error_body(401, "request is not authorized"), 401)
        if bad_prefix and (key.startswith(bad_prefix) or secret.startswith(bad_prefix)):
            return JSONResponse(alpaca_wire.error_body(401, "access key verification failed"), 401)
    return None


def _fault_response(vendor: str, decision: FaultDecision, config: FaultConfig, rid: str) -> Response:
    status = decision.status
    headers: dict[str, str] = {}
    if decision.kind == "rate_limit":
        headers["Retry-After"] = str(max(0, round(config.retry_after_seconds)))
        message = "rate limit exceeded"
    elif decision.kind == "killed":
        message = "service unavailable for this symbol"
    else:
        message = "internal server error" if status < 504 else "gateway timeout"
    if vendor == "polygon":
        text = polygon_wire.MESSAGES["rate_limit"] if status == 429 else message
        body: Any = polygon_wire.error_body(text, rid)
    elif vendor == "alpaca":
        body = alpaca_wire.error_body(status, message)
    elif vendor == "yahoo":
        if status == 429:
            return Response("Too Many Requests\r\n", 429, headers=headers, media_type="text/plain")
        body = yahoo_wire.error_body("Internal Server Error", message)
    else:
        body = reddit_wire.error_body(status, "Too Many Requests" if status == 429 else message)
    return JSONResponse(body, status, headers=headers)


def _symbols_of(request: Request) -> list[str]:
    found = [request.path_params.get(k, "") for k in ("ticker", "symbol", "underlying")]
    found += [request.query_params.get("ticker", "")]
    found += (request.query_params.get("symbols") or "").split(",")
    return [canonical_symbol(s) for s in found if s]


def _canonical_request(request: Request) -> str:
    query = sorted((k, v) for k, v in request.query_params.multi_items() if k not in AUTH_QUERY_PARAMS)
    return request.url.path + "?" + "&".join(f"{k}={v}" for k, v in query)


def _apply_data_faults(payload: Payload, decision: FaultDecision, fraction: float) -> dict[str, int]:
    counts = {"records_dropped": 0, "records_duplicated": 0}
    if payload.columns:
        if "missing_bars" in decision.data_faults and payload.columns[0]:
            index = list(range(len(payload.columns[0])))
            drop_records(index, fraction, decision.key)
            keep = set(index)
            counts["records_dropped"] = len(payload.columns[0]) - len(keep)
            for column in payload.columns:
                column[:] = [v for i, v in enumerate(column) if i in keep]
        return counts
    for n, records in enumerate(payload.record_lists):
        if "missing_bars" in decision.data_faults:
            counts["records_dropped"] += drop_records(records, fraction, decision.key + n)
        if "duplicates" in decision.data_faults:
            counts["records_duplicated"] += duplicate_records(records, fraction, decision.key + n)
    return counts


def _vendor_endpoint(state: SandboxState, vendor: str, name: str, handler: Handler) -> Any:
    endpoint_name = f"{vendor}.{name}"

    async def endpoint(request: Request) -> Response:
        with state.market.clock.frozen() as served_ns:
            response = await respond(request)
        # The vendor's clock, as a real server's Date header gives it: a client can tell from it
        # which bars had not closed when they were served (uvicorn's own Date is turned off).
        response.headers["date"] = formatdate(served_ns / NS, usegmt=True)
        return response

    async def respond(request: Request) -> Response:
        state.stats.request(vendor)
        rid = request_id()
        denied = _auth_error(vendor, request, state.config, rid)
        if denied is not None:
            state.stats.outcome(endpoint_name, denied.status_code)
            return denied
        network = state.network
        admitted = network.admit(vendor)
        delay = network.delay_seconds(vendor)
        if delay:
            await asyncio.sleep(delay)
        faults = state.faults.config
        if not admitted:
            state.stats.outcome(endpoint_name, 429, "plan_limit")
            return _fault_response(vendor, FaultDecision("rate_limit", frozenset(), 0), faults, rid)
        decision = state.faults.decide(vendor, _canonical_request(request), _symbols_of(request))
        if decision.kind in ("rate_limit", "server_error", "killed"):
            state.stats.outcome(endpoint_name, decision.status, decision.kind)
            return _fault_response(vendor, decision, faults, rid)
        if decision.kind == "timeout":
            await asyncio.sleep(faults.timeout_seconds)
            state.stats.outcome(endpoint_name, 504, "timeout")
            return _fault_response(vendor, decision, faults, rid)
        if decision.kind == "slow":
            await asyncio.sleep(faults.slow_seconds)
        base_url = f"{request.url.scheme}://{request.url.netloc}"
        ctx = RequestContext(state.market, dict(request.query_params), dict(request.path_params), base_url, rid)
        try:
            payload = await run_in_threadpool(handler, ctx)
        except WireError as exc:
            state.stats.outcome(endpoint_name, exc.status)
            return JSONResponse(exc.body, exc.status, headers=exc.headers)
        state.skews.apply(vendor, payload)
        state.filing_defects.apply(vendor, payload)
        state.late_splits.apply(vendor, payload, state.market)
        served = payload.record_count
        counts = _apply_data_faults(payload, decision, faults.record_fraction)
        malformed = 0
        if decision.kind == "malformed":
            malformed = sum(
                malform_records(r, faults.record_fraction, decision.key + i) for i, r in enumerate(payload.record_lists)
            )
        body = orjson.dumps(payload.body, option=orjson.OPT_SERIALIZE_NUMPY)
        if decision.kind == "truncated":
            state.stats.outcome(endpoint_name, 200, "truncated", records_lost=served)
            return Response(truncate_body(body, decision.key), 200, media_type="application/json")
        state.stats.outcome(
            endpoint_name,
            200,
            decision.kind or (",".join(sorted(decision.data_faults)) or None),
            records_served=served - counts["records_dropped"] - malformed,
            records_malformed=malformed,
            **counts,
        )
        return Response(body, 200, media_type="application/json")

    endpoint.__name__ = endpoint_name.replace(".", "_")
    return endpoint


# ---- control API --------------------------------------------------------------------------------


def _control_routes(state: SandboxState) -> list[Route]:
    async def health(request: Request) -> Response:
        market = state.market
        return JSONResponse(
            {
                "status": "ok",
                "seed": market.seed,
                "as_of": market.as_of.isoformat(),
                "now": market.clock.now().isoformat(),
                "clock_pinned": market.clock.pinned,
                "first_session": str(market.calendar.days[0]),
                "last_session": str(market.calendar.days[market.last_session]),
                "vendors": list(VENDORS),
                "faults_active": state.faults.config.active,
                "cache": market.cache_stats(),
            }
        )

    async def stats(request: Request) -> Response:
        if request.method == "DELETE":
            state.stats.reset()
        return JSONResponse(state.stats.snapshot())

    async def configured(request: Request, parse: Any, apply: Any, current: Any) -> Response:
        """GET shows a swappable config, POST replaces it from a JSON object, DELETE restores the default."""
        if request.method == "POST":
            try:
                data = orjson.loads(await request.body() or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("the body must be a JSON object")
                apply(parse(data))
            except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
        elif request.method == "DELETE":
            apply(parse({}))
        return JSONResponse(current().to_json())

    async def faults(request: Request) -> Response:
        return await configured(request, FaultConfig.from_json, state.set_faults, lambda: state.faults.config)

    async def latency(request: Request) -> Response:
        return await configured(request, LatencyConfig.from_json, state.set_latency, lambda: state.network.config)

    async def clock(request: Request) -> Response:
        market = state.market
        if request.method == "POST":
            try:
                data = orjson.loads(await request.body() or b"{}")
                if not isinstance(data, dict) or set(data) - {"now"}:
                    raise ValueError('the body must be {"now": "2024-06-03T14:11:00-04:00"} (null: the wall clock)')
                instant = to_ns(parse_now(str(data["now"]))) if data.get("now") is not None else None
                if instant is not None and instant > end_of_day_ns(market.as_of):
                    raise ValueError(
                        f"now={data['now']} is after the market's last day {market.as_of}; "
                        "start the sandbox with a later --as-of"
                    )
            except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            market.clock.pin(instant)
        elif request.method == "DELETE":
            market.clock.pin(state.configured_ns)
        return JSONResponse(
            {
                "now": market.clock.now().isoformat(),
                "pinned": market.clock.pinned,
                "as_of": market.as_of.isoformat(),
                "last_session": str(market.calendar.day(market.last_session)),
            }
        )

    async def news_truth(request: Request) -> Response:
        """Which served news items are one story, and each story's and post's polarity (tests, bench)."""
        market = state.market
        query = request.query_params
        raw = [s for s in (query.get("symbols") or "").split(",") if s.strip()]
        symbols = [
            s for s in (sorted({canonical_symbol(s) for s in raw}) if raw else DEFAULT_UNIVERSE) if market.exists(s)
        ]
        subreddits = tuple(s for s in (query.get("subreddits") or "").split(",") if s.strip())
        try:
            high = to_ns(parse_now(query["end"])) if query.get("end") else market.now_ns()
            low = to_ns(parse_now(query["start"])) if query.get("start") else high - 30 * 86_400 * NS
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": f"invalid start or end: {exc}; use ISO 8601 instants"}, 400)
        tables = {sym: market.news(sym) for sym in symbols}
        now = market.now_ns()
        body = await run_in_threadpool(news.news_truth, tables, low, min(high, now), now, subreddits, market.seed)
        return JSONResponse(body)

    return [
        Route("/_sandbox/news/truth", news_truth, methods=["GET"]),
        Route("/_sandbox/clock", clock, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET", "DELETE"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/latency", latency, methods=["GET", "POST", "DELETE"]),
    ]


def create_app(config: SandboxConfig | None = None, market: Market | None = None) -> Starlette:
    """One ASGI app serving every vendor; `market` may be shared between apps (tests) or built here."""
    state = SandboxState(config or SandboxConfig(), market)
    routes: list[BaseRoute] = [
        *_control_routes(state),
        *skew_routes(state.skews),
        *defect_routes(state.filing_defects),
        *late_split_routes(state.late_splits),
    ]
    routes += [
        Route(path, _vendor_endpoint(state, vendor, name, handler), methods=["GET"])
        for vendor, name, path, handler in VENDOR_ROUTES
    ]
    streams = StreamHub(state.market, state.config.bad_key_prefix)
    routes += stream_routes(streams)  # WebSockets: /stocks (Polygon), /v2/{iex,sip,test} and /v1beta1/news (Alpaca)
    app = Starlette(routes=routes)
    app.state.sandbox = state
    app.state.streams = streams
    return app


def parse_as_of(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None
