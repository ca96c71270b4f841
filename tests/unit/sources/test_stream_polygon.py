"""Polygon's stream frames -> micro-batches (pure: no socket)."""

import orjson
import pandas as pd
import pytest

from core import model
from sources.polygon import parse_aggregates, parse_quotes, parse_trades
from sources.polygon.stream import (
    align_to_stream,
    auth_message,
    control_events,
    parse_frames,
    subscription_messages,
)
from sources.stream import CANCELS, CORRECTIONS
from storage.quotes import check_quote_keys
from storage.trades import check_trade_keys

T0_MS = 1_717_421_400_123  # 2024-06-03 13:30:00.123 UTC


def trade(**overrides):
    return {"ev": "T", "sym": "AAPL", "i": "2024-06-0300000001", "x": 4, "p": 190.5, "s": 100, "t": T0_MS, "q": 1,
            "z": 3, **overrides}  # fmt: skip


def quote(**overrides):
    return {"ev": "Q", "sym": "AAPL", "bx": 4, "bp": 190.4, "bs": 2, "ax": 7, "ap": 190.6, "as": 3, "t": T0_MS, "q": 2,
            "z": 3, **overrides}  # fmt: skip


def minute(**overrides):
    return {"ev": "AM", "sym": "AAPL", "v": 1200, "av": 50_000, "op": 189.0, "vw": 190.2, "o": 190.0, "c": 190.5,
            "h": 191.0, "l": 189.5, "a": 190.1, "z": 100, "n": 12, "s": 1_717_421_400_000, "e": 1_717_421_460_000,
            **overrides}  # fmt: skip


def frames(*groups):
    return [orjson.dumps(list(group)) for group in groups]


def parse(*groups, received=None):
    encoded = frames(*groups)
    return parse_frames(encoded, received or list(range(1, len(encoded) + 1)))


def test_a_streamed_trade_is_the_rest_trade_of_the_same_print_at_the_streams_resolution():
    rest_ns = T0_MS * 1_000_000 + 456_789  # REST carries the SIP time in ns, the stream in ms
    rest = parse_trades(
        {"results": [{"sip_timestamp": rest_ns, "price": 190.5, "size": 100, "exchange": 4, "id": "2024-06-0300000001",
                      "tape": 3, "conditions": [12, 37], "sequence_number": 1}]},
        symbol="AAPL",
    )  # fmt: skip
    streamed = parse([trade(c=[12, 37])]).trades
    pd.testing.assert_frame_equal(streamed, align_to_stream(rest))
    assert streamed["ts"].iloc[0] == pd.Timestamp("2024-06-03T13:30:00.123Z")


def test_trades_without_conditions_match_rest_trades_without_them():
    rest = parse_trades(
        {"results": [{"sip_timestamp": T0_MS * 1_000_000, "price": 190.5, "size": 100, "exchange": 4,
                      "id": "2024-06-0300000001", "tape": 3}]},
        symbol="AAPL",
    )  # fmt: skip
    pd.testing.assert_frame_equal(parse([trade()]).trades, rest)


def test_a_streamed_quote_is_the_rest_quote():
    rest = parse_quotes(
        {"results": [{"sip_timestamp": T0_MS * 1_000_000, "bid_price": 190.4, "bid_size": 2, "bid_exchange": 4,
                      "ask_price": 190.6, "ask_size": 3, "ask_exchange": 7, "tape": 3}]},
        symbol="AAPL",
    )  # fmt: skip
    pd.testing.assert_frame_equal(parse([quote()]).quotes, rest)


def test_a_minute_aggregate_is_the_rest_minute_bar():
    rest = parse_aggregates(
        {"ticker": "AAPL", "results": [{"t": 1_717_421_400_000, "o": 190.0, "h": 191.0, "l": 189.5, "c": 190.5,
                                        "v": 1200, "vw": 190.2, "n": 12}]},
        timeframe="1min",
    )  # fmt: skip
    pd.testing.assert_frame_equal(parse([minute()]).bars, rest)


def test_a_repeated_minute_aggregate_is_one_bar_of_the_batch_so_the_upsert_takes_it_in_one_statement():
    batch = parse([minute(), minute(s=1_717_421_460_000)], [minute(c=190.9)])
    assert batch.bars[["ts", "close"]].values.tolist() == [
        [pd.Timestamp("2024-06-03T13:31:00Z"), 190.5],
        [pd.Timestamp("2024-06-03T13:30:00Z"), 190.9],
    ]


def test_symbols_are_normalized_and_every_frame_has_its_schema():
    batch = parse([trade(sym="brk.b"), trade(sym="BRK/B")])
    assert batch.trades["symbol"].tolist() == ["BRK.B", "BRK.B"]
    assert list(batch.quotes.columns) == list(model.QUOTES)
    assert list(batch.corrections.columns) == list(CORRECTIONS)
    assert list(batch.cancels.columns) == list(CANCELS)
    assert batch.source == "polygon"


def test_each_trade_row_carries_the_receive_time_of_its_frame():
    batch = parse([trade(q=1), quote()], [trade(q=2), trade(q=3)], received=[111, 222])
    assert batch.received_ns.tolist() == [111, 222, 222]
    assert batch.received_ns.dtype == "int64"


def test_duplicates_and_out_of_order_messages_pass_through_as_sent():
    late, early = trade(i="b", t=T0_MS + 5), trade(i="a", t=T0_MS)
    batch = parse([late, early, late])
    assert batch.trades["trade_id"].tolist() == ["b", "a", "b"]
    assert batch.trades["ts"].is_monotonic_increasing is False


def test_a_frame_that_is_not_json_is_dead_with_its_raw_bytes_and_the_rest_is_parsed():
    good = orjson.dumps([trade()])
    batch = parse_frames([good, b'[{"ev":"T","sym":"AA'], [1, 2])
    assert len(batch.trades) == 1
    assert [(d.raw, d.received_ns) for d in batch.dead] == [(b'[{"ev":"T","sym":"AA', 2)]
    assert "not JSON" in batch.dead[0].reason


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"ev": "T", "sym": "AAPL", "t": T0_MS, "s": 1}, "lacks ['p']"),
        ({"ev": "T", "sym": "AAPL", "t": T0_MS, "p": None, "s": 1}, "lacks ['p']"),
        ({"ev": "T", "sym": 7, "t": T0_MS, "p": 1.0, "s": 1}, "'sym' is int"),
        ({"ev": "T", "sym": "AAPL", "t": "soon", "p": 1.0, "s": 1}, "malformed trade"),
        ({"ev": "ZZ", "sym": "AAPL"}, "unknown event type 'ZZ'"),
        (["not", "an", "object"], "not an object"),
    ],
)
def test_a_malformed_message_is_dead_alone(bad, reason):
    batch = parse([trade(i="1"), bad, trade(i="2")])
    assert batch.trades["trade_id"].tolist() == ["1", "2"]
    assert len(batch.dead) == 1 and reason in batch.dead[0].reason
    assert orjson.loads(batch.dead[0].raw) == bad


@pytest.mark.parametrize(
    ("bad", "missing"),
    [
        (trade(i=None), "trade_id"),
        ({k: v for k, v in trade().items() if k != "i"}, "trade_id"),
        ({k: v for k, v in trade().items() if k != "x"}, "exchange"),
        ({k: v for k, v in quote().items() if k != "bx"}, "bid_exchange"),
        (quote(ax=None), "ask_exchange"),
    ],
)
def test_a_message_without_a_key_field_is_dead_alone_so_the_rest_of_the_batch_can_be_stored(bad, missing):
    batch = parse([trade(i="1"), quote(), bad, trade(i="2"), quote(bp=190.3)])
    assert batch.trades["trade_id"].tolist() == ["1", "2"]
    assert len(batch.quotes) == 2
    assert batch.received_ns.tolist() == [1, 1]
    assert len(batch.dead) == 1 and f"no {missing}, part of a " in batch.dead[0].reason
    assert orjson.loads(batch.dead[0].raw) == bad
    check_trade_keys(batch.trades)
    check_quote_keys(batch.quotes)


def test_status_messages_are_control_events_and_second_aggregates_are_ignored():
    batch = parse(
        [{"ev": "status", "status": "success", "message": "subscribed to: T.AAPL"}, {"ev": "A", "sym": "AAPL"}, trade()]
    )
    assert [(e.kind, e.message) for e in batch.events] == [("subscribed", "subscribed to: T.AAPL")]
    assert batch.ignored == 1 and len(batch.trades) == 1 and not batch.dead


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("connected", "connected"),
        ("auth_success", "authenticated"),
        ("auth_failed", "auth_failed"),
        ("max_connections", "connection_limit"),
        ("slow_consumer", "slow_consumer"),
        ("error", "error"),
    ],
)
def test_control_events_classify_the_vendors_statuses(status, kind):
    frame = orjson.dumps([{"ev": "status", "status": status, "message": "m"}])
    assert [e.kind for e in control_events(frame, 5)] == [kind]


def test_control_events_of_a_broken_frame_are_none():
    assert control_events(b"[{", 1) == []


def test_auth_and_subscription_messages():
    assert orjson.loads(auth_message("KEY")) == {"action": "auth", "params": "KEY"}
    (message,) = subscription_messages("subscribe", ["trades", "bars"], ["AAPL", "BRK.B"])
    assert orjson.loads(message) == {"action": "subscribe", "params": "T.AAPL,T.BRK.B,AM.AAPL,AM.BRK.B"}
    (message,) = subscription_messages("unsubscribe", ["quotes"], ["*"])
    assert orjson.loads(message) == {"action": "unsubscribe", "params": "Q.*"}


def test_no_frames_make_an_empty_batch_of_every_schema():
    batch = parse_frames([], [])
    assert batch.rows == 0 and batch.trades.dtypes.to_dict() == model.empty_frame(model.TRADES).dtypes.to_dict()


def test_rows_stamped_past_their_receive_time_plus_the_allowed_skew_are_dead_with_the_reason():
    from sources.polygon.stream import PROTOCOL

    received = T0_MS * 1_000_000 + 50_000_000  # the frames were read 50 ms after the first print
    hour = 3_600_000
    good = [trade(i="1"), trade(i="2", t=T0_MS + 4_000), quote(), minute()]  # 4 s ahead: within 5 s
    ahead = [trade(i="3", t=T0_MS + hour), quote(t=T0_MS + hour), minute(s=T0_MS + hour)]
    encoded = frames(good, ahead)

    batch = PROTOCOL.bounded(5.0).parse_frames(encoded, [received, received + 1])

    assert batch.trades["trade_id"].tolist() == ["1", "2"]
    assert batch.received_ns.tolist() == [received, received]  # still one per trade row
    assert (len(batch.quotes), len(batch.bars), batch.future, len(batch.dead)) == (1, 1, 3, 3)
    assert all(letter.reason.startswith("bad timestamp: ") for letter in batch.dead)
    assert "trade of AAPL stamped 2024-06-03T14:30:00.123000+00:00, 3599.950 s after it was received" in (
        batch.dead[0].reason
    )
    assert "streaming.max_event_skew_seconds allows 5 s" in batch.dead[0].reason
    assert orjson.loads(batch.dead[0].raw)["trade_id"] == "3"  # the row as parsed, nothing lost
    assert [orjson.loads(letter.raw)["kind"] for letter in batch.dead] == ["trade", "quote", "minute bar"]
    assert len(PROTOCOL.parse_frames(encoded, [received, received + 1]).trades) == 3  # unbounded: unchecked


def test_a_batch_mostly_stamped_in_the_future_is_one_dead_letter_holding_every_row_counted_exactly():
    """A host clock behind the vendor's refuses every row: one letter per batch, not one per row."""
    from sources.polygon.stream import PROTOCOL
    from sources.stream_parsing import FUTURE_LETTERS_PER_BATCH

    received = T0_MS * 1_000_000 - 60_000_000_000  # read a minute "before" they happened
    n = FUTURE_LETTERS_PER_BATCH + 15
    ahead = [trade(i=str(k), t=T0_MS + k) for k in range(n)] + [quote(), minute()]
    batch = PROTOCOL.bounded(5.0).parse_frames(frames(ahead), [received])

    assert (len(batch.trades), len(batch.quotes), len(batch.bars)) == (0, 0, 0)
    assert (batch.future, len(batch.dead)) == (n + 2, 1)
    (letter,) = batch.dead
    kept = orjson.loads(letter.raw)
    assert kept["count"] == n + 2 and len(kept["rows"]) == n + 2  # nothing lost
    assert sorted(r["trade_id"] for r in kept["rows"] if r["kind"] == "trade") == sorted(str(k) for k in range(n))
    assert kept["max_event_skew_seconds"] == 5.0 and kept["received_from"] == kept["received_to"]
    assert letter.reason.startswith(f"bad timestamps: {n + 2} rows of one micro-batch ({n} trade(s), 1 quote(s), ")
    assert "stamped 2024-06-03T13:30:00" in letter.reason and "allows 5 s" in letter.reason
    assert "NTP" in letter.reason
