"""Starlette routes of the streams: the vendors' WebSocket paths and the `/_sandbox/streams` control API."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from sandbox.streams import alpaca, news
from sandbox.streams.connection import ABRUPT, AlpacaConnection, AlpacaNewsConnection, PolygonConnection
from sandbox.streams.hub import StreamHub
from sandbox.streams.settings import parse_overrides


async def _json_body(request: Request) -> dict[str, Any]:
    data = orjson.loads(await request.body() or b"{}")
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _bad(exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, 400)


def _close_code(value: Any) -> int:
    if value is None or str(value).lower() == "abrupt":
        return ABRUPT
    return int(parse_overrides({"disconnect_code": value})["disconnect_code"])


def stream_routes(hub: StreamHub) -> list[BaseRoute]:
    async def polygon_stream(ws: WebSocket) -> None:
        await PolygonConnection(hub, ws, ws.url.path).run()

    async def alpaca_stream(ws: WebSocket) -> None:
        await AlpacaConnection(hub, ws, ws.url.path).run()

    async def alpaca_news_stream(ws: WebSocket) -> None:
        await AlpacaNewsConnection(hub, ws, ws.url.path).run()

    async def overview(request: Request) -> Response:
        if request.method == "DELETE":
            hub.reset()
        return JSONResponse(hub.snapshot())

    async def defaults(request: Request) -> Response:
        if request.method == "POST":
            try:
                hub.defaults = parse_overrides(await _json_body(request))
            except (ValueError, orjson.JSONDecodeError) as exc:
                return _bad(exc)
        else:
            hub.defaults = {}
        return JSONResponse(hub.snapshot()["defaults"])

    async def key_settings(request: Request) -> Response:
        key = request.path_params["key"]
        if request.method == "POST":
            try:
                hub.keys[key] = parse_overrides(await _json_body(request))
            except (ValueError, orjson.JSONDecodeError) as exc:
                return _bad(exc)
            return JSONResponse(hub.snapshot()["keys"][key])
        hub.keys.pop(key, None)
        return JSONResponse({})

    async def clock(request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "POST":
            try:
                hub.start_clock(name, await _json_body(request))
            except (ValueError, orjson.JSONDecodeError) as exc:
                return _bad(exc)
        elif request.method == "DELETE":
            hub.clocks.pop(name, None)
            return JSONResponse({})
        found = hub.clocks.get(name)
        if found is None:
            return JSONResponse({"error": f"no clock named {name!r}"}, 404)
        return JSONResponse(hub.clock_json(found, time.monotonic()))

    async def disconnect(request: Request) -> Response:
        try:
            body = await _json_body(request)
            code = _close_code(body.get("code"))
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _bad(exc)
        return JSONResponse({"disconnected": hub.disconnect(body.get("vendor"), body.get("key"), code)})

    async def slots(request: Request) -> Response:
        return JSONResponse({"reaped": hub.reap()})

    routes: list[BaseRoute] = [WebSocketRoute("/stocks", polygon_stream)]
    routes += [WebSocketRoute(f"/v2/{feed}", alpaca_stream) for feed in alpaca.FEEDS]
    routes.append(WebSocketRoute(news.PATH, alpaca_news_stream))
    routes += [
        Route("/_sandbox/streams", overview, methods=["GET", "DELETE"]),
        Route("/_sandbox/streams/defaults", defaults, methods=["POST", "DELETE"]),
        Route("/_sandbox/streams/keys/{key}", key_settings, methods=["POST", "DELETE"]),
        Route("/_sandbox/streams/clocks/{name}", clock, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/streams/disconnect", disconnect, methods=["POST"]),
        Route("/_sandbox/streams/slots", slots, methods=["DELETE"]),
    ]
    return routes
