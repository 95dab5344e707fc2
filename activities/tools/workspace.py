"""File tools confined to one workspace directory: ``write_file``, ``read_file``, ``list_files``.

Every path is relative to the workspace. Absolute paths, ``..`` escapes and
symlinks that resolve outside it are refused with :class:`WorkspaceError`, and so
is the ledger directory below, so a model can neither leave the workspace nor
tamper with the bookkeeping.

Why ``write_file`` keeps a ledger: Temporal runs an activity *at least* once. A
worker can be killed after an append landed but before the completion reached
the server; the retry runs with the same ``ctx.idempotency_key`` and, done
naively, appends a second copy. So each call keeps one record,
``<workspace>/.onward-ledger/<sha256(key)>.json``:

1. before appending, an *intent* holding the file's size before the append;
2. after appending, *done* holding the result message.

A call whose record is done returns that message and writes nothing. A call
that finds only an intent follows an attempt that died somewhere in between:
if its data is in the file at the recorded size, the call just records done;
if the file *ends* with part of it there, it truncates that part away and
appends again; otherwise (other calls appended since) it appends again, never
cutting what they wrote. An overwrite is idempotent by itself and only records
done.

An append holds an exclusive ``flock`` on the target from measuring its size
until done is recorded, so parallel calls of one step appending to one file
take turns. Records are written atomically (temp file, fsync, ``os.replace``)
so a crash never leaves half a record. Records are small and are never
deleted, so a retry however late still finds its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

from pydantic import BaseModel, Field

from onward.activities.tools.registry import ToolContext, tool
from onward.errors import ToolError, WorkspaceError
from onward.text import counted

if sys.platform != "win32":
    import fcntl

__all__ = [
    "FILE_TOOL_TIMEOUT_S",
    "LEDGER_DIR",
    "MAX_READ_BYTES",
    "ListFilesArgs",
    "ReadFileArgs",
    "WriteFileArgs",
    "list_files",
    "read_file",
    "resolve_path",
    "write_file",
]

LEDGER_DIR = ".onward-ledger"
"""Directory inside the workspace holding ``write_file``'s idempotency records."""

MAX_READ_BYTES = 1_000_000
"""``read_file`` reads at most this much; the activity cuts results far shorter anyway."""

FILE_TOOL_TIMEOUT_S = 30.0
"""Local file I/O; a call this slow means a stuck disk, and a retry is the right answer."""

_PATH_HELP = "relative to the workspace, e.g. 'notes/todo.md'"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""The target was resolved already; a symlink put in its place since is not followed."""


class WriteFileArgs(BaseModel):
    """Arguments of :data:`write_file`."""

    path: str = Field(min_length=1, description=f"File to write, {_PATH_HELP}.")
    content: str = Field(description="Text to write.")
    append: bool = Field(
        default=False, description="Add to the end of the file instead of replacing it."
    )


class ReadFileArgs(BaseModel):
    """Arguments of :data:`read_file`."""

    path: str = Field(min_length=1, description=f"File to read, {_PATH_HELP}.")


class ListFilesArgs(BaseModel):
    """Arguments of :data:`list_files`."""

    path: str = Field(
        default=".", description=f"Directory to list, {_PATH_HELP}; '.' is the workspace."
    )


@tool(builtin=True, timeout_s=FILE_TOOL_TIMEOUT_S)
def write_file(args: WriteFileArgs, ctx: ToolContext) -> str:
    """Write text to a file in the workspace, creating folders as needed.

    Replaces the file, or adds to its end with append=true.
    """
    root = _workspace_root(ctx)
    target = resolve_path(root, args.path)
    shown = _relative(root, target)
    with _reported("write", shown):
        ledger = _Ledger.for_call(root, ctx.idempotency_key)
        entry = ledger.load()
        if entry is not None and entry.done:
            return entry.result
        if target.is_dir():
            raise ToolError(f"{shown!r} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        data = args.content.encode("utf-8")
        if not args.append:
            _write_bytes(target, data, "wb")
            result = f"wrote {counted(len(args.content), 'character')} to {shown}"
            ledger.mark_done(result)
            return result
        with _locked(target) as fd:
            entry = ledger.load()  # again: another attempt of this call may have finished
            if entry is not None and entry.done:
                return entry.result
            if entry is None or not _landed(fd, entry.size_before, data):
                entry = ledger.record_intent(os.fstat(fd).st_size)
                _append(target, fd, data, entry.size_before)
            result = f"appended {counted(len(args.content), 'character')} to {shown}"
            ledger.mark_done(result)
        return result


@tool(builtin=True, timeout_s=FILE_TOOL_TIMEOUT_S)
def read_file(args: ReadFileArgs, ctx: ToolContext) -> str:
    """Read a text file from the workspace."""
    root = _workspace_root(ctx)
    target = resolve_path(root, args.path)
    shown = _relative(root, target)
    with _reported("read", shown):
        if target.is_dir():
            raise ToolError(f"{shown!r} is a directory; use list_files to see inside")
        try:
            with target.open("rb") as file:
                data = file.read(MAX_READ_BYTES + 1)
        except FileNotFoundError:
            raise ToolError(f"no such file: {args.path}") from None
        text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
        if len(data) > MAX_READ_BYTES:
            text += f"\n[file is {_size(target)} bytes; showing the first {MAX_READ_BYTES}]"
        return text


@tool(builtin=True, timeout_s=FILE_TOOL_TIMEOUT_S)
def list_files(args: ListFilesArgs, ctx: ToolContext) -> str:
    """List a workspace directory, one entry per line; folders end with '/'."""
    root = _workspace_root(ctx)
    target = resolve_path(root, args.path)
    shown = _relative(root, target)
    with _reported("list", shown):
        if not target.exists():
            raise ToolError(f"no such directory: {args.path}")
        if not target.is_dir():
            raise ToolError(f"not a directory: {args.path}; use read_file to read it")
        entries = [
            f"{child.name}/" if child.is_dir() else child.name
            for child in sorted(target.iterdir(), key=lambda child: child.name)
            if not (target == root and child.name == LEDGER_DIR)
        ]
        return "\n".join(entries) if entries else "(empty directory)"


def resolve_path(root: Path, path: str) -> Path:
    """Resolve ``path`` inside the workspace, following symlinks.

    Args:
        root: The workspace directory, already resolved.
        path: A path relative to it, as the model wrote it.

    Returns:
        The absolute, resolved path; it may not exist yet.

    Raises:
        WorkspaceError: ``path`` is absolute, leaves the workspace (by ``..`` or a
            symlink), points into the ledger directory, or cannot be resolved.
    """
    if "\x00" in path:
        raise WorkspaceError(f"path {path!r} contains a null byte")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        # A line break in a file's name splits it in two in every listing.
        raise WorkspaceError(f"path {path!r} contains a control character (a line break, a tab)")
    if PurePath(path).is_absolute() or path.startswith(("/", "\\")):
        raise WorkspaceError(f"path {path!r} is absolute; use a path {_PATH_HELP}")
    try:
        target = (root / path).resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python 3.11, 3.12)
        raise WorkspaceError(f"path {path!r} cannot be resolved: {err}") from None
    if not target.is_relative_to(root):
        raise WorkspaceError(f"path {path!r} is outside the workspace")
    if target.relative_to(root).parts[:1] == (LEDGER_DIR,):
        raise WorkspaceError(f"path {path!r} is reserved for Onward's bookkeeping")
    return target


class _LedgerEntry(BaseModel):
    key: str
    size_before: int = 0
    done: bool = False
    result: str = ""


@dataclass(frozen=True)
class _Ledger:
    """The record of one ``write_file`` call, named by the hash of its idempotency key."""

    path: Path
    key: str

    @classmethod
    def for_call(cls, root: Path, key: str) -> _Ledger:
        # Hashed: keys contain workflow ids, which may hold any character a file name cannot.
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return cls(root / LEDGER_DIR / f"{digest}.json", key)

    def load(self) -> _LedgerEntry | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return _LedgerEntry.model_validate_json(text)

    def record_intent(self, size_before: int) -> _LedgerEntry:
        entry = _LedgerEntry(key=self.key, size_before=size_before)
        _write_atomically(self.path, entry.model_dump_json().encode("utf-8"))
        return entry

    def mark_done(self, result: str) -> None:
        entry = _LedgerEntry(key=self.key, done=True, result=result)
        _write_atomically(self.path, entry.model_dump_json().encode("utf-8"))


def _workspace_root(ctx: ToolContext) -> Path:
    with _reported("create workspace", str(ctx.workspace)):
        ctx.workspace.mkdir(parents=True, exist_ok=True)
    # Resolved once, so a workspace reached through a symlink still contains its own files.
    return ctx.workspace.resolve()


def _relative(root: Path, target: Path) -> str:
    return target.relative_to(root).as_posix()


def _size(target: Path) -> int:
    try:
        return target.stat().st_size
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[int]:
    """The target, opened (created if need be) and exclusively locked until the block ends."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
    try:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # which releases the lock


def _landed(fd: int, size_before: int, data: bytes) -> bool:
    """True when an earlier attempt's append is in the file whole.

    When the file ends with part of it instead, that part is cut away. Anything
    else after ``size_before`` is other calls' data, and stays.
    """
    found = os.pread(fd, len(data), size_before)
    if found == data:
        return True
    if size_before + len(found) == os.fstat(fd).st_size and data.startswith(found):
        _truncate(fd, size_before)
    return False


def _append(target: Path, fd: int, data: bytes, size_before: int) -> None:
    try:
        _write_bytes(target, data, "ab")
    except OSError:
        # The model hears about this error; leave no half-append behind it.
        _truncate(fd, size_before)
        raise


def _truncate(fd: int, size: int) -> None:
    # Only ever shrink: truncating "up" would pad the file with zero bytes.
    if os.fstat(fd).st_size > size:
        os.ftruncate(fd, size)


def _write_bytes(target: Path, data: bytes, mode: str) -> None:
    # fsync before the ledger says done, so "done" never outlives the data after a power loss.
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    with os.fdopen(os.open(target, flags, 0o666), mode) as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new bytes, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable as well; POSIX only, since Windows cannot open a directory."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _reported(action: str, shown: str) -> Iterator[None]:
    """Turn an OS error (permissions, disk full) into a message the model can act on."""
    try:
        yield
    except OSError as err:
        raise ToolError(f"cannot {action} {shown!r}: {err.strerror or err}") from err
