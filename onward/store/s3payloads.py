"""Large payloads in S3: the SDK's ``S3StorageDriver`` for ``ONWARD_PAYLOADS=s3://bucket/prefix``.

The SDK's driver names objects by content (``v0/ns/.../d/sha256/<digest>``);
this module gives it an aioboto3 client that puts every key under the URL's
prefix, and talks to ``AWS_ENDPOINT_URL`` when set (MinIO, a local S3).
Credentials and region come from the standard AWS environment and files,
read by aioboto3, never from run input.

aioboto3 is the optional extra ``onward[s3]``; it is imported only when an
``s3://`` location is configured.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient

from onward.errors import SettingsError

if TYPE_CHECKING:
    import aioboto3

__all__ = ["PrefixedS3Client", "s3_driver"]


class PrefixedS3Client(S3StorageDriverClient):
    """An aioboto3 S3 client for the SDK's driver, with every key under ``prefix``.

    A client is opened per operation: the data converter is shared by
    processes' event loops (tests run several), and an aiobotocore client is
    bound to the loop it was opened on.

    Args:
        session: the aioboto3 session (credentials and region).
        prefix: prepended to every key, e.g. ``onward/`` (may be empty).
        endpoint_url: a non-AWS S3 endpoint; None: AWS.
    """

    def __init__(
        self, session: aioboto3.Session, prefix: str = "", endpoint_url: str | None = None
    ) -> None:
        self._session = session
        self._prefix = prefix
        self._endpoint_url = endpoint_url

    def describe(self) -> Mapping[str, str]:
        """What a driver error message should say about this client."""
        return {"prefix": self._prefix, "endpoint": self._endpoint_url or "aws"}

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        """Whether the object is there (``head_object``; a 404 is False)."""
        from botocore.exceptions import ClientError

        async with self._session.client("s3", endpoint_url=self._endpoint_url) as s3:
            try:
                await s3.head_object(Bucket=bucket, Key=self._prefix + key)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    return False
                raise
            return True

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        """Upload ``data`` (multipart when large, as aioboto3 decides)."""
        async with self._session.client("s3", endpoint_url=self._endpoint_url) as s3:
            await s3.upload_fileobj(io.BytesIO(data), bucket, self._prefix + key)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        """Download the object's bytes."""
        async with self._session.client("s3", endpoint_url=self._endpoint_url) as s3:
            response = await s3.get_object(Bucket=bucket, Key=self._prefix + key)
            data: bytes = await response["Body"].read()
            return data


def s3_driver(url: str, environ: Mapping[str, str]) -> S3StorageDriver:
    """The SDK's S3 driver for ``s3://bucket/prefix``, endpoint from ``AWS_ENDPOINT_URL``.

    Raises:
        SettingsError: the URL names no bucket, or aioboto3 is not installed.
    """
    parts = urlsplit(url)
    if not parts.netloc:
        raise SettingsError(f"ONWARD_PAYLOADS must name a bucket: s3://bucket/prefix, not {url!r}")
    try:
        import aioboto3
    except ImportError:
        raise SettingsError(
            "ONWARD_PAYLOADS=s3://... needs aioboto3: pip install 'onward[s3]'"
        ) from None
    prefix = parts.path.strip("/")
    client = PrefixedS3Client(
        aioboto3.Session(),
        prefix=f"{prefix}/" if prefix else "",
        endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
    )
    return S3StorageDriver(client=client, bucket=parts.netloc)
