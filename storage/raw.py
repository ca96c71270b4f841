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

import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson

from core.errors import StorageError
from storage.lake import Lake

RAW_PREFIX = "raw"
# Level 1: a 7,800-bar Polygon page (734 kB of JSON) compresses in 5 ms to 208 kB; level 6 takes
# 24 ms for 152 kB (level 9 ~8x more again for ~6 % less). The raw zone is an archive on object
# storage, the compression is on every page's hot path: 37 % more bytes for a fifth of the CPU.
GZIP_LEVEL = 1


@dataclass(frozen=True)
class StoredPage:
    key: str
    checksum: str  # sha256 of the payload (see store_raw_page)
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


def encode_envelope(page: RawPage) -> bytes:
    envelope = {
        "source": page.source,
        "dataset": page.dataset,
        "symbol": page.symbol,
        "request": page.request,
        "fetched_at": page.fetched_at.isoformat(),
        "payload": page.payload,
    }
    # mtime=0: the same page always compresses to the same bytes
    return gzip.compress(orjson.dumps(envelope, default=str), compresslevel=GZIP_LEVEL, mtime=0)


def decode_envelope(key: str, data: bytes) -> RawPage:
    try:
        envelope = orjson.loads(gzip.decompress(data))
        return RawPage(
            key=key,
            source=envelope["source"],
            dataset=envelope["dataset"],
            symbol=envelope["symbol"],
            request=envelope["request"],
            fetched_at=datetime.fromisoformat(envelope["fetched_at"]),
            payload=envelope["payload"],
        )
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise StorageError(f"raw-zone object {key} is not a marketpipe raw envelope: {exc}") from exc


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
) -> StoredPage:
    """Write one payload as received. ``request`` must already be redacted.

    The envelope's ``fetched_at`` is not part of the checksum's meaning: two fetches of the same
    body differ only there, so the checksum is taken over the payload alone.
    """
    key = raw_key(source, dataset, symbol, data_date, request)
    page = RawPage(key, source, dataset, symbol, request, fetched_at or datetime.now(UTC), payload)
    data = encode_envelope(page)
    lake.put_bytes(key, data, content_type="application/gzip")
    return StoredPage(key, payload_checksum(payload), len(data))


# Top-level fields that differ between two fetches of the same data (Polygon's request_id).
VOLATILE_KEYS = frozenset({"request_id"})


def payload_checksum(payload: Any) -> str:
    """Digest of the data in a payload: equal for two fetches of unchanged data."""
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(_canonical(payload)).hexdigest()


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
