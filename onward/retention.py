"""Store retention: delete what the store keeps for runs that are over and old.

Temporal drops a closed run's history after the namespace's retention period;
the transcript store (messages, step records, tool-cache entries and, on
PostgreSQL, run workspaces) keeps its part until :func:`prune_store` (``onward
prune-store --older-than 30d``) deletes it. Something is deleted only when
nothing was written to it for ``older_than`` and no running workflow may
still need it: its run, the run's root as Temporal knows it and, for a run
Temporal has already dropped, the parents its id names (a sub-agent's
``<parent>.delegate-...``, a message run's session ``<session>-m<N>``: an open
session's next message reads its conversation from the last message's
transcript). An entry whose id names no run
(``sha256-...``: a tool set's specs, which runs with those tools share and
read on a worker that has not seen them, or the transcript of a workflow id
that is no usable file name) is kept.

With the local directory store, run workspaces are directories beside the
workers (``ONWARD_WORKSPACE``): given ``workspace_root``, an old one goes
unless its run is needed as above, or (a directory name may hide its run's id)
a running workflow or its root maps to it.

Runs are looked up in the client's namespace: a store shared by several
namespaces must not be pruned from one of them (their runs look gone).
Memory (``remember``) is kept, and large payloads (``ONWARD_PAYLOADS``) are
referenced by histories: neither is touched here.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import NamespaceState
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import RPCError, RPCStatusCode

from onward import sessions
from onward.artifacts import RUNS_DIR, workspace_dir
from onward.connection import read
from onward.errors import OnwardError, RunNotFound, SettingsError, StoreError
from onward.store import TranscriptStore
from onward.store.base import PrunableBackend
from onward.store.local import last_write, stale_directories

if TYPE_CHECKING:
    from onward.client import OnwardClient

__all__ = ["KeptItem", "PruneInterrupted", "PruneReport", "prune_store"]

TOOL_CACHE_PREFIX = "tool-cache."
"""Tool-cache entries (:func:`onward.tool_cache.cache_key`) belong to no run: age alone counts."""
HASHED_PREFIX = "sha256-"
"""Tool specs (:func:`onward.contracts.tool_specs_key`) and transcripts whose id hides
their workflow id (:func:`onward.store.transcript_id`): kept."""
RUNNING = 'ExecutionStatus = "Running"'
"""The visibility query of every running workflow of the namespace."""
DELEGATE_MARK = ".delegate-"
"""What a sub-agent's id adds to its parent's (:func:`onward.delegation.child_id`)."""
NAMES_NO_RUN = "its id names no run (a tool set's specs, or a hashed workflow id)"


class KeptItem(BaseModel):
    """Something old enough to prune that was kept, and why."""

    id: str
    kind: Literal["transcript", "workspace"]
    reason: str


class PruneReport(BaseModel):
    """What :func:`prune_store` deleted (or, with ``dry_run``, would delete) and kept."""

    older_than_s: float
    namespace: str = Field(description="where runs were looked up")
    retention_s: float | None = Field(
        default=None,
        description=(
            "the namespace's retention: with a shorter older_than, closed runs that "
            "Temporal still keeps lose what the store had of them (their step logs)"
        ),
    )
    dry_run: bool = False
    transcripts: list[str] = Field(default_factory=list, description="deleted (tool cache too)")
    workspaces: list[str] = Field(
        default_factory=list, description="deleted (in PostgreSQL, or directories)"
    )
    kept: list[KeptItem] = Field(default_factory=list, description="old, but still needed")


def _ancestors(workflow_id: str) -> list[str]:
    """The runs an id names as its own parents: a sub-agent's parent (``<parent>.delegate-
    <step>-<call>``), theirs, and a message run's session (``<session>-m<N>``)."""
    found = []
    while DELEGATE_MARK in workflow_id:
        workflow_id = workflow_id.rpartition(DELEGATE_MARK)[0]
        found.append(workflow_id)
    session = sessions.session_of(workflow_id)
    return [*found, *([session] if session else [])]


class PruneInterrupted(OnwardError):
    """Temporal or the store failed part way: what was deleted by then is in ``report``.

    Attributes:
        report: what was deleted (and kept) before the failure, which is the cause.
    """

    def __init__(self, report: PruneReport, cause: OnwardError) -> None:
        deleted = [*report.transcripts, *report.workspaces]
        super().__init__(
            f"prune-store stopped after deleting {len(report.transcripts)} transcript(s) "
            f"and {len(report.workspaces)} workspace(s) ({', '.join(deleted)}): {cause}"
        )
        self.report = report


class _Owners:
    """Why a workflow id's data must stay (None: it may go); Temporal asked once an id."""

    def __init__(self, client: OnwardClient) -> None:
        self.client = client
        self._reasons: dict[str, str | None] = {}
        self._described: dict[str, tuple[bool, str | None]] = {}

    async def _is_running(self, workflow_id: str) -> tuple[bool, str | None]:
        """Whether it runs, and its root's id (None: not known to Temporal, or its own).

        Asked once per id: the messages of one session, the sub-agents of one run,
        all name the same parent.
        """
        if workflow_id not in self._described:
            try:
                info = await self.client.info(workflow_id)
            except RunNotFound:
                self._described[workflow_id] = (False, None)
            else:
                root = info.root_id if info.root_id not in (None, workflow_id) else None
                self._described[workflow_id] = (info.running, root)
        return self._described[workflow_id]

    async def reason(self, workflow_id: str) -> str | None:
        if workflow_id not in self._reasons:
            self._reasons[workflow_id] = await self._reason(workflow_id)
        return self._reasons[workflow_id]

    async def _reason(self, workflow_id: str) -> str | None:
        running, root = await self._is_running(workflow_id)
        if running:
            return f"{workflow_id} is running"
        # The root from Temporal; the parents the id names, for a run Temporal dropped.
        owners = dict.fromkeys([*([root] if root else []), *_ancestors(workflow_id)])
        for owner in owners:
            if (await self._is_running(owner))[0]:
                return f"{owner}, whose {workflow_id} it is, is running"
        return None


def _owner(transcript: str) -> str | None:
    """The workflow id a transcript belongs to; "" for a tool-cache entry (none)."""
    if transcript.startswith(TOOL_CACHE_PREFIX):
        return ""
    workflow_id, at, _first_run = transcript.rpartition("@")
    if transcript.startswith(HASHED_PREFIX) or not at or not workflow_id:
        return None
    return workflow_id


async def prune_store(
    client: OnwardClient,
    store: TranscriptStore,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    workspace_root: Path | None = None,
) -> PruneReport:
    """Delete transcripts, tool-cache entries and workspaces that are over and old.

    ``older_than``: nothing written for this long (the store's clock); at least a
    second. With ``dry_run`` nothing is deleted: the report lists what would be.
    ``workspace_root``: the workers' ``ONWARD_WORKSPACE``, whose run directories
    are pruned too (workspaces kept in the store, on PostgreSQL, always are).

    Raises:
        ValueError: ``older_than`` is under a second.
        StoreError: the store cannot be pruned (or reached).
        ConnectionFailed: Temporal cannot be reached (nothing is deleted unasked).
        PruneInterrupted: either failed after something was deleted (it says what).
    """
    if older_than < timedelta(seconds=1):
        raise ValueError("older_than: at least a second")
    backend = store.backend
    if not isinstance(backend, PrunableBackend):
        raise StoreError(f"this store ({type(backend).__name__}) cannot be pruned")
    # Every run of another namespace looks gone from this one: a namespace that is
    # not there (a typo) must not prune the store as if all its runs were over.
    retention = await _retention(client)
    report = PruneReport(
        older_than_s=older_than.total_seconds(),
        namespace=client.temporal.namespace,
        retention_s=retention,
        dry_run=dry_run,
    )
    try:
        await _prune(client, backend, report, older_than, dry_run, workspace_root)
    except OnwardError as err:
        if (report.transcripts or report.workspaces) and not dry_run:
            raise PruneInterrupted(report, err) from err
        raise
    return report


async def _prune(
    client: OnwardClient,
    backend: PrunableBackend,
    report: PruneReport,
    older_than: timedelta,
    dry_run: bool,
    workspace_root: Path | None,
) -> None:
    owners = _Owners(client)
    for transcript in await backend.stale_transcripts(older_than):
        owner = _owner(transcript)
        if owner is None:
            reason: str | None = NAMES_NO_RUN
        else:
            reason = await owners.reason(owner) if owner else None
        if reason is not None:
            report.kept.append(KeptItem(id=transcript, kind="transcript", reason=reason))
        elif dry_run or await backend.delete_transcript(transcript, older_than):
            report.transcripts.append(transcript)
    for workspace in await backend.stale_workspaces(older_than):
        reason = await owners.reason(workspace)  # a workspace is named by its root run
        if reason is not None:
            report.kept.append(KeptItem(id=workspace, kind="workspace", reason=reason))
        elif dry_run or await backend.delete_workspace(workspace, older_than):
            report.workspaces.append(workspace)
    if workspace_root is not None:
        await _prune_directories(owners, report, workspace_root, older_than, dry_run)


async def _retention(client: OnwardClient) -> float | None:
    """The namespace's retention in seconds (None: not set).

    Raises:
        SettingsError: the server has no such namespace.
    """
    namespace = client.temporal.namespace
    request = DescribeNamespaceRequest(namespace=namespace)
    with client._translated():
        try:
            answer = await read(client.temporal.workflow_service.describe_namespace, request)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            raise SettingsError(
                f"namespace {namespace!r}: the server has no such namespace; prune-store looks "
                "runs up in the namespace of the workers that use this store"
            ) from err
    if answer.namespace_info.state != NamespaceState.NAMESPACE_STATE_REGISTERED:
        state = NamespaceState.Name(answer.namespace_info.state)
        raise SettingsError(f"namespace {namespace!r} is {state}: its runs cannot be looked up")
    ttl = answer.config.workflow_execution_retention_ttl
    return (
        ttl.ToTimedelta().total_seconds()
        if answer.config.HasField("workflow_execution_retention_ttl")
        else None
    )


async def _prune_directories(
    owners: _Owners, report: PruneReport, root: Path, older_than: timedelta, dry_run: bool
) -> None:
    """Delete the run workspaces under ``root`` that are over and old.

    A workspace is its root run's (a session's for its messages, a parent's for
    its sub-agents). A directory named by a plain workflow id is checked as a
    transcript's run is (Temporal's answer is current); a name that may hide its
    id is matched against every running workflow and its root (visibility may
    lag a run that started a moment ago: those are the directories written a
    moment ago, which are not old).
    """
    cutoff = time.time() - older_than.total_seconds()
    stale = await asyncio.to_thread(stale_directories, root / RUNS_DIR, cutoff)
    if not stale:
        return
    running: dict[Path, str] = {}
    async for execution in owners.client.temporal.list_workflows(RUNNING):
        for owner in (execution.id, execution.root_id):
            if owner:
                running.setdefault(workspace_dir(root, owner), owner)
    for directory in stale:
        owner = running.get(directory)
        reason: str | None = None if owner is None else f"{owner} is running"
        if reason is None and workspace_dir(root, directory.name) == directory:
            reason = await owners.reason(directory.name)
        if reason is not None:
            report.kept.append(KeptItem(id=str(directory), kind="workspace", reason=reason))
            continue
        try:
            if dry_run or await asyncio.to_thread(_delete_directory, directory, cutoff):
                report.workspaces.append(str(directory))
        except StoreError as err:  # one directory that will not go stops no other
            report.kept.append(KeptItem(id=str(directory), kind="workspace", reason=str(err)))


def _delete_directory(directory: Path, cutoff: float) -> bool:
    """Remove ``directory`` unless something under it was written since ``cutoff``."""
    try:
        if last_write(directory) >= cutoff:
            return False
        shutil.rmtree(directory)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise StoreError(f"cannot delete {directory}: {err.strerror}") from err
    return True
