"""Raw-zone keys and envelopes are pure and deterministic."""

from __future__ import annotations

from datetime import UTC, date, datetime

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


def test_garbage_object_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="not a marketpipe raw envelope"):
        decode_envelope("raw/x.json.gz", b"not gzip")


def test_checksum_ignores_the_vendors_request_id_but_not_data() -> None:
    from storage.raw import payload_checksum

    a = payload_checksum({"request_id": "a1", "results": [{"c": 1.0}]})
    assert a == payload_checksum({"request_id": "b2", "results": [{"c": 1.0}]})
    assert a != payload_checksum({"request_id": "a1", "results": [{"c": 1.5}]})
