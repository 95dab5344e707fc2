"""The transcript store: a run's messages and step log, kept once, outside the event history.

:class:`TranscriptStore` reads and writes contract models over a backend:
:class:`~onward.store.local.LocalStore` (a directory under ``.onward/``, the
embedded default) or :class:`~onward.store.postgres.PostgresStore`
(``ONWARD_STORE=postgresql://...``, for workers on several machines).
:func:`open_store` picks one from a URL. The same store keeps memory across
runs (``remember``/``recall``, per tenant and scope) and, on PostgreSQL, the
runs' workspaces (:attr:`TranscriptStore.files`). Writes are idempotent per position,
so activity retries and worker kills never duplicate a message or a step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel
from temporalio.converter import PayloadCodec

from onward.contracts import Message, StepRecord
from onward.errors import SettingsError
from onward.memory import MemoryEntry
from onward.store.base import (
    FileBackend,
    Kind,
    MemoryBackend,
    StoreBackend,
    StoreError,
    check_transcript_id,
    memory_key_id,
    transcript_id,
)
from onward.store.local import LocalStore
from onward.store.sealing import open_documents, seal_documents

__all__ = [
    "DEFAULT_STORE_DIR",
    "FileBackend",
    "LocalStore",
    "MemoryBackend",
    "StoreBackend",
    "StoreError",
    "TranscriptStore",
    "check_transcript_id",
    "is_postgres",
    "local_root",
    "open_store",
    "store_name",
    "store_url",
    "transcript_id",
]

DEFAULT_STORE_DIR = ".onward/store"
"""Where the embedded default keeps transcripts (relative to the worker's directory)."""


def store_url(environ: Mapping[str, str]) -> str:
    """``ONWARD_STORE``, or the embedded default directory."""
    return environ.get("ONWARD_STORE") or DEFAULT_STORE_DIR


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL store (``postgresql://`` or ``postgres://``)."""
    return url.startswith(("postgresql://", "postgres://"))


async def open_store(url: str, codec: PayloadCodec | None = None) -> TranscriptStore:
    """The store at ``url``: ``postgresql://...`` (or ``postgres://``), ``file:///dir`` or a path.

    With ``codec`` (the data converter's, when ``ONWARD_ENCRYPTION_KEYS`` is
    set) documents are stored sealed (see :mod:`onward.store.sealing`).

    Raises:
        StoreError: PostgreSQL cannot be reached or its table cannot be created.
        SettingsError: ``url`` names a kind of store Onward has not (``mysql://``).
    """
    if is_postgres(url):
        from onward.store.postgres import PostgresStore  # only workers that use it need psycopg

        return TranscriptStore(await PostgresStore.open(url), codec)
    return TranscriptStore(LocalStore(local_root(url)), codec)


def local_root(url: str) -> Path:
    """The directory a ``file://`` URL or a plain path names, made absolute.

    Raises:
        SettingsError: ``url`` has another scheme (``mysql://...``): it is refused
            here, before anyone creates it as a directory named ``mysql:``.
    """
    scheme, found, _ = url.partition("://")
    if found and scheme not in ("postgresql", "postgres", "file"):
        raise SettingsError(
            f"ONWARD_STORE: {scheme}:// is no store Onward has (postgresql://..., "
            "file:///dir or a directory)"
        )
    path = url.removeprefix("file://") if url.startswith("file://") else url
    return Path(path).expanduser().absolute()


def store_name(url: str) -> str:
    """The store's URL without a password, or its directory: for people to read."""
    if is_postgres(url):
        from onward.store.pgurl import redacted  # only clients that use it need psycopg

        return redacted(url)
    return str(local_root(url))


def _dump(items: Sequence[BaseModel]) -> list[bytes]:
    return [item.model_dump_json().encode() for item in items]


class TranscriptStore:
    """Messages (positions from 0) and step records (step N at position N - 1) of transcripts.

    With ``codec``, documents are sealed on write and opened on read
    (:mod:`onward.store.sealing`); plain documents read as they are either way.
    """

    def __init__(self, backend: StoreBackend, codec: PayloadCodec | None = None) -> None:
        self.backend = backend
        self.codec = codec

    async def _write(
        self, transcript: str, kind: Kind, start: int, items: Sequence[BaseModel]
    ) -> None:
        documents = await seal_documents(self.codec, _dump(items))
        await self.backend.write(transcript, kind, start, documents)

    async def _read(self, transcript: str, kind: Kind, start: int, stop: int | None) -> list[bytes]:
        return await open_documents(
            self.codec, await self.backend.read(transcript, kind, start, stop)
        )

    async def write_messages(
        self, transcript: str, start: int, messages: Sequence[Message]
    ) -> None:
        """Put ``messages`` at positions ``start``, ``start + 1``, ... of the transcript."""
        await self._write(transcript, "messages", start, messages)

    async def messages(
        self, transcript: str, start: int = 0, stop: int | None = None
    ) -> list[Message]:
        """The messages from ``start`` up to ``stop`` (None: all written so far)."""
        return [
            Message.model_validate_json(raw)
            for raw in await self._read(transcript, "messages", start, stop)
        ]

    async def write_steps(self, transcript: str, steps: Sequence[StepRecord]) -> None:
        """Put each record at its step's position (replacing an earlier record of that step)."""
        for step in steps:
            await self._write(transcript, "steps", step.step - 1, [step])

    async def steps(
        self, transcript: str, first: int = 1, last: int | None = None
    ) -> list[StepRecord]:
        """Step records ``first`` to ``last`` (inclusive; None: all written so far)."""
        raw = await self._read(transcript, "steps", first - 1, last)
        return [StepRecord.model_validate_json(item) for item in raw]

    async def put_cached(self, key: str, document: bytes) -> None:
        """Keep one document under ``key`` (a tool-cache entry), replacing any earlier one."""
        await self.backend.write(key, "cache", 0, await seal_documents(self.codec, [document]))

    async def get_cached(self, key: str) -> bytes | None:
        """The document kept under ``key``, or None."""
        found = await open_documents(self.codec, await self.backend.read(key, "cache", 0, 1))
        return found[0] if found else None

    async def count(self, transcript: str, kind: Kind) -> int:
        """How many messages or steps the transcript holds."""
        return await self.backend.length(transcript, kind)

    # -- memory across runs ------------------------------------------------------------

    def _memory(self) -> MemoryBackend:
        if not isinstance(self.backend, MemoryBackend):
            raise StoreError(f"this store ({type(self.backend).__name__}) keeps no memory")
        return self.backend

    async def remember(self, tenant: str, scope: str, entry: MemoryEntry) -> None:
        """Keep ``entry`` in the tenant's scope, replacing an entry of the same key."""
        [document] = await seal_documents(self.codec, _dump([entry]))
        await self._memory().put_memory(tenant, scope, memory_key_id(entry.key), document)

    async def memories(self, tenant: str, scope: str) -> list[MemoryEntry]:
        """Every entry of the tenant's scope."""
        raws = await self._memory().memory_documents(tenant, scope)
        return [
            MemoryEntry.model_validate_json(raw) for raw in await open_documents(self.codec, raws)
        ]

    # -- run workspaces ------------------------------------------------------------------

    @property
    def files(self) -> FileBackend | None:
        """Where run workspaces live when the store keeps them (PostgreSQL); None: on disk."""
        return self.backend if isinstance(self.backend, FileBackend) else None

    async def close(self) -> None:
        await self.backend.close()
