"""What every transcript store backend does: numbered JSON documents per transcript.

A transcript is one run's (or one session's) record kept outside Temporal's
event history: its messages and its step log, each a sequence of JSON
documents numbered from 0 (messages) or 1 (steps). Writing a document at a
position that already holds one replaces it, so a retried activity that
writes the same documents again changes nothing, and an attempt that
completed after an earlier, abandoned one has the last word.

Backends store bytes and know nothing of the contract models;
:class:`onward.store.TranscriptStore` puts the types on top.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal, Protocol, runtime_checkable

from onward.contracts import Artifact
from onward.errors import StoreError

__all__ = [
    "MAX_AHEAD_S",
    "FileBackend",
    "Kind",
    "MemoryBackend",
    "PrunableBackend",
    "RateBackend",
    "StoreBackend",
    "StoreError",
    "advanced",
    "check_transcript_id",
    "memory_key_id",
    "transcript_id",
    "unreachable",
]

Kind = Literal["messages", "steps", "cache"]
"""The sequences a transcript holds; ``cache`` is the one entry of a tool-cache key
(:mod:`onward.tool_cache`), kept in the same backend as the transcripts."""

_TRANSCRIPT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@=+-]{0,254}")
"""Workflow ids are free text; a transcript id also names a directory, so it is kept plain."""


_AWAY = ("57P01", "57P02", "57P03", "53300")
"""SQLSTATEs of a server going or gone away: admin or crash shutdown, cannot connect
now (starting up, shutting down), too many connections."""


def unreachable(err: StoreError) -> bool:
    """Whether ``err`` is the store being away (PostgreSQL down or restarting, no
    connection free in time), which passes by itself, not an operation it refused.

    A lost or refused connection (no SQLSTATE, or class 08), a server shutting down
    or starting up, a full server or pool: yes. A refusal that would repeat (a
    password, a permission, a bad document, a full disk) or a pool being closed: no.
    """
    try:  # only workers with a PostgreSQL store have these
        import psycopg
        from psycopg_pool import PoolClosed, PoolTimeout
    except ImportError:
        return False
    cause = err.__cause__
    if not isinstance(cause, psycopg.OperationalError) or isinstance(cause, PoolClosed):
        return False
    if isinstance(cause, PoolTimeout):
        return True
    state = cause.sqlstate
    return state is None or state.startswith("08") or state in _AWAY


def check_transcript_id(transcript: str) -> str:
    """Return ``transcript`` if it is a usable id; ValueError says why not."""
    if not _TRANSCRIPT_ID.fullmatch(transcript) or ".." in transcript:
        raise ValueError(
            f"bad transcript id {transcript!r}: use 1-255 letters, digits and ._:@=+- "
            "(starting with a letter or digit)"
        )
    return transcript


def transcript_id(workflow_id: str, first_run_id: str) -> str:
    """The transcript of a run: the same across continue-as-new, new for a reused workflow id.

    ``workflow_id@first_run_id`` when that is a usable id, else its SHA-256 (workflow
    ids are free text). Pure, so the workflow and every reader derive the same id.
    """
    plain = f"{workflow_id}@{first_run_id}"
    try:
        return check_transcript_id(plain)
    except ValueError:
        return "sha256-" + hashlib.sha256(plain.encode()).hexdigest()


class StoreBackend(Protocol):
    """Numbered documents per (transcript, kind); positions are written idempotently."""

    async def write(
        self, transcript: str, kind: Kind, start: int, documents: Sequence[bytes]
    ) -> None:
        """Put ``documents`` at positions ``start``, ``start + 1``, ... (replacing any there)."""
        ...

    async def read(
        self, transcript: str, kind: Kind, start: int = 0, stop: int | None = None
    ) -> list[bytes]:
        """The documents at positions ``start`` up to ``stop`` (None: all), in order.

        A gap (a position never written) ends the answer: what follows a gap
        was written out of order and is not yet part of the sequence.
        """
        ...

    async def length(self, transcript: str, kind: Kind) -> int:
        """How many positions from ``0`` are written without a gap."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


def memory_key_id(key: str) -> str:
    """What a memory's key is stored under: its SHA-256, so the key itself can be sealed."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@runtime_checkable
class MemoryBackend(Protocol):
    """Memory documents per (tenant, scope), one per key id; a later put replaces it."""

    async def put_memory(self, tenant: str, scope: str, key_id: str, document: bytes) -> None:
        """Keep ``document`` under ``key_id`` in the space, replacing what was there."""
        ...

    async def memory_documents(self, tenant: str, scope: str) -> list[bytes]:
        """Every document of the space, in key id order."""
        ...


@runtime_checkable
class FileBackend(Protocol):
    """Run workspaces kept in the store instead of a worker's disk (PostgreSQL).

    ``workspace`` is the run's workspace key (its root workflow id); paths are
    normalised, relative, ``/``-separated.
    """

    async def write_file(
        self, workspace: str, path: str, data: bytes, *, append: bool, call: str, result: str
    ) -> str:
        """Write (or append) ``data`` once per ``call`` (an idempotency key).

        Returns ``result``, or the result recorded by an earlier attempt of the
        same call, which then writes nothing.
        """
        ...

    async def read_file(self, workspace: str, path: str) -> bytes | None:
        """The file's bytes; None when there is no such file."""
        ...

    async def list_files(self, workspace: str) -> list[Artifact]:
        """Every file of the workspace with its size and SHA-256, sorted by path."""
        ...

    async def file_paths(self, workspace: str) -> list[str]:
        """Every file's path, sorted (no contents read: what the file tools need)."""
        ...


MAX_AHEAD_S = 3600.0
"""A shared rate limit's schedule never runs further ahead of the clock than this: a
clock set back (or a schedule written by a machine whose clock ran ahead) costs at most
an hour's wait, not the whole difference."""


def advanced(scheduled: float | None, now: float, add_s: float, hold_s: float) -> float:
    """A schedule moved as :meth:`RateBackend.advance` says (``scheduled`` None: a new
    key's), no further ahead of ``now`` than :data:`MAX_AHEAD_S` before it moves."""
    start = now if scheduled is None else max(min(scheduled, now + MAX_AHEAD_S), now)
    return max(start + add_s, now + hold_s)


@runtime_checkable
class RateBackend(Protocol):
    """Schedules of shared rate limits (:mod:`onward.activities.rate_limits`), one per key.

    A schedule is a point in time: when the calls that limit has let through are
    paid off. Every worker using the backend moves the same one.
    """

    async def advance(self, key: str, add_s: float, hold_s: float = 0.0) -> float:
        """Move ``key``'s schedule ``add_s`` past the later of itself and now, and to at
        least ``hold_s`` past now (a new key's starts at now); return how far ahead of
        now it then runs. Atomic: concurrent callers each move it by their own ``add_s``.
        """
        ...


@runtime_checkable
class PrunableBackend(Protocol):
    """A backend that lists and deletes what was last written long ago (``onward prune-store``).

    Ages are the backend's own clock's (the database's ``now()``, the files' times),
    so a client's clock does not decide what is old.
    """

    async def stale_transcripts(self, older_than: timedelta) -> list[str]:
        """Transcripts (and tool-cache entries) with no write for ``older_than``."""
        ...

    async def delete_transcript(self, transcript: str, older_than: timedelta) -> bool:
        """Delete the transcript if it still has no write for ``older_than``; whether it did."""
        ...

    async def stale_workspaces(self, older_than: timedelta) -> list[str]:
        """Run workspaces kept in the store with no write for ``older_than`` (none on disk)."""
        ...

    async def delete_workspace(self, workspace: str, older_than: timedelta) -> bool:
        """Delete the workspace's files if still unwritten for ``older_than``; whether it did."""
        ...
