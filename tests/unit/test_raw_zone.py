"""Raw-zone keys and envelopes are pure and deterministic."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest

from core.errors import StorageError
from storage.raw import RawPage, decode_envelope, encode_envelope, raw_key

REQUEST = {"url": "/v2/aggs/ticker/AAPL/range/1/minute/2024-01-02/2024-01-02", "params": {"apiKey": "***"}}


def test_key_is_partitioned_and_stable() -> None:
    key = raw_key("polygon", "bars_1min", "AAPL", date(2024, 1, 2), REQUEST)
    assert key.startswith("raw/source=polygon/dataset=bars_1min/symbol=AAPL/date=2024-01-02/")
    assert key.endswith(".json.gz")
    assert key == raw_key("polygon", "bars_1min", "AAPL", date(2024, 1, 2), dict(reversed(list(REQUEST.items()))))
    other = raw_key("polygon", "bars_1min", "AAPL", date(2024, 1, 2), {**REQUEST, "params": {"cursor": "x"}})
    assert other != key


def test_envelope_round_trip_and_determinism() -> None:
    page = RawPage("k", "polygon", "bars_1min", "AAPL", REQUEST, datetime(2024, 1, 2, tzinfo=UTC), {"results": [1]})
    data = encode_envelope(page)
    assert data == encode_envelope(page)  # same bytes every time
    assert decode_envelope("k", data) == page


@pytest.mark.parametrize(
    "data",
    [
        b"not gzip",
        b"not gzip data at all, longer than a gzip header",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffxxxxxxxx",
    ],
    ids=["short", "no-magic", "corrupt-deflate"],
)
def test_garbage_object_is_a_storage_error(data: bytes) -> None:
    with pytest.raises(StorageError, match="not a marketpipe raw envelope"):
        decode_envelope("raw/x.json.gz", data)


def test_a_truncated_envelope_is_a_storage_error() -> None:
    page = RawPage("k", "polygon", "bars_1min", "AAPL", REQUEST, datetime(2024, 1, 2, tzinfo=UTC), {"results": [1]})
    with pytest.raises(StorageError, match="not a marketpipe raw envelope"):
        decode_envelope("k", encode_envelope(page)[:-5])


def test_checksum_ignores_the_vendors_request_id_but_not_data() -> None:
    from storage.raw import payload_checksum

    a = payload_checksum({"request_id": "a1", "results": [{"c": 1.0}]})
    assert a == payload_checksum({"request_id": "b2", "results": [{"c": 1.0}]})
    assert a != payload_checksum({"request_id": "a1", "results": [{"c": 1.5}]})


def body_of(payload: dict) -> bytes:
    import orjson

    return orjson.dumps(payload)


def test_an_envelope_with_the_vendors_body_reads_back_as_the_parsed_payload() -> None:
    payload = {"ticker": "AAPL", "results": [{"o": 1.5, "t": 1704205800000}], "request_id": "r1", "status": "OK"}
    body = b' {"ticker": "AAPL", "results": [{"o": 1.50, "t": 1704205800000}],\n "request_id": "r1", "status": "OK"}\n'
    page = RawPage("k", "polygon", "bars_1min", "AAPL", REQUEST, datetime(2024, 1, 2, tzinfo=UTC), payload)
    data = encode_envelope(page, body)
    assert data == encode_envelope(page, body)
    assert decode_envelope("k", data) == page == decode_envelope("k", encode_envelope(page))


def test_an_envelope_written_by_zlibs_gzip_still_reads() -> None:
    import gzip

    import orjson

    envelope = {"source": "polygon", "dataset": "bars_1min", "symbol": "AAPL", "request": REQUEST}
    data = gzip.compress(orjson.dumps({**envelope, "fetched_at": "2024-01-02T00:00:00+00:00", "payload": [1]}))
    assert decode_envelope("k", data).payload == [1]


def test_the_body_checksum_ignores_the_vendors_request_id_but_not_data() -> None:
    from storage.raw import body_checksum

    first = {"results": [{"c": 1.0}], "request_id": "a1", "status": "OK"}
    again = {**first, "request_id": "b2"}
    changed = {**first, "results": [{"c": 1.5}]}
    a = body_checksum(body_of(first), first)
    assert a == body_checksum(body_of(again), again)
    assert a != body_checksum(body_of(changed), changed)
    no_id = {"results": [{"c": 1.0}]}
    assert body_checksum(body_of(no_id), no_id) != body_checksum(body_of(changed), changed)


def test_a_body_that_writes_its_request_id_otherwise_takes_the_payloads_checksum() -> None:
    from storage.raw import body_checksum, payload_checksum

    payload = {"results": [{"c": 1.0}], "request_id": "a1"}
    spaced = b'{"results": [{"c": 1.0}], "request_id": "a1"}'
    assert body_checksum(spaced, payload) == payload_checksum(payload)
    twice = b'{"results":[{"c":1.0}],"request_id":"a1","echo":{"request_id":"a1"}}'
    assert body_checksum(twice, orjson.loads(twice)) == payload_checksum(orjson.loads(twice))


def test_a_page_read_into_columns_is_digested_with_its_records() -> None:
    """An indented bars page (its request_id not written compactly) read by the columnar path: the
    payload it carries has no records, so the digest must come from the body's own payload; two
    pages differing only in a close digested alike before, and processing then refused the stored
    page for good (its object never matched the checksum)."""
    from sources.polygon.parsing import read_aggregates_body
    from storage.raw import body_checksum, decode_envelope_of, payload_checksum

    def page(close: float) -> bytes:
        bars = [{"t": 1700000000000, "o": 1.5, "h": 2.0, "l": 1.0, "c": close, "v": 100, "vw": 1.6, "n": 3}]
        body = {"ticker": "AAPL", "results": bars, "status": "OK", "request_id": "abc"}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2)

    first, corrected = page(1.75), page(1.25)
    read = read_aggregates_body(first, timeframe="1day", symbol="AAPL")
    again = read_aggregates_body(corrected, timeframe="1day", symbol="AAPL")
    assert read is not None and again is not None and "results" not in read[0]
    digest = body_checksum(first, read[0])
    assert digest != body_checksum(corrected, again[0])
    assert digest == payload_checksum(orjson.loads(first))
    stored = encode_envelope(
        RawPage("k", "polygon", "bars", "AAPL", REQUEST, datetime(2024, 1, 2, tzinfo=UTC), read[0]), first
    )
    assert decode_envelope_of("k", stored, digest) is not None


def test_a_nested_request_id_is_never_the_one_left_out() -> None:
    """The top-level id written with a space and a compact copy nested somewhere: two bodies whose
    data differ only in where the nested copy sits must not digest alike (the nested one would be
    the one removed), and such a body takes the payload's checksum."""
    import orjson

    from storage.raw import body_checksum, payload_checksum

    first = b'{"request_id": "r", "a":{"request_id":"r"}, "b":{}}'
    moved = b'{"request_id": "r", "a":{}, "b":{"request_id":"r"}}'
    a, b = orjson.loads(first), orjson.loads(moved)
    assert body_checksum(first, a) != body_checksum(moved, b)
    assert body_checksum(first, a) == payload_checksum(a)
    inside_a_key = b'{"x\\"request_id":"r","request_id":"r"}'
    assert body_checksum(inside_a_key, orjson.loads(inside_a_key)) == payload_checksum(orjson.loads(inside_a_key))


def test_an_empty_body_is_stored_as_a_payload_of_none_and_reads_back() -> None:
    page = RawPage("k", "plugin", "bars_1min", "AAPL", REQUEST, datetime(2024, 1, 2, tzinfo=UTC), None)
    assert decode_envelope("k", encode_envelope(page, b"")) == page


class ObjectStore:
    """The one call of a Lake that store_raw_page makes, kept in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = data


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        ({"results": [{"c": 1.0}], "request_id": "a1", "status": "OK"}, None),
        ({"results": [{"c": 1.0}], "request_id": "a1"}, b'{"results":[{"c":1.0}],"request_id":"a1"}'),
        ({"results": [{"c": 1.0}], "request_id": "a1"}, b' {"results": [{"c": 1.00}], "request_id": "a1"}\n'),
        (None, b""),
    ],
    ids=["no-body", "compact-body", "spaced-body", "empty-body"],
)
def test_a_raw_object_is_read_only_with_the_checksum_of_the_data_it_holds(payload, body) -> None:
    from storage.raw import StoredPage, decode_envelope_of, store_raw_page

    lake = ObjectStore()

    def store(payload: object, body: bytes | None = None) -> StoredPage:
        at = datetime(2024, 1, 2, tzinfo=UTC)
        day = date(2024, 1, 2)
        return store_raw_page(
            lake,
            source="polygon",
            dataset="bars",
            symbol="AAPL",
            data_date=day,
            request=REQUEST,
            payload=payload,
            fetched_at=at,
            body=body,
        )

    other = store({"results": [{"c": 2.0}]})  # another collection's data of the same key
    stored = store(payload, body)

    page = decode_envelope_of(stored.key, lake.objects[stored.key], stored.checksum)

    assert page is not None and page.payload == payload
    assert decode_envelope_of(stored.key, lake.objects[stored.key], other.checksum) is None
