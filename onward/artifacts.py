"""Run workspaces on a worker's disk: where each run's lives, and the files in it (artifacts).

Each run (and each session: a run continued as new keeps its workflow id) has
its own directory under the worker's workspace root, keyed by workflow id, so
runs never see each other's files. The worker's activities and a client on the
same machine (``onward artifacts``) find it by the same rule, here. With a
PostgreSQL store the workspaces live in the database instead
(:mod:`onward.activities.tools.stored_files`, ``TranscriptStore.files``).
"""

from __future__ import annotations

import errno
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from onward.activities.tools.workspace import LEDGER_DIR, resolve_path
from onward.contracts import Artifact

__all__ = ["RUNS_DIR", "list_artifacts", "read_artifact", "workspace_dir", "workspace_root"]

RUNS_DIR = "runs"
"""Per-run workspaces live in ``<workspace root>/runs/``; files of runs begun before
per-run workspaces stay at the root itself."""

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_HASH_CHARS = 12


def workspace_root(environ: Mapping[str, str]) -> Path:
    """The workspace root a worker with this environment uses (``ONWARD_WORKSPACE``)."""
    # Imported here: the plugin imports the activities, which import this module.
    from onward.plugin import DEFAULT_WORKSPACE

    return Path(environ.get("ONWARD_WORKSPACE") or DEFAULT_WORKSPACE).resolve()


def workspace_dir(root: Path, key: str) -> Path:
    """The workspace of the run keyed ``key`` (its workflow id) under ``root``.

    A workflow id may hold any character, a file name may not: an id that is
    not a plain name gets a readable part and a hash, so two ids never share
    a directory.
    """
    if _SAFE.fullmatch(key) and ".." not in key:
        name = key
    else:
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._-")[:60] or "run"
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:_HASH_CHARS]
        name = f"{readable}-{digest}"
    return root / RUNS_DIR / name


def list_artifacts(directory: Path) -> list[Artifact]:
    """The files under ``directory``, sorted by path; none when it does not exist.

    Onward's own bookkeeping (``write_file``'s ledger) is not an artifact;
    symlinks are left out, so a listing never reads outside the workspace.
    """
    if not directory.is_dir():
        return []
    found: list[Artifact] = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if relative.parts[0] == LEDGER_DIR or path.is_symlink() or not path.is_file():
            continue
        if any(part.is_symlink() for part in path.parents if part.is_relative_to(directory)):
            continue
        found.append(
            Artifact(path=relative.as_posix(), size=path.stat().st_size, sha256=_sha256(path))
        )
    return found


def read_artifact(directory: Path, path: str) -> bytes:
    """The bytes of the artifact ``path`` (relative) in ``directory``.

    Raises:
        WorkspaceError: ``path`` leaves the workspace or names its bookkeeping.
        FileNotFoundError: no such file, also none the system could name (too long).
    """
    target = resolve_path(directory.resolve(), path)
    try:
        if target.is_file():
            return target.read_bytes()
    except OSError as err:
        # is_file() passes on "no such file" but not a name over the system's limits.
        if err.errno != errno.ENAMETOOLONG:
            raise
    raise FileNotFoundError(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
