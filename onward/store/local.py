"""The embedded default store: one directory, nothing to set up.

Each (transcript, kind) is an append-only file of ``<position>\\t<json>``
lines under ``<root>/<transcript>/``; a later line for a position replaces an
earlier one, so writing is one locked append and a retry's rewrite costs a
line. A worker killed mid-append leaves at most a torn last line, which
readers skip and the next append closes off.

Memory (``remember``/``recall``) is one file per tenant and scope under
``<root>/memory/``, of ``<key id>\t<json>`` lines; a later line for a key
replaces an earlier one.

Readers keep what they have read of each file (up to :data:`CACHED_LOGS`
files) and read only what was appended since, so a model call that reads its
whole transcript costs the new lines, not the transcript again; what a store
appends to a file it has read to the end it keeps as read, so a worker reading
back what it wrote costs one ``stat``.

Small reads and writes (up to :data:`INLINE_IO_BYTES`) run on the event loop:
a local append or a read of the last few lines takes microseconds, and a
thread hop costs more than that; for a busy worker it was about a tenth of its
CPU per agent step (``make bench``, 100 agents). Larger ones go to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from threading import Lock
from typing import Any, BinaryIO, TypeVar

from onward.store.base import Kind, StoreError, advanced, check_transcript_id

__all__ = [
    "CACHED_LOGS",
    "INLINE_IO_BYTES",
    "MEMORY_DIR",
    "RATES_DIR",
    "LocalStore",
    "last_write",
    "stale_directories",
]

_T = TypeVar("_T")

MEMORY_DIR = "memory"
"""Where memory files live under the store's root (no transcript has this id: a
transcript id is ``<workflow id>@<run id>`` or ``sha256-<hex>``)."""
RATES_DIR = "rates"
"""Where the shared rate limits' schedules live under the store's root, one small file a
limit (:meth:`LocalStore.advance`)."""
CACHED_LOGS = 64
"""Transcript files whose parsed contents a store keeps in memory between reads."""
INLINE_IO_BYTES = 256 * 1024
"""Reads and writes up to this size run on the event loop; larger ones in a thread."""
_NOT_TRANSCRIPTS = frozenset({MEMORY_DIR, RATES_DIR})


@dataclass
class _Log:
    """What has been read of one file: the byte offset reached and the documents by position."""

    offset: int = 0
    documents: dict[int, bytes] = field(default_factory=dict)
    lock: Lock = field(default_factory=Lock)
    """Held while the file is read into this log (the store's lock guards only the map)."""
    file: tuple[int, int] | None = None
    """The device and inode of the file read: another file at the path (the transcript
    pruned and written again) is read from its start."""

    def reset_for(self, stat: os.stat_result) -> None:
        """Forget what was read unless it was read from the file ``stat`` describes."""
        file = (stat.st_dev, stat.st_ino)
        if self.file != file:
            if self.file is not None:
                self.offset = 0
                self.documents.clear()
            self.file = file


def _parse(chunk: bytes, log: _Log) -> int:
    """Take the complete lines of ``chunk`` into ``log``; return the bytes consumed."""
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].splitlines():
        position, tab, document = line.partition(b"\t")
        if tab and position.isdigit() and document:
            log.documents[int(position)] = document
    return end


def _contiguous(documents: dict[int, bytes], start: int, stop: int | None) -> list[bytes]:
    found: list[bytes] = []
    position = start
    while (stop is None or position < stop) and position in documents:
        found.append(documents[position])
        position += 1
    return found


class LocalStore:
    """A :class:`~onward.store.base.StoreBackend` in a local directory.

    Safe for several worker processes on one machine (appends take an
    exclusive ``flock``); for workers on several machines use PostgreSQL.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._logs: OrderedDict[Path, _Log] = OrderedDict()
        self._lock = Lock()

    def _path(self, transcript: str, kind: Kind) -> Path:
        return self._root / check_transcript_id(transcript) / f"{kind}.log"

    async def write(
        self, transcript: str, kind: Kind, start: int, documents: Sequence[bytes]
    ) -> None:
        if start < 0:
            raise ValueError(f"position must be >= 0, not {start}")
        if not documents:
            return
        lines = b"".join(
            b"%d\t%s\n" % (start + index, _one_line(document))
            for index, document in enumerate(documents)
        )
        path = self._path(transcript, kind)
        with self._lock:  # only a file read here before: writes alone keep no log
            log = self._logs.get(path)
        await _run(len(lines), self._append, path, lines, log)

    @staticmethod
    def _locked(path: Path) -> BinaryIO:
        """``path`` opened to append, under its lock, created if missing.

        A file pruned while this waited for its lock is no longer the one at the
        path: it is opened anew, so no write goes into a deleted file.
        """
        while True:
            try:
                opened = path.open("ab+")
            except FileNotFoundError:  # the first document, or the directory just pruned
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            try:
                fcntl.flock(opened, fcntl.LOCK_EX)
                held = os.fstat(opened.fileno())
                now = path.stat()
            except FileNotFoundError:
                opened.close()
                continue
            except BaseException:
                opened.close()
                raise
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                return opened
            opened.close()

    @staticmethod
    def _append(path: Path, lines: bytes, log: _Log | None = None) -> None:
        """Append ``lines``; take them into ``log`` too if it had read the whole file."""
        try:
            with LocalStore._locked(path) as file:
                try:
                    size = file.seek(0, os.SEEK_END)
                    if size:
                        file.seek(size - 1)
                        if file.read(1) != b"\n":
                            lines = b"\n" + lines  # close off a line torn by a crash
                    file.write(lines)
                    file.flush()
                    if log is not None:
                        # The next read of this file here then finds nothing new to read.
                        stat = os.fstat(file.fileno())
                        with log.lock:
                            if log.file is None and log.offset == 0:  # nothing read yet
                                log.file = (stat.st_dev, stat.st_ino)
                            if log.file == (stat.st_dev, stat.st_ino) and log.offset == size:
                                log.offset += _parse(lines, log)
                finally:
                    fcntl.flock(file, fcntl.LOCK_UN)
        except OSError as err:
            raise StoreError(f"cannot write {path}: {err.strerror}") from err

    async def read(
        self, transcript: str, kind: Kind, start: int = 0, stop: int | None = None
    ) -> list[bytes]:
        log = await self._refreshed(self._path(transcript, kind))
        return _contiguous(log.documents, start, stop)

    async def length(self, transcript: str, kind: Kind) -> int:
        log = await self._refreshed(self._path(transcript, kind))
        return len(_contiguous(log.documents, 0, None))

    async def _refreshed(self, path: Path) -> _Log:
        with self._lock:
            log = self._logs.pop(path, None) or _Log()
            self._logs[path] = log
            while len(self._logs) > CACHED_LOGS:
                self._logs.popitem(last=False)
        try:
            stat = path.stat()  # noqa: ASYNC240 (one syscall)
        except FileNotFoundError:
            if log.file is None:
                return log
            stat = None  # pruned: nothing is there now
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror}") from err
        if stat is None or (log.file is not None and log.file != (stat.st_dev, stat.st_ino)):
            with self._lock:  # another file, or none: what was read of the old one is gone
                log = self._logs[path] = _Log()
            if stat is None:
                return log
        unread = stat.st_size - log.offset
        if unread <= 0:
            return log
        return await _run(unread, self._refresh, path, log)

    @staticmethod
    def _refresh(path: Path, log: _Log) -> _Log:
        """Read into ``log`` what was appended to ``path`` since it was last read."""
        with log.lock:
            try:
                with path.open("rb") as file:
                    log.reset_for(os.fstat(file.fileno()))
                    file.seek(log.offset)
                    log.offset += _parse(file.read(), log)
            except FileNotFoundError:
                pass
            except OSError as err:
                raise StoreError(f"cannot read {path}: {err.strerror}") from err
            return log

    async def close(self) -> None:
        with self._lock:
            self._logs.clear()

    # -- pruning ------------------------------------------------------------------------

    async def stale_transcripts(self, older_than: timedelta) -> list[str]:
        cutoff = time.time() - older_than.total_seconds()
        return await asyncio.to_thread(self._stale, cutoff)

    def _stale(self, cutoff: float) -> list[str]:
        return [path.name for path in stale_directories(self._root, cutoff, skip=_NOT_TRANSCRIPTS)]

    async def delete_transcript(self, transcript: str, older_than: timedelta) -> bool:
        directory = self._root / check_transcript_id(transcript)
        cutoff = time.time() - older_than.total_seconds()
        deleted = await asyncio.to_thread(self._delete, directory, cutoff)
        if deleted:
            with self._lock:
                for path in [path for path in self._logs if path.parent == directory]:
                    del self._logs[path]
        return deleted

    @staticmethod
    def _delete(directory: Path, cutoff: float) -> bool:
        """Remove the transcript's files unless one was written since ``cutoff``.

        Each file is locked as an append locks it, so a write under way finishes
        first and is seen (its file's time); an append that waits meanwhile finds
        its file deleted and writes a new one, which then holds only that write.
        """
        with contextlib.ExitStack() as held:
            try:
                paths = list(directory.iterdir())
                for path in paths:
                    file = held.enter_context(path.open("rb"))
                    fcntl.flock(file, fcntl.LOCK_EX)
                if last_write(directory) >= cutoff:
                    return False
                for path in paths:
                    path.unlink()
            except FileNotFoundError:
                return False
            except OSError as err:
                raise StoreError(f"cannot delete {directory}: {err.strerror}") from err
        with contextlib.suppress(OSError):  # a write since made a file again: it stays
            directory.rmdir()
        return True

    async def stale_workspaces(self, older_than: timedelta) -> list[str]:
        return []  # run workspaces are directories beside the workers, not in this store

    async def delete_workspace(self, workspace: str, older_than: timedelta) -> bool:
        return False

    def _memory_path(self, tenant: str, scope: str) -> Path:
        # Hashed: tenants and scopes are free text, a file name is not.
        space = hashlib.sha256(f"{tenant}\x00{scope}".encode()).hexdigest()
        return self._root / MEMORY_DIR / f"{space}.log"

    async def put_memory(self, tenant: str, scope: str, key_id: str, document: bytes) -> None:
        line = b"%s\t%s\n" % (key_id.encode(), _one_line(document))
        await _run(len(line), self._append, self._memory_path(tenant, scope), line)

    # -- shared rate limits ---------------------------------------------------------------

    async def advance(self, key: str, add_s: float, hold_s: float = 0.0) -> float:
        """Move ``key``'s schedule ``add_s`` past the later of itself and now, and to at
        least ``hold_s`` past now; return how far ahead of now it then runs.

        One small file a key under :data:`RATES_DIR`, read and written under its
        lock, so every worker process of this machine keeps one schedule. The
        clock is this machine's (``time.time()``), the one they share.
        """
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return await _run(0, self._advance, self._root / RATES_DIR / name, add_s, hold_s)

    @staticmethod
    def _advance(path: Path, add_s: float, hold_s: float) -> float:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+b") as file:
                fcntl.flock(file, fcntl.LOCK_EX)
                text = file.read()
                try:
                    kept = float(text) if text else None
                except ValueError:
                    kept = None  # a torn write: the schedule starts again from now
                now = time.time()
                scheduled = advanced(kept, now, add_s, hold_s)
                file.seek(0)
                file.truncate()
                file.write(repr(scheduled).encode())
                file.flush()
        except OSError as err:
            raise StoreError(f"cannot keep the rate limit in {path}: {err.strerror}") from err
        return scheduled - now

    async def memory_documents(self, tenant: str, scope: str) -> list[bytes]:
        path = self._memory_path(tenant, scope)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror}") from err
        latest: dict[bytes, bytes] = {}
        for line in data[: data.rfind(b"\n") + 1].splitlines():  # a torn last line is skipped
            key_id, tab, document = line.partition(b"\t")
            if tab and document:
                latest[key_id] = document
        return [latest[key_id] for key_id in sorted(latest)]


def last_write(directory: Path) -> float:
    """The latest modification time of ``directory`` and everything under it (links
    not followed): a transcript's files, or a run workspace's tree."""
    latest = directory.stat().st_mtime
    for parent, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                latest = max(latest, os.lstat(os.path.join(parent, name)).st_mtime)
    return latest


def stale_directories(root: Path, cutoff: float, skip: Collection[str] = ()) -> list[Path]:
    """The directories in ``root`` (but those named in ``skip``) with nothing written
    since ``cutoff`` (``time.time()``), sorted; none when ``root`` does not exist."""
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StoreError(f"cannot list {root}: {err.strerror}") from err
    stale = []
    for entry in entries:
        if entry.name in skip or not entry.is_dir():
            continue
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
            if last_write(entry) < cutoff:
                stale.append(entry)
    return stale


async def _run(size: int, io: Callable[..., _T], *args: Any) -> _T:
    """``io(*args)``: here when it moves at most :data:`INLINE_IO_BYTES`, else in a thread."""
    if size <= INLINE_IO_BYTES:
        return io(*args)
    return await asyncio.to_thread(io, *args)


def _one_line(document: bytes) -> bytes:
    if b"\n" in document:
        raise ValueError("a stored document must be one line of JSON")
    return document
