"""The official SDKs' stream clients connect to the sandbox and receive the REST market's trades.

massive builds `ws://{feed}/stocks` and cannot carry a query string, so its replay is set per key
on the control API; alpaca-py takes a full `url_override`, query included, and speaks msgpack.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from alpaca.data.live import NewsDataStream, StockDataStream
from alpaca.data.models.news import News
from massive import WebSocketClient  # type: ignore[import-untyped]
from massive.websocket.models import EquityAgg, EquityTrade  # type: ignore[import-untyped]

WANTED = 50


def rest_polygon_trades(base: str, symbol: str) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"timestamp": "2024-06-03", "order": "asc", "limit": WANTED, "apiKey": "k"}
    return httpx.get(f"{base}/v3/trades/{symbol}", params=query, timeout=30).json()["results"]


def test_massive_websocket_client_receives_the_rest_trades(sandbox_url: str) -> None:
    key = f"m{uuid.uuid4().hex[:12]}"
    configured = httpx.post(f"{sandbox_url}/_sandbox/streams/keys/{key}", json={"speed": 0, "session": "2024-06-03"})
    assert configured.status_code == 200
    host = sandbox_url.removeprefix("http://")
    client = WebSocketClient(
        api_key=key, feed=host, secure=False, subscriptions=["T.AAPL", "AM.AAPL"], max_reconnects=0
    )
    assert client.url == f"ws://{host}/stocks"
    trades: list[EquityTrade] = []
    aggs: list[EquityAgg] = []
    enough = asyncio.Event()

    async def handle(messages: list[Any]) -> None:
        trades.extend(m for m in messages if isinstance(m, EquityTrade))
        aggs.extend(m for m in messages if isinstance(m, EquityAgg))
        if len(trades) >= WANTED and aggs:
            enough.set()

    async def scenario() -> None:
        task = asyncio.create_task(client.connect(handle))
        try:
            await asyncio.wait_for(enough.wait(), 30)
        finally:
            await client.close()
            await asyncio.wait_for(task, 10)

    asyncio.run(asyncio.wait_for(scenario(), 60))
    httpx.delete(f"{sandbox_url}/_sandbox/streams/keys/{key}")
    rest = rest_polygon_trades(sandbox_url, "AAPL")
    assert [(t.id, t.price, t.size, t.exchange, t.timestamp) for t in trades[:WANTED]] == [
        (r["id"], r["price"], r["size"], r["exchange"], r["sip_timestamp"] // 1_000_000) for r in rest
    ]
    assert aggs[0].symbol == "AAPL" and aggs[0].end_timestamp - aggs[0].start_timestamp == 60_000


def test_alpaca_stock_data_stream_receives_the_rest_trades_over_msgpack(sandbox_url: str) -> None:
    url = sandbox_url.replace("http://", "ws://") + "/v2/iex?speed=0&session=2024-06-03"
    stream = StockDataStream(f"a{uuid.uuid4().hex[:12]}", "secret", url_override=url)
    trades: list[Any] = []
    bars: list[Any] = []
    enough = asyncio.Event()

    async def on_trade(trade: Any) -> None:
        trades.append(trade)
        if len(trades) >= WANTED and bars:
            enough.set()

    async def on_bar(bar: Any) -> None:
        bars.append(bar)

    stream.subscribe_trades(on_trade, "AAPL")
    stream.subscribe_bars(on_bar, "AAPL")

    async def scenario() -> None:
        task = asyncio.create_task(stream._run_forever())
        try:
            await asyncio.wait_for(enough.wait(), 30)
        finally:
            await stream.stop_ws()
            await asyncio.wait_for(task, 15)

    asyncio.run(asyncio.wait_for(scenario(), 60))
    headers: dict[str, Any] = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
    query: dict[str, Any] = {"start": "2024-06-03", "end": "2024-06-03", "limit": WANTED}
    rest = httpx.get(f"{sandbox_url}/v2/stocks/AAPL/trades", params=query, headers=headers, timeout=30).json()
    expected = [(r["i"], r["p"], r["s"], r["x"]) for r in rest["trades"]]
    assert [(t.id, t.price, t.size, t.exchange) for t in trades[:WANTED]] == expected
    assert trades[0].timestamp.isoformat().startswith("2024-06-03T13:30:00")
    assert bars[0].symbol == "AAPL" and bars[0].timestamp.isoformat() == "2024-06-03T13:30:00+00:00"


def test_alpaca_news_data_stream_receives_the_rest_news(sandbox_url: str) -> None:
    """alpaca-py's NewsDataStream (msgpack, `created_at` as a msgpack Timestamp) parses the sandbox's
    `n` messages into News models: the REST articles of the day, then each update again."""
    headers: dict[str, Any] = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
    query: dict[str, Any] = {"start": "2024-06-03T04:00:00Z", "end": "2024-06-04T03:59:59Z", "limit": 50}
    rest = httpx.get(f"{sandbox_url}/v1beta1/news", params=query, headers=headers, timeout=30).json()["news"]
    assert rest and len(rest) < 50
    expected = len(rest) + sum(1 for r in rest if r["updated_at"] != r["created_at"])
    url = sandbox_url.replace("http://", "ws://") + "/v1beta1/news?speed=0&session=2024-06-03&from=00:00"
    stream = NewsDataStream(f"a{uuid.uuid4().hex[:12]}", "secret", url_override=url)
    received: list[News] = []
    enough = asyncio.Event()

    async def on_news(item: News | dict[Any, Any]) -> None:
        assert isinstance(item, News)
        received.append(item)
        if len(received) >= expected:
            enough.set()

    stream.subscribe_news(on_news, "*")

    async def scenario() -> None:
        task = asyncio.create_task(stream._run_forever())
        try:
            await asyncio.wait_for(enough.wait(), 30)
        finally:
            await stream.stop_ws()
            await asyncio.wait_for(task, 15)

    asyncio.run(asyncio.wait_for(scenario(), 60))
    latest = {n.id: n for n in received}
    assert len(received) == expected
    assert sorted(latest) == sorted(r["id"] for r in rest)
    for record in rest:
        news = latest[record["id"]]
        assert (news.headline, news.symbols, news.url, news.source) == (
            record["headline"],
            record["symbols"],
            record["url"],
            "benzinga",
        )
        assert news.updated_at.isoformat().replace("+00:00", "Z") == record["updated_at"]
