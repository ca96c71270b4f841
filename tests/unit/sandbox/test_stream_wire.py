"""Stream wire rendering per vendor: REST values, Alpaca JSON/msgpack times, client actions, subscriptions."""

from __future__ import annotations

from datetime import date

import msgpack  # type: ignore[import-untyped]
import numpy as np
import orjson
import pytest

from sandbox.market import Market
from sandbox.streams import alpaca, polygon
from sandbox.streams.protocol import Subscriptions
from sandbox.streams.timeline import TickFaults, symbol_day
from sandbox.wire import alpaca as alpaca_wire
from sandbox.wire import polygon as polygon_wire

AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(42, as_of=AS_OF)


def session_of(market: Market, day: str) -> int:
    return market.calendar.index_on_or_before(date.fromisoformat(day))


def test_polygon_events_carry_the_rest_values(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    day = symbol_day(market, "AAPL", s, TickFaults())
    rows = np.arange(5)
    events = polygon.render(day, "trades", rows)
    rest = polygon_wire.trade_results(market.trades("AAPL", s).take(rows), day.tape, s)
    for event, record in zip(events, rest, strict=True):
        assert (event["i"], event["p"], event["s"], event["x"], event["q"]) == (
            record["id"],
            record["price"],
            record["size"],
            record["exchange"],
            record["sequence_number"],
        )
        assert event["t"] == record["sip_timestamp"] // 1_000_000 and event["z"] == record["tape"]
    bar = polygon.render(day, "bars", np.array([0]))[0]
    rest_bar = polygon_wire.agg_results(market.minute_bars("AAPL", s).take(slice(0, 1)))[0]
    assert {k: bar[k] for k in ("o", "h", "l", "c", "v", "vw", "n")} == {
        k: rest_bar[k] for k in ("o", "h", "l", "c", "v", "vw", "n")
    }
    assert (bar["s"], bar["e"]) == (rest_bar["t"], rest_bar["t"] + 60_000)


def test_alpaca_json_and_msgpack_carry_the_rest_values_and_times(market: Market) -> None:
    s = session_of(market, "2024-06-03")
    day = symbol_day(market, "AAPL", s, TickFaults())
    rows = np.arange(3)
    rest = alpaca_wire.trade_records(market.trades("AAPL", s).take(rows), day.tape)
    as_json = orjson.loads(alpaca.encode_json(alpaca.render(day, "trades", rows)))
    assert [{k: m[k] for k in rest[0]} for m in as_json] == rest
    assert as_json[0]["t"].endswith("Z") and len(as_json[0]["t"].split(".")[1]) == 10  # 9 digits + Z
    as_msgpack = msgpack.unpackb(alpaca.encode_msgpack(alpaca.render(day, "trades", rows, "msgpack")))
    assert as_msgpack[0]["t"].to_unix_nano() == int(market.trades("AAPL", s).t_ns[0])
    bar = orjson.loads(alpaca.encode_json(alpaca.render(day, "bars", np.array([0]))))[0]
    assert bar == {"T": "b", "S": "AAPL", **alpaca_wire.bar_records(market.minute_bars("AAPL", s).take(slice(0, 1)))[0]}


def test_client_actions_are_parsed_per_vendor() -> None:
    sub = polygon.parse_client(b'{"action":"subscribe","params":"T.AAPL,AM.*"}')
    assert sub.kind == "subscribe" and sub.topics == {"trades": ["AAPL"], "bars": ["*"]}
    assert polygon.parse_client('{"action":"subscribe","params":"X.AAPL"}').kind == "error"
    assert polygon.parse_client("not json").kind == "error"
    auth = alpaca.parse_client(msgpack.packb({"action": "auth", "key": "k", "secret": "s"}))
    assert (auth.kind, auth.key, auth.secret) == ("auth", "k", "s")
    assert alpaca.parse_client('{"action":"subscribe","trades":"AAPL"}').kind == "error"


def test_subscriptions_expand_wildcards_over_the_universe() -> None:
    subs = Subscriptions()
    subs.add({"trades": ["*", "ZZZA"], "quotes": ["MSFT"]})
    assert subs.pairs(["AAPL", "MSFT"]) == [
        ("MSFT", "quotes"),
        ("AAPL", "trades"),
        ("MSFT", "trades"),
        ("ZZZA", "trades"),
    ]
    subs.remove({"trades": ["*"]})
    assert subs.pairs(["AAPL"]) == [("MSFT", "quotes")]
