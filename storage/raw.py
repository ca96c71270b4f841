"""The raw zone: every vendor payload lands in the lake as received, before parsing.

With the raw zone any run can be replayed without the vendor (a parser fix, a lost database):
``iter_raw_pages`` yields the stored payloads with the request that fetched them, and the same
pure parsers turn them into frames again. Objects are gzip-compressed JSON envelopes keyed by
source, dataset, symbol, the date of the data and a digest of the request (redacted, so no
credential is ever part of a key or an object):

    raw/source=polygon/dataset=bars_1min/symbol=AAPL/date=2024-01-02/<sha256[:16]>.json.gz

Writing the same page twice writes the same key: the raw zone is idempotent like the hot store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

import orjson
from isal import igzip
from isal.igzip_lib import IsalError as _IsalError

from core.errors import StorageError
from storage.lake import Lake

RAW_PREFIX = "raw"
# Level 1 of ISA-L's gzip (isal.igzip: the same gzip format, any gzip reader reads it): a
# 7,400-bar Polygon page (644 kB of JSON) compresses in 0.7 ms to 118 kB; zlib's level 1 took
# 2.6 ms for 132 kB, its level 6 ~5x that for ~25 % less. The raw zone is an archive on object
# storage, the compression is on every page's hot path.
GZIP_LEVEL = 1
IsalError = cast(type[Exception], _IsalError)  # a corrupt deflate stream (isal's stub types it as an instance)


@dataclass(frozen=True)
class StoredPage:
    key: str
    checksum: str  # digest of the page's data, less its volatile members (see store_raw_page)
    size_bytes: int


@dataclass(frozen=True)
class RawPage:
    key: str
    source: str
    dataset: str
    symbol: str
    request: dict[str, Any]
    fetched_at: datetime
    payload: Any


def _canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys: equal values give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


def request_digest(request: dict[str, Any]) -> str:
    """Stable digest of a redacted request (url, params, context)."""
    return hashlib.sha256(_canonical(request)).hexdigest()[:16]


def raw_key(source: str, dataset: str, symbol: str, data_date: date, request: dict[str, Any]) -> str:
    safe_symbol = symbol.replace("/", "_") or "_all"
    return (
        f"{RAW_PREFIX}/source={source}/dataset={dataset}/symbol={safe_symbol}/"
        f"date={data_date.isoformat()}/{request_digest(request)}.json.gz"
    )


def encode_envelope(page: RawPage, body: bytes | None = None) -> bytes:
    """The gzip-compressed JSON envelope of a page. ``body``, the payload's JSON as the vendor
    sent it (it parsed), is spliced in as the payload instead of serializing the parsed payload
    again (~1 ms for a 7,400-bar page); it reads back as the same payload."""
    head = {
        "source": page.source,
        "dataset": page.dataset,
        "symbol": page.symbol,
        "request": page.request,
        "fetched_at": page.fetched_at.isoformat(),
    }
    if not body:  # no body, or an empty one (a payload of None): the payload serialized
        envelope = orjson.dumps({**head, "payload": page.payload}, default=str)
    else:
        envelope = orjson.dumps(head, default=str)[:-1] + b',"payload":' + body + b"}"
    # mtime=0: no timestamp in the gzip header (the envelope's fetched_at says when)
    return igzip.compress(envelope, compresslevel=GZIP_LEVEL, mtime=0)


def decode_envelope(key: str, data: bytes) -> RawPage:
    return _decode(key, data)[0]


def decode_envelope_of(key: str, data: bytes, checksum: str) -> RawPage | None:
    """The page of raw-zone object ``data`` if it holds the data ``checksum`` is of, as
    :func:`store_raw_page` computed it (:func:`body_checksum` of the body spliced into the envelope,
    or :func:`payload_checksum`), else None. Two collections of one key whose lake writes and row
    updates cross leave the row with one's checksum and the object with the other's data."""
    page, envelope, text = _decode(key, data)
    head = orjson.dumps({name: envelope[name] for name in _HEAD})[:-1] + b',"payload":'
    body = text[len(head) : -1] if text.startswith(head) and text.endswith(b"}") else None
    if body is not None and body_checksum(body, page.payload) == checksum:
        return page
    if page.payload is None and body_checksum(b"", None) == checksum:  # an empty body, written as null
        return page
    return page if payload_checksum(page.payload) == checksum else None


_HEAD = ("source", "dataset", "symbol", "request", "fetched_at")  # the envelope's members before its payload


def _decode(key: str, data: bytes) -> tuple[RawPage, dict[str, Any], bytes]:
    """The page, the envelope it was read from and the envelope's JSON."""
    try:
        text = igzip.decompress(data)
        envelope = orjson.loads(text)
        page = RawPage(
            key=key,
            source=envelope["source"],
            dataset=envelope["dataset"],
            symbol=envelope["symbol"],
            request=envelope["request"],
            fetched_at=datetime.fromisoformat(envelope["fetched_at"]),
            payload=envelope["payload"],
        )
    except (OSError, EOFError, IsalError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise StorageError(f"raw-zone object {key} is not a marketpipe raw envelope: {exc}") from exc
    return page, envelope, text


def store_raw_page(
    lake: Lake,
    *,
    source: str,
    dataset: str,
    symbol: str,
    data_date: date,
    request: dict[str, Any],
    payload: Any,
    fetched_at: datetime | None = None,
    body: bytes | None = None,
) -> StoredPage:
    """Write one payload as received. ``request`` must already be redacted. ``body`` is the
    response the payload was parsed from, when there is one (see :func:`encode_envelope` and
    :func:`body_checksum`: neither serializes the payload again).

    The checksum is over the page's data alone (not the envelope's ``fetched_at``, nor the
    vendor's per-response ``request_id``): two fetches of unchanged data give the same one.
    """
    key = raw_key(source, dataset, symbol, data_date, request)
    page = RawPage(key, source, dataset, symbol, request, fetched_at or datetime.now(UTC), payload)
    data = encode_envelope(page, body)
    lake.put_bytes(key, data, content_type="application/gzip")
    checksum = payload_checksum(payload) if body is None else body_checksum(body, payload)
    return StoredPage(key, checksum, len(data))


# Top-level fields that differ between two fetches of the same data (Polygon's request_id).
VOLATILE_KEYS = frozenset({"request_id"})


def payload_checksum(payload: Any) -> str:
    """Digest of the data in a payload: equal for two fetches of unchanged data."""
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(_canonical(payload)).hexdigest()


def body_checksum(body: bytes, payload: Any) -> str:
    """:func:`payload_checksum`'s meaning (equal for two fetches of unchanged data) from the body
    the payload was parsed from: a digest of its bytes less its volatile members, found as
    compact JSON writes them (~0.3 ms for a 7,400-bar page, against ~2.5 ms to serialize the
    payload again with sorted keys). A body whose volatile member's name appears more than once
    (nested objects with one too, or the name inside another key), or whose member is not
    written compactly, takes :func:`payload_checksum`: the one occurrence removed is then the
    top-level member. The digest follows the body's bytes: the same data written with another
    key order or spacing counts as changed (processed again, nothing lost), and so does a page
    stored before by the other digest, once.

    That fallback digests the payload decoded from ``body`` itself, not ``payload``: a page read
    straight into columns (:func:`sources.http.paginate`'s ``read_body``) carries a payload without
    its records, whose digest would not change with the data."""
    whole = body
    if isinstance(payload, dict):
        for name in sorted(VOLATILE_KEYS & payload.keys()):
            quoted = orjson.dumps(name)
            member = quoted + b":" + orjson.dumps(payload[name], default=str)
            at = body.find(member)
            if at < 0 or body.count(quoted) != 1:
                return payload_checksum(orjson.loads(whole))
            body = body[:at] + body[at + len(member) :]
    return hashlib.sha256(body).hexdigest()


def iter_raw_pages(
    lake: Lake, *, source: str, dataset: str, symbol: str | None = None, data_date: date | None = None
) -> Iterator[RawPage]:
    """Stored payloads, narrowed by the key's partitions, in key order."""
    prefix = f"{RAW_PREFIX}/source={source}/dataset={dataset}/"
    if symbol is not None:
        prefix += f"symbol={symbol.replace('/', '_')}/"
        if data_date is not None:
            prefix += f"date={data_date.isoformat()}/"
    for obj in sorted(lake.list(prefix), key=lambda o: o.key):
        yield decode_envelope(obj.key, lake.get_bytes(obj.key))
