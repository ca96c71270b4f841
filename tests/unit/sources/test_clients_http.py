"""The clients over the HTTP seam, with httpx.MockTransport standing in for the vendor."""

import asyncio
import json
import logging
import random

import httpx
import pytest

from core.errors import PermanentSourceError, RetryableSourceError
from sources.alpaca import AlpacaClient
from sources.http import Request, VendorHttp, install_httpx_log_redaction, redact_url
from sources.polygon import PolygonClient
from sources.reddit import RedditClient
from sources.resilience import Resilience, RetryPolicy
from tests.support.payloads import alpaca_bar, polygon_agg, polygon_aggs, reddit_listing, reddit_post

KEY = "SEKRET-KEY-123"


class Vendor:
    """Records requests; answers from a handler."""

    def __init__(self, handler):
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request, len(self.requests))


def sleeps():
    calls: list[float] = []

    async def sleep(seconds: float) -> None:
        calls.append(seconds)

    sleep.calls = calls  # type: ignore[attr-defined]
    return sleep


def http(source, vendor, *, retries=3, headers=None, auth_params=None, sleep=None):
    client = httpx.AsyncClient(base_url="http://vendor.test", transport=httpx.MockTransport(vendor), headers=headers)
    resilience = Resilience(
        source, policy=RetryPolicy(retry_attempts=retries), sleep=sleep or sleeps(), rng=random.Random(0)
    )
    return VendorHttp(source, client, resilience, auth_params=auth_params)


def polygon(vendor, **kwargs):
    return PolygonClient(http("polygon", vendor, auth_params={"apiKey": KEY}, **kwargs))


def run(coro):
    return asyncio.run(coro)


def test_aggregates_follow_next_url_on_the_configured_host_with_the_key_appended():
    def handler(request, n):
        if n == 1:
            return httpx.Response(
                200,
                json=polygon_aggs(
                    [polygon_agg(t=1672722000000)],
                    next_url="https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/x?cursor=abc",
                ),
            )
        return httpx.Response(200, json=polygon_aggs([polygon_agg(t=1672808400000)]))

    vendor = Vendor(handler)
    bars = run(polygon(vendor).aggregates("AAPL", "2023-01-01", "2023-01-31"))
    assert len(bars) == 2 and bars["ts"].is_monotonic_increasing
    first, second = vendor.requests
    assert first.url.path == "/v2/aggs/ticker/AAPL/range/1/day/2023-01-01/2023-01-31"
    assert first.url.params["limit"] == "50000" and first.url.params["apiKey"] == KEY
    assert second.url.host == "vendor.test"  # never the host named in next_url
    assert second.url.params["cursor"] == "abc" and second.url.params["apiKey"] == KEY


def test_ticks_use_v3_cursor_pagination():
    def handler(request, n):
        result = {"sip_timestamp": 1672756200000000000 + n, "price": 1.0, "size": 1, "exchange": 4}
        body = {"results": [result], "status": "OK"}
        if n < 3:
            body["next_url"] = f"http://elsewhere/v3/trades/AAPL?cursor=c{n}"
        return httpx.Response(200, json=body)

    vendor = Vendor(handler)
    trades = run(polygon(vendor).trades("AAPL", "2023-01-03T14:30:00Z", "2023-01-03T15:00:00Z"))
    assert len(trades) == 3 and [r.url.params.get("cursor") for r in vendor.requests] == [None, "c1", "c2"]


def test_server_errors_and_timeouts_are_retried():
    def handler(request, n):
        if n == 1:
            return httpx.Response(503, text="busy")
        if n == 2:
            raise httpx.ReadTimeout("slow", request=request)
        if n == 3:
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(200, json=polygon_aggs([polygon_agg()]))

    vendor = Vendor(handler)
    assert len(run(polygon(vendor).aggregates("AAPL", "2023-01-01", "2023-01-31"))) == 1
    assert len(vendor.requests) == 4


def test_429_honours_retry_after():
    def handler(request, n):
        if n == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"status": "ERROR"})
        return httpx.Response(200, json=polygon_aggs([polygon_agg()]))

    sleep = sleeps()
    run(polygon(Vendor(handler), sleep=sleep).aggregates("AAPL", "2023-01-01", "2023-01-31"))
    assert sleep.calls and sleep.calls[0] >= 7


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_fail_at_once_without_leaking_the_key(status):
    echo = {"status": "ERROR", "error": f"bad key {KEY}", "request_id": "r"}
    vendor = Vendor(lambda request, n: httpx.Response(status, json=echo))
    with pytest.raises(PermanentSourceError) as raised:
        run(polygon(vendor).aggregates("AAPL", "2023-01-01", "2023-01-31"))
    assert len(vendor.requests) == 1
    assert f"HTTP {status}" in str(raised.value)
    assert KEY not in str(raised.value) and KEY not in repr(raised.value.request)
    assert raised.value.request.params.get("apiKey") is None


def test_truncated_json_is_a_permanent_error_carrying_the_page_and_its_body():
    body = '{"ticker":"AAPL","results":[{"v":1'
    vendor = Vendor(lambda request, n: httpx.Response(200, text=body))
    with pytest.raises(PermanentSourceError, match="malformed JSON") as raised:
        run(polygon(vendor).aggregates("AAPL", "2023-01-01", "2023-01-31"))
    assert raised.value.payload_text == body
    assert raised.value.request.dataset == "bars" and raised.value.request.context["symbol"] == "AAPL"
    assert len(vendor.requests) == 1


def test_wrongly_typed_records_are_a_permanent_error_naming_the_page():
    vendor = Vendor(lambda request, n: httpx.Response(200, json=polygon_aggs([polygon_agg(v="lots")])))
    with pytest.raises(PermanentSourceError, match="malformed") as raised:
        run(polygon(vendor).aggregates("AAPL", "2023-01-01", "2023-01-31"))
    assert "/v2/aggs/ticker/AAPL" in str(raised.value) and raised.value.payload_text


def test_retries_exhausted_surface_a_retryable_error_with_the_request():
    vendor = Vendor(lambda request, n: httpx.Response(502, text="bad gateway"))
    with pytest.raises(RetryableSourceError) as raised:
        run(polygon(vendor, retries=2).aggregates("AAPL", "2023-01-01", "2023-01-31"))
    assert len(vendor.requests) == 3 and raised.value.request.url.startswith("/v2/aggs")


def test_a_cursor_that_repeats_is_refused_instead_of_looping():
    body = polygon_aggs([polygon_agg()], next_url="http://x/v2/aggs/ticker/AAPL/range/1/day/a/b?cursor=same")
    vendor = Vendor(lambda request, n: httpx.Response(200, json=body))
    with pytest.raises(PermanentSourceError, match="loops"):
        run(polygon(vendor).aggregates("AAPL", "2023-01-01", "2023-01-31"))


def test_a_stored_request_resumes_pagination():
    vendor = Vendor(lambda request, n: httpx.Response(200, json=polygon_aggs([polygon_agg()])))
    stored = Request(
        "polygon",
        "bars",
        "/v2/aggs/ticker/AAPL/range/1/day/a/b",
        {"cursor": "c9"},
        {"symbol": "AAPL", "timeframe": "1day"},
    )
    restored = Request.from_redacted("polygon", "bars", stored.redacted())

    async def pages():
        return [page async for page in polygon(vendor).iter_pages(restored)]

    (page,) = run(pages())
    assert page.frame["symbol"].tolist() == ["AAPL"]
    assert vendor.requests[0].url.params["cursor"] == "c9" and vendor.requests[0].url.params["apiKey"] == KEY


def test_alpaca_pages_with_next_page_token_and_sends_key_headers():
    def handler(request, n):
        token = "tok2" if n == 1 else None
        bars = {"AAPL": [alpaca_bar(t=f"2023-01-0{2 + n}T05:00:00Z")], "MSFT": [alpaca_bar()]}
        return httpx.Response(200, json={"bars": bars, "next_page_token": token})

    vendor = Vendor(handler)
    headers = {"APCA-API-KEY-ID": "id-1", "APCA-API-SECRET-KEY": KEY}
    client = AlpacaClient(http("alpaca", vendor, headers=headers), feed="iex")
    bars = run(client.bars(["AAPL", "BRK-B"], "2023-01-01", "2023-01-31", adjustment="split", limit=50_000))
    assert len(bars) == 4
    first, second = vendor.requests
    assert first.url.path == "/v2/stocks/bars"
    assert first.url.params["symbols"] == "AAPL,BRK.B" and first.url.params["limit"] == "10000"
    assert (first.url.params["adjustment"], first.url.params["feed"], first.url.params["timeframe"]) == (
        "split",
        "iex",
        "1Day",
    )
    assert "page_token" not in first.url.params and second.url.params["page_token"] == "tok2"
    assert first.headers["APCA-API-SECRET-KEY"] == KEY


def test_alpaca_rejects_an_unknown_adjustment_before_sending():
    vendor = Vendor(lambda request, n: httpx.Response(200, json={}))
    with pytest.raises(PermanentSourceError, match="adjustment"):
        run(AlpacaClient(http("alpaca", vendor)).bars("AAPL", "2023-01-01", "2023-01-31", adjustment="weird"))
    assert vendor.requests == []


def test_reddit_follows_after_until_the_start_is_reached():
    def handler(request, n):
        created = 2000.0 - n * 100  # newest first, older on each page
        return httpx.Response(200, json=reddit_listing([reddit_post(f"p{n}", created)], after=f"t3_p{n}"))

    vendor = Vendor(handler)
    posts = run(RedditClient(http("reddit", vendor)).posts("r/stocks", start=1750.0))
    assert [r.url.params.get("after") for r in vendor.requests] == [None, "t3_p1", "t3_p2"]
    assert posts["id"].tolist() == ["p1", "p2"]  # p3 (created 1700) is before the start


def test_redact_url_hides_credentials_only():
    url = "http://h/v2/aggs?cursor=abc&apiKey=SECRET&token=T"
    redacted = redact_url(url)
    assert "SECRET" not in redacted and "=T" not in redacted and "cursor=abc" in redacted


def test_httpx_request_log_lines_are_redacted(caplog):
    install_httpx_log_redaction()
    logger = logging.getLogger("httpx")
    with caplog.at_level(logging.INFO, logger="httpx"):
        logger.info('HTTP Request: %s %s "%s"', "GET", httpx.URL(f"http://h/x?apiKey={KEY}"), "HTTP/1.1 200 OK")
    assert caplog.records and KEY not in caplog.text and "apiKey=" in caplog.text


def test_client_reprs_hold_no_secret():
    vendor = Vendor(lambda request, n: httpx.Response(200, json={}))
    assert KEY not in repr(polygon(vendor))
    assert KEY not in json.dumps(Request("polygon", "bars", f"/x?apiKey={KEY}", {"apiKey": KEY}).redacted())
