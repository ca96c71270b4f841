"""The one way code reaches the S3 lake.

Works against any S3 endpoint (the embedded SeaweedFS, MinIO, AWS). Objects go through the minio
client; Parquet datasets read through pyarrow's S3FileSystem (``filesystem()``), which supports
pushdown of partition and column filters. S3 and network errors are translated into
``StorageError`` here, with the key and bucket in the message and never a credential.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from minio import Minio
from minio.error import MinioException, S3Error
from pyarrow import fs as pafs
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from core.errors import StorageError
from core.settings import LakeSettings


@dataclass(frozen=True)
class LakeObject:
    key: str
    size_bytes: int
    last_modified: datetime | None


class Lake:
    """A bucket on an S3 endpoint."""

    def __init__(self, endpoint_url: str, access_key: str, secret_key: str, bucket: str, region: str) -> None:
        parsed = urlparse(endpoint_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StorageError(f"lake endpoint {endpoint_url!r} is not an http(s) URL; set lake.endpoint")
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self._secure = parsed.scheme == "https"
        self._netloc = parsed.netloc
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._client = Minio(
            parsed.netloc, access_key=access_key, secret_key=secret_key, secure=self._secure, region=region
        )

    @classmethod
    def from_settings(cls, settings: LakeSettings) -> Lake:
        if settings.secret_key is None:
            raise StorageError("lake.secret_key is not set; put MARKETPIPE_LAKE__SECRET_KEY in the environment or .env")
        return cls(
            settings.endpoint_url,
            settings.access_key,
            settings.secret_key.get_secret_value(),
            settings.bucket,
            settings.region,
        )

    def __repr__(self) -> str:
        return f"Lake(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"

    # -- objects ---------------------------------------------------------------------------
    def ensure_bucket(self) -> bool:
        """Create the bucket if missing; True when it was created."""
        with self._translate("create bucket"):
            if self._client.bucket_exists(self.bucket):
                return False
            self._client.make_bucket(self.bucket)
            return True

    def bucket_exists(self) -> bool:
        with self._translate("check bucket"):
            return self._client.bucket_exists(self.bucket)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self._translate("write", key):
            self._client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def get_bytes(self, key: str) -> bytes:
        with self._translate("read", key):
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def exists(self, key: str) -> bool:
        try:
            with self._translate("stat", key):
                self._client.stat_object(self.bucket, key)
        except StorageError as exc:
            if isinstance(exc.__cause__, S3Error) and exc.__cause__.code in ("NoSuchKey", "NoSuchObject"):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> Iterator[LakeObject]:
        with self._translate("list", prefix):
            for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield LakeObject(obj.object_name or "", obj.size or 0, obj.last_modified)

    def delete(self, key: str) -> None:
        with self._translate("delete", key):
            self._client.remove_object(self.bucket, key)

    # -- Parquet ---------------------------------------------------------------------------
    def write_parquet(self, key: str, table: pa.Table, compression: str = "snappy") -> int:
        """Write one Parquet object; returns its size in bytes."""
        sink = io.BytesIO()
        pq.write_table(table, sink, compression=compression)
        data = sink.getvalue()
        self.put_bytes(key, data, content_type="application/vnd.apache.parquet")
        return len(data)

    def read_parquet(self, key: str) -> pa.Table:
        """The object's rows; an object that is not Parquet, truncated or corrupt (a page that does
        not decompress is an OSError from Arrow, not an ArrowInvalid) is a :class:`StorageError`."""
        data = self.get_bytes(key)
        try:
            return pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            raise StorageError(
                f"lake object s3://{self.bucket}/{key} is not valid Parquet ({type(exc).__name__}: {exc})"
            ) from exc

    def read_parquet_columns(
        self,
        key: str,
        columns: Sequence[str],
        rows: pads.Expression | None = None,
        schema: pa.Schema | None = None,
    ) -> pa.Table:
        """``columns`` of the object's ``rows`` (a filter, also tested against each row group's
        statistics) by ranged reads of its footer and those column chunks only, not the whole
        object as :meth:`read_parquet` downloads it. ``schema``: the dataset's columns (one added
        after the object was written reads as null). Any failure, the S3 store's or the object's,
        is a :class:`StorageError` naming the object."""
        try:
            dataset = pads.dataset(
                f"{self.bucket}/{key}", schema=schema, filesystem=self.filesystem(), format="parquet"
            )
            return dataset.to_table(columns=list(columns), filter=rows)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(
                f"cannot read columns {', '.join(columns)} of lake object s3://{self.bucket}/{key} "
                f"({type(exc).__name__}: {exc}); is the S3 store running (`marketpipe status`)?"
            ) from exc

    def filesystem(self) -> pafs.S3FileSystem:
        """pyarrow filesystem over the same endpoint, for datasets; paths are ``bucket/key``."""
        return pafs.S3FileSystem(
            access_key=self._access_key,
            secret_key=self._secret_key,
            endpoint_override=self._netloc,
            scheme="https" if self._secure else "http",
            region=self._region,
        )

    # -- errors ----------------------------------------------------------------------------
    def _translate(self, action: str, key: str = "") -> _Translate:
        return _Translate(f"{action} s3://{self.bucket}/{key}", self.endpoint_url)


class _Translate:
    """Context manager turning S3/network failures into StorageError at this seam."""

    def __init__(self, what: str, endpoint_url: str) -> None:
        self.what, self.endpoint_url = what, endpoint_url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, S3Error):
            hint = {
                "InvalidAccessKeyId": "check lake.access_key and MARKETPIPE_LAKE__SECRET_KEY",
                "SignatureDoesNotMatch": "check MARKETPIPE_LAKE__SECRET_KEY",
                "NoSuchBucket": "run `marketpipe up` (creates it) or set lake.bucket",
            }.get(exc.code or "", "")
            raise StorageError(
                f"lake refused to {self.what}: {exc.code} {exc.message or ''}".strip() + (f"; {hint}" if hint else "")
            ) from exc
        if isinstance(exc, MinioException | Urllib3HTTPError | OSError):
            raise StorageError(
                f"cannot {self.what}: lake endpoint {self.endpoint_url} unreachable ({type(exc).__name__}); "
                "is the S3 store running (`marketpipe status`)?"
            ) from exc
        return False
