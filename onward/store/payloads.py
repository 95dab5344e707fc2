"""Large payloads outside the event history: the SDK's external storage, on a local directory.

Temporal refuses payloads over 2 MB and every byte in a history is replayed,
so a payload over :data:`DEFAULT_THRESHOLD` (a 5 MB tool result, say) is
written here and only a small reference enters the history. The SDK's
``ExternalStorage`` does the swapping in the data converter; this module
gives it a driver that needs nothing set up (a directory beside the
transcript store), or the SDK's S3 driver where ``ONWARD_PAYLOADS=s3://...``.

Payloads are stored by the SHA-256 of their bytes, so storing one twice (a
retried activity) writes nothing new, and a reference never points at other
content than it was made from.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from onward.errors import SettingsError
from onward.store.base import StoreError

__all__ = [
    "DEFAULT_PAYLOAD_DIR",
    "DEFAULT_THRESHOLD",
    "DirectoryStorageDriver",
    "external_storage",
]

DEFAULT_PAYLOAD_DIR = ".onward/payloads"
"""Where the embedded default keeps large payloads (``ONWARD_PAYLOADS`` overrides)."""
DEFAULT_THRESHOLD = 256 * 1024
"""Payloads at least this large (bytes) go to external storage (``ONWARD_PAYLOAD_THRESHOLD``)."""


class DirectoryStorageDriver(StorageDriver):
    """Content-addressed payload files under one directory (``sha256/ab/<digest>``).

    Every process that encodes or decodes the run's payloads (workers,
    clients, the replayer) must see the same directory: one machine, or a
    shared file system. Past that, use S3.
    """

    def __init__(self, root: Path, name: str = "onward-directory") -> None:
        self._root = root
        self._name = name

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return "onward.directory"

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise StoreError(f"bad payload reference {digest!r}")
        return self._root / "sha256" / digest[:2] / digest

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        return await asyncio.to_thread(self._store_all, payloads)

    def _store_all(self, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            data = payload.SerializeToString(deterministic=True)
            digest = hashlib.sha256(data).hexdigest()
            path = self._path(digest)
            if not path.exists():
                _write_atomically(path, data)
            claims.append(StorageDriverClaim(claim_data={"sha256": digest}))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        return await asyncio.to_thread(self._retrieve_all, claims)

    def _retrieve_all(self, claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        found = []
        for claim in claims:
            digest = claim.claim_data.get("sha256", "")
            path = self._path(digest)
            try:
                data = path.read_bytes()
            except FileNotFoundError as err:
                raise StoreError(
                    f"payload {digest[:12]}… is not in {self._root}: this process must see the "
                    "worker's payload directory (ONWARD_PAYLOADS)"
                ) from err
            payload = Payload()
            payload.ParseFromString(data)
            found.append(payload)
        return found


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temp file and rename, so a reader never sees half a payload."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except OSError as err:
        raise StoreError(f"cannot store a payload in {path.parent}: {err.strerror}") from err


def external_storage(environ: Mapping[str, str]) -> ExternalStorage:
    """External storage from ``ONWARD_PAYLOADS`` (a directory, the default) and the threshold.

    ``ONWARD_PAYLOADS=s3://bucket/prefix`` uses the SDK's S3 driver (see
    :mod:`onward.store.s3payloads`).

    Raises:
        SettingsError: a bad ``ONWARD_PAYLOAD_THRESHOLD`` or S3 location.
    """
    raw = environ.get("ONWARD_PAYLOAD_THRESHOLD") or str(DEFAULT_THRESHOLD)
    try:
        threshold = int(raw)
    except ValueError:
        threshold = -1
    if threshold < 0:
        raise SettingsError(
            f"ONWARD_PAYLOAD_THRESHOLD must be a number of bytes (0 or more), not {raw!r}"
        )
    directory = payload_directory(environ)
    driver: StorageDriver
    if directory is None:
        from onward.store.s3payloads import s3_driver  # aioboto3 only when asked for

        driver = s3_driver(environ["ONWARD_PAYLOADS"], environ)
    else:
        driver = DirectoryStorageDriver(directory)
    return ExternalStorage(drivers=[driver], payload_size_threshold=threshold)


def payload_directory(environ: Mapping[str, str]) -> Path | None:
    """The directory ``ONWARD_PAYLOADS`` names (or the default); None for S3.

    Raises:
        SettingsError: a URL of another kind (``gs://...``) or a mistyped S3 one
            (``s3:/bucket``), which would otherwise be made a local directory.
    """
    location = environ.get("ONWARD_PAYLOADS") or DEFAULT_PAYLOAD_DIR
    if location.startswith("s3://"):
        return None
    scheme, found, _ = location.partition("://")
    if (found and scheme != "file") or location.lower().startswith("s3:"):
        raise SettingsError(
            f"ONWARD_PAYLOADS={location!r} is no payload store Onward has "
            "(s3://bucket/prefix, file:///dir or a directory)"
        )
    return Path(location.removeprefix("file://")).expanduser().absolute()
