"""The file tools over a workspace kept in the store (PostgreSQL), not on a worker's disk.

With ``ONWARD_STORE=postgresql://...`` a run's tool calls may land on any
worker, on any machine: ``write_file``, ``read_file`` and ``list_files`` then
read and write the run's workspace in the database, so every worker and every
client sees the same files. They take the same arguments and answer the same
messages as the directory tools of :mod:`onward.activities.tools.workspace`.

Idempotency: the store records each ``write_file`` call by its idempotency
key in the same transaction as the write, so a retried call (a worker killed
after the write, before Temporal heard of it) writes nothing and answers what
the first attempt answered.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from onward.activities.tools.workspace import (
    LEDGER_DIR,
    MAX_READ_BYTES,
    ListFilesArgs,
    ReadFileArgs,
    WriteFileArgs,
)
from onward.errors import ToolError, WorkspaceError
from onward.store import FileBackend
from onward.text import counted

__all__ = ["list_stored", "normalize_path", "read_stored", "write_stored"]

_PATH_HELP = "relative to the workspace, e.g. 'notes/todo.md'"


def normalize_path(path: str) -> str:
    """``path`` as the store keys it: relative, ``/``-separated, no ``.`` or ``..``.

    "" is the workspace itself.

    Raises:
        WorkspaceError: ``path`` is absolute, leaves the workspace, or names the
            bookkeeping directory (the same refusals as the directory tools).
    """
    if "\x00" in path:
        raise WorkspaceError(f"path {path!r} contains a null byte")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        # A line break in a file's name splits it in two in every listing.
        raise WorkspaceError(f"path {path!r} contains a control character (a line break, a tab)")
    if PurePosixPath(path).is_absolute() or path.startswith(("/", "\\")):
        raise WorkspaceError(f"path {path!r} is absolute; use a path {_PATH_HELP}")
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise WorkspaceError(f"path {path!r} is outside the workspace")
            parts.pop()
            continue
        parts.append(part)
    if parts[:1] == [LEDGER_DIR]:
        raise WorkspaceError(f"path {path!r} is reserved for Onward's bookkeeping")
    return "/".join(parts)


def _is_dir(paths: list[str], path: str) -> bool:
    return path == "" or any(item.startswith(path + "/") for item in paths)


async def write_stored(
    files: FileBackend, workspace: str, args: WriteFileArgs, idempotency_key: str
) -> str:
    """``write_file`` in the store's copy of the run's workspace."""
    path = normalize_path(args.path)
    paths = await files.file_paths(workspace)
    if _is_dir(paths, path):
        raise ToolError(f"{path or '.'!r} is a directory")
    for parent in PurePosixPath(path).parents:
        if str(parent) in paths:
            raise ToolError(f"cannot write {path!r}: {str(parent)!r} is a file")
    verb = "appended" if args.append else "wrote"
    result = f"{verb} {counted(len(args.content), 'character')} to {path}"
    return await files.write_file(
        workspace,
        path,
        args.content.encode("utf-8"),
        append=args.append,
        call=idempotency_key,
        result=result,
    )


async def read_stored(files: FileBackend, workspace: str, args: ReadFileArgs) -> str:
    """``read_file`` from the store's copy of the run's workspace."""
    path = normalize_path(args.path)
    data = await files.read_file(workspace, path) if path else None
    if data is None:
        if _is_dir(await files.file_paths(workspace), path):
            raise ToolError(f"{path or '.'!r} is a directory; use list_files to see inside")
        raise ToolError(f"no such file: {args.path}")
    text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
    if len(data) > MAX_READ_BYTES:
        text += f"\n[file is {len(data)} bytes; showing the first {MAX_READ_BYTES}]"
    return text


async def list_stored(files: FileBackend, workspace: str, args: ListFilesArgs) -> str:
    """``list_files`` of a directory of the store's copy of the run's workspace."""
    path = normalize_path(args.path)
    everything = await files.file_paths(workspace)
    if path and path in everything:
        raise ToolError(f"not a directory: {args.path}; use read_file to read it")
    prefix = f"{path}/" if path else ""
    entries: set[str] = set()
    for item in everything:
        if item.startswith(prefix):
            first, sep, _ = item[len(prefix) :].partition("/")
            entries.add(f"{first}/" if sep else first)
    if not entries:
        if path:
            raise ToolError(f"no such directory: {args.path}")
        return "(empty directory)"
    return "\n".join(sorted(entries, key=lambda entry: entry.rstrip("/")))
