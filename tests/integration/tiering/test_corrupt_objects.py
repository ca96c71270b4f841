"""An object that reads back corrupt stops tiering with the chunk and the object named; nothing moves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from core.settings import Settings
from storage.hot import upsert_bars
from storage.lake import Lake
from storage.tiering import TieringError, manifest_files, tier_chunks
from tests.support.tiering import make_bars

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # every zstd-compressed Parquet page starts a zstd frame with it


class LakeThatCorruptsReads(Lake):
    """The session's S3 store, but every object reads back with its first zstd frame's magic number
    damaged: a page that does not decompress (Arrow raises OSError, not ArrowInvalid)."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.lake.secret_key
        assert secret is not None
        super().__init__(
            settings.lake.endpoint_url,
            settings.lake.access_key,
            secret.get_secret_value(),
            settings.lake.bucket,
            settings.lake.region,
        )

    def get_bytes(self, key: str) -> bytes:
        data = bytearray(super().get_bytes(key))
        at = data.find(ZSTD_MAGIC)
        assert at >= 0, "no zstd frame: the object was not written with zstd"
        data[at] ^= 0xFF
        return bytes(data)


def test_a_corrupt_read_back_is_a_tiering_error_naming_chunk_and_object(
    stack: Settings, conn: psycopg.Connection, symbols: Callable[[], str]
) -> None:
    names = [symbols()]
    upsert_bars(conn, make_bars(names, "1979-09-03", 1, "1min", 10))
    zstd = stack.model_copy(
        update={
            "storage": stack.storage.model_copy(
                update={"data_lake": stack.storage.data_lake.model_copy(update={"compression": "zstd"})}
            )
        }
    )
    since, until = datetime(1979, 9, 3, tzinfo=UTC), datetime(1979, 9, 4, tzinfo=UTC)

    with pytest.raises(TieringError) as stopped:
        tier_chunks(
            conn, LakeThatCorruptsReads(zstd), zstd, dataset="bars_intraday", older_than=until, newer_than=since
        )

    message = str(stopped.value)
    assert "tiering stopped at chunk _hyper_" in message and "that chunk is still hot" in message
    assert "cold/bars/timeframe=1min/date=1979-09-03/hyper_" in message and "is not valid Parquet" in message
    assert "ZSTD decompression failed" in message
    assert conn.execute("SELECT count(*) FROM market.bars WHERE symbol = ANY(%s)", (names,)).fetchone()[0] == 10
    assert manifest_files(conn, dataset="bars_intraday", start=since, end=until, symbols=names) == []
