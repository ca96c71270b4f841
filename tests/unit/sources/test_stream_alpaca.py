"""Alpaca's stream frames -> micro-batches (pure: no socket)."""

import orjson
import pandas as pd
import pytest

from core import model
from sources.alpaca import parse_bars, parse_quotes, parse_trades
from sources.alpaca.stream import auth_message, control_events, parse_frames, subscription_messages
from sources.stream import CANCELS, CORRECTIONS

T0 = "2024-06-03T13:30:00.123456789Z"


def trade(**overrides):
    return {"T": "t", "S": "AAPL", "i": 52983525029461, "x": "V", "p": 190.5, "s": 100, "c": ["@", "I"], "z": "C",
            "t": T0, **overrides}  # fmt: skip


def quote(**overrides):
    return {"T": "q", "S": "AAPL", "bx": "V", "bp": 190.4, "bs": 2, "ax": "Q", "ap": 190.6, "as": 3, "c": ["R"],
            "z": "C", "t": T0, **overrides}  # fmt: skip


def bar(kind="b", **overrides):
    return {"T": kind, "S": "AAPL", "o": 190.0, "h": 191.0, "l": 189.5, "c": 190.5, "v": 1200, "n": 12, "vw": 190.2,
            "t": "2024-06-03T13:30:00Z", **overrides}  # fmt: skip


def correction(**overrides):
    return {"T": "c", "S": "AAPL", "x": "V", "oi": 11, "op": 190.5, "os": 100, "oc": ["@"], "ci": 12, "cp": 190.7,
            "cs": 90, "cc": ["@", "I"], "z": "C", "t": "2024-06-03T13:30:01.5Z", **overrides}  # fmt: skip


def cancel(**overrides):
    return {"T": "x", "S": "AAPL", "i": 11, "x": "V", "p": 190.5, "s": 100, "a": "C", "z": "C",
            "t": "2024-06-03T13:30:01Z", **overrides}  # fmt: skip


def parse(*groups, received=None):
    encoded = [orjson.dumps(list(group)) for group in groups]
    return parse_frames(encoded, received or list(range(1, len(encoded) + 1)))


def rest_row(message, keys):
    return {k: message[k] for k in keys if k in message}


def test_a_streamed_trade_is_the_rest_trade_of_the_same_print():
    streamed = trade()
    rest = parse_trades({"trades": {"AAPL": [rest_row(streamed, ("t", "x", "p", "s", "c", "i", "z"))]}})
    pd.testing.assert_frame_equal(parse([streamed]).trades, rest)
    assert parse([streamed]).trades["ts"].iloc[0].value % 1000 == 789  # nanoseconds kept


def test_a_streamed_quote_is_the_rest_quote():
    streamed = quote()
    rest = parse_quotes({"quotes": {"AAPL": [rest_row(streamed, ("t", "bx", "bp", "bs", "ax", "ap", "as", "c", "z"))]}})
    pd.testing.assert_frame_equal(parse([streamed]).quotes, rest)


def test_minute_bars_are_rest_minute_bars_and_an_updated_bar_supersedes_its_minute():
    first, updated, next_minute = bar(), bar("u", c=190.6, v=1300, n=13), bar(t="2024-06-03T13:31:00Z")
    keys = ("t", "o", "h", "l", "c", "v", "n", "vw")
    rest = parse_bars({"bars": {"AAPL": [rest_row(updated, keys), rest_row(next_minute, keys)]}}, timeframe="1Min")
    batch = parse([first, next_minute], [updated])
    pd.testing.assert_frame_equal(batch.bars.sort_values("ts", ignore_index=True), rest)


def test_corrections_name_the_original_and_the_corrected_print():
    batch = parse([correction()])
    assert list(batch.corrections.columns) == list(CORRECTIONS)
    row = batch.corrections.iloc[0].to_dict()
    assert row == {
        "symbol": "AAPL",
        "ts": pd.Timestamp("2024-06-03T13:30:01.5Z"),
        "exchange": "V",
        "original_trade_id": "11",
        "original_price": 190.5,
        "original_size": 100,
        "original_conditions": "@",
        "corrected_trade_id": "12",
        "corrected_price": 190.7,
        "corrected_size": 90,
        "corrected_conditions": "@,I",
        "tape": "C",
        "source": "alpaca",
    }
    assert batch.corrections["original_trade_id"].dtype == model.STR


def test_a_correction_without_a_corrected_id_keeps_the_original_id_null():
    assert parse([correction(ci=None)]).corrections["corrected_trade_id"].isna().tolist() == [True]


def test_cancels_name_the_print_they_void():
    batch = parse([cancel(), cancel(i=12, a="E")])
    assert list(batch.cancels.columns) == list(CANCELS)
    assert batch.cancels[["trade_id", "action", "exchange"]].values.tolist() == [["11", "C", "V"], ["12", "E", "V"]]


def test_a_batch_mixes_every_type_and_keeps_trade_receive_times():
    batch = parse([trade(i=1), quote(), bar()], [correction(), trade(i=2), cancel()], received=[10, 20])
    assert (len(batch.trades), len(batch.quotes), len(batch.bars), len(batch.corrections), len(batch.cancels)) == (
        2,
        1,
        1,
        1,
        1,
    )
    assert batch.received_ns.tolist() == [10, 20]
    assert batch.rows == 6


def test_duplicates_and_out_of_order_trades_pass_through():
    late, early = trade(i=2, t="2024-06-03T13:30:05Z"), trade(i=1, t="2024-06-03T13:30:00Z")
    assert parse([late, early, late]).trades["trade_id"].tolist() == ["2", "1", "2"]


def test_times_with_an_offset_are_converted_to_utc():
    batch = parse([trade(t="2024-06-03T09:30:00.5-04:00")])
    assert batch.trades["ts"].iloc[0] == pd.Timestamp("2024-06-03T13:30:00.5Z")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (trade(t="yesterday"), "malformed trade"),
        (trade(t=1717421400), "malformed trade"),
        ({"T": "t", "S": "AAPL", "t": T0, "s": 1}, "lacks ['p']"),
        (trade(S=None), "lacks ['S']"),
        (quote(bp="x"), "malformed quote"),
        (correction(oi=None), "lacks ['oi']"),
        (cancel(i=None), "lacks ['i']"),
        ({"T": "?"}, "unknown message type '?'"),
        (42, "not an object"),
    ],
)
def test_a_malformed_message_is_dead_alone(bad, reason):
    batch = parse([trade(i=1), bad, trade(i=2)])
    assert batch.trades["trade_id"].tolist() == ["1", "2"]
    assert len(batch.dead) == 1 and reason in batch.dead[0].reason
    assert orjson.loads(batch.dead[0].raw) == bad


@pytest.mark.parametrize(
    ("bad", "missing"),
    [
        ({k: v for k, v in trade().items() if k != "i"}, "trade_id"),
        (trade(x=None), "exchange"),
        ({k: v for k, v in quote().items() if k != "ax"}, "ask_exchange"),
    ],
)
def test_a_message_without_a_key_field_is_dead_alone_so_the_rest_of_the_batch_can_be_stored(bad, missing):
    batch = parse([trade(i=1), quote(), bad, trade(i=2)])
    assert batch.trades["trade_id"].tolist() == ["1", "2"] and len(batch.quotes) == 1
    assert len(batch.dead) == 1 and f"no {missing}, part of a " in batch.dead[0].reason
    assert orjson.loads(batch.dead[0].raw) == bad


def test_a_cut_frame_is_dead_with_its_bytes():
    batch = parse_frames([orjson.dumps([trade()]), b'[{"T":"t","S":"AA'], [1, 2])
    assert len(batch.trades) == 1 and batch.dead[0].raw == b'[{"T":"t","S":"AA'


def test_control_messages_are_events_and_unmodelled_types_are_ignored():
    batch = parse(
        [
            {"T": "subscription", "trades": ["AAPL"], "quotes": [], "bars": []},
            {"T": "d", "S": "AAPL"},
            {"T": "error", "code": 407, "msg": "slow client"},
        ]
    )
    assert [e.kind for e in batch.events] == ["subscribed", "slow_consumer"]
    assert batch.events[1].code == 407 and batch.ignored == 1 and not batch.dead


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ({"T": "success", "msg": "connected"}, "connected"),
        ({"T": "success", "msg": "authenticated"}, "authenticated"),
        ({"T": "error", "code": 402, "msg": "auth failed"}, "auth_failed"),
        ({"T": "error", "code": 406, "msg": "connection limit exceeded"}, "connection_limit"),
        ({"T": "error", "code": 400, "msg": "invalid syntax"}, "error"),
        ({"T": "error", "code": 405, "msg": "symbol limit exceeded"}, "plan_limit"),
        ({"T": "error", "code": 409, "msg": "insufficient subscription"}, "plan_limit"),
    ],
)
def test_control_events_classify_the_vendors_codes(message, kind):
    (event,) = control_events(orjson.dumps([message]), 1)
    assert event.kind == kind and message["msg"] in event.message


def test_auth_and_subscription_messages():
    assert orjson.loads(auth_message("K", "S")) == {"action": "auth", "key": "K", "secret": "S"}
    (message,) = subscription_messages("subscribe", ["trades", "bars"], ["AAPL"])
    assert orjson.loads(message) == {
        "action": "subscribe",
        "trades": ["AAPL"],
        "bars": ["AAPL"],
        "updatedBars": ["AAPL"],
    }


@pytest.mark.parametrize(("code", "advice"), [(405, "stream fewer symbols"), (409, "stream the iex feed")])
def test_what_the_plan_refuses_says_its_code_and_what_to_do(code, advice):
    (event,) = control_events(orjson.dumps([{"T": "error", "code": code, "msg": "m"}]), 1)
    assert event.code == code and f"(code {code})" in event.message and advice in event.message
