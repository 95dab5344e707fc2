"""The tool activities: what a worker offers a run, and one tool call."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError
from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from onward.activities.deadline import refuse_if_late
from onward.activities.heartbeat import AttemptAbandoned, heartbeating
from onward.activities.telemetry import ActivityTelemetry
from onward.activities.tools.context import UncachedResult
from onward.activities.tools.registry import RESULT_CAP_CHARS, Tool, ToolContext, ToolRegistry
from onward.activities.tools.stored_files import list_stored, read_stored, write_stored
from onward.activities.tools.workspace import (
    ListFilesArgs,
    ReadFileArgs,
    WriteFileArgs,
    list_files,
    read_file,
    write_file,
)
from onward.artifacts import list_artifacts, workspace_dir
from onward.contracts import (
    RUN_VERSION,
    Artifact,
    ArtifactsRequest,
    ToolOutcome,
    ToolRequest,
    WorkerDescription,
    WorkerDescriptionRequest,
    provider_of,
)
from onward.conversation import truncate
from onward.encryption import EncryptionError
from onward.errors import StoreError, ToolError, ToolRetryableError, format_validation_error
from onward.memory import Memory
from onward.store import FileBackend, TranscriptStore
from onward.tool_cache import ToolCache

__all__ = ["RESULT_CAP_CHARS", "ToolActivities"]


class ToolActivities:
    """Activities over one :class:`ToolRegistry` and workspace, created by ``OnwardPlugin``.

    Args:
        registry: the tools offered.
        workspace: the directory the file tools are confined to.
        search_attributes: the Onward search attributes the server has.
        telemetry: GenAI spans of tool calls.
        providers: the model providers of this worker, for run input checks.
        unusable_providers: those of them that would refuse every call, with why
            (a key not set), for checks of a schedule's input.
        model_max_attempts: attempts of one model call; runs build their
            model retry policy from it (see ``WorkerDescription``).
        context_windows: a model's context window (tokens) or None, for
            ``describe_worker`` (the worker's pricing table knows them).
        tool_cache: where cacheable tools' results are kept; None: no caching.
        store: the worker's store: memory (``remember``/``recall``) and, when it
            keeps files (PostgreSQL), the runs' workspaces instead of ``workspace``.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        workspace: Path,
        search_attributes: Sequence[str] = (),
        telemetry: ActivityTelemetry | None = None,
        providers: Sequence[str] = (),
        unusable_providers: Mapping[str, str] | None = None,
        model_max_attempts: int | None = None,
        context_windows: Callable[[str], int | None] | None = None,
        tool_cache: ToolCache | None = None,
        store: TranscriptStore | None = None,
    ) -> None:
        self._registry = registry
        self._workspace = workspace
        self._search_attributes = list(search_attributes)
        self._sealed = False  # set as a worker starts (set_sealed)
        self._providers = list(providers)
        self._unusable_providers = dict(unusable_providers or {})
        self._model_max_attempts = model_max_attempts
        self._context_windows = context_windows
        self._telemetry = telemetry or ActivityTelemetry()
        self._tool_cache = tool_cache
        self._store = store

    @property
    def registry(self) -> ToolRegistry:
        """The tools offered."""
        return self._registry

    def set_search_attributes(self, names: Sequence[str]) -> None:
        """The search attributes found on the server once the worker connected."""
        self._search_attributes = list(names)

    def set_sealed(self, sealed: bool) -> None:
        """Whether the worker's client encodes payloads (a codec: encryption)."""
        self._sealed = sealed

    def workspace_of(self, key: str | None) -> Path:
        """The workspace of the run keyed ``key``; the root itself for runs without a key."""
        return self._workspace if key is None else workspace_dir(self._workspace, key)

    @property
    def files(self) -> FileBackend | None:
        """Where runs' workspaces live when the store keeps them; None: under ``workspace``."""
        return self._store.files if self._store is not None else None

    @activity.defn(name="list_artifacts")
    async def list_artifacts(self, request: ArtifactsRequest) -> list[Artifact]:
        """The files in a run's workspace, with sizes and sha256 (the run's artifacts)."""
        if self.files is not None:
            return await self.files.list_files(request.workspace)
        return await asyncio.to_thread(list_artifacts, self.workspace_of(request.workspace))

    @activity.defn(name="describe_worker")
    async def describe_worker(self, request: WorkerDescriptionRequest) -> WorkerDescription:
        """Specs of the tools a run asked for (all built-ins when it named none)."""
        names = self._registry.builtin_names() if request.tools is None else request.tools
        found: list[Tool] = []
        unknown: list[str] = []
        for name in names:
            item = self._registry.get(name)
            if item is None:
                unknown.append(name)
            else:
                found.append(item)
        windows = self._context_windows
        fallbacks = request.fallback_models
        return WorkerDescription(
            fallback_context_windows=(
                [windows(model) for model in fallbacks] if windows and fallbacks else None
            ),
            tools=[item.spec() for item in found],
            unknown=unknown,
            available=self._registry.names(),
            search_attributes=self._search_attributes,
            providers=self._providers,
            unusable_providers={  # only the asked-for model's: runs carry this in history
                name: reason
                for name, reason in self._unusable_providers.items()
                if request.model is not None and name == provider_of(request.model)
            },
            model_max_attempts=self._model_max_attempts,
            context_window=(
                self._context_windows(request.model)
                if self._context_windows is not None and request.model is not None
                else None
            ),
            tools_by_key=self._store is not None,
            steps_from_messages=self._store is not None,
            sealed=self._sealed,
            run_version=RUN_VERSION,
        )

    @activity.defn(name="execute_tool")
    async def execute_tool(self, request: ToolRequest) -> ToolOutcome:
        """Run one tool call. Failures the model should hear about come back as outcomes."""
        refuse_if_late(request.not_after, f"tool call {request.name}")
        with self._telemetry.tool(request) as outcomes:
            outcome = await self._execute(request)
            outcomes.append(outcome)
        # Echoed so a reader of the history matches the outcome to its call by typed
        # data, even for a local activity, whose marker records no input.
        return outcome.model_copy(update={"call_id": request.call_id, "step": request.step})

    @activity.defn(dynamic=True)
    async def execute_local_tool(self, args: Sequence[RawValue]) -> ToolOutcome:
        """``execute_tool`` for a local tool call, under the type the workflow named it by.

        The Web UI labels a local activity by its type alone, so the workflow
        types each local call by its summary (``calculator(2+2)``; on a worker that
        encrypts, ``calculator(…)``); any activity type this worker has no activity
        for lands here.
        """
        request = activity.payload_converter().from_payload(args[0].payload, ToolRequest)
        return await self.execute_tool(request)

    async def _execute(self, request: ToolRequest) -> ToolOutcome:
        item = self._registry.get(request.name)
        if item is None:
            known = ", ".join(self._registry.names())
            return ToolOutcome(error=f"unknown tool {request.name!r} (this worker has: {known})")
        if set(request.arguments) == {"_raw"}:
            # A provider could not parse the model's arguments as JSON (see providers).
            raw = str(request.arguments["_raw"])[:200]
            return ToolOutcome(
                error=f"the arguments were not valid JSON: {raw!r}; "
                "send one JSON object matching the tool's schema"
            )
        try:
            args = item.args_model.model_validate(request.arguments)
        except ValidationError as err:
            return ToolOutcome(error=format_validation_error(item.name, err))
        ttl_s = request.cache_ttl_s or item.cache_ttl_s
        if ttl_s is not None and self._tool_cache is not None:
            hit = await self._cached(request, ttl_s, _scope(item, request))
            if hit is not None:
                return hit
        outcome, keep = await self._run(item, args, request)
        if keep and ttl_s is not None and self._tool_cache is not None and outcome.error is None:
            try:
                await self._tool_cache.put(
                    request.name, request.arguments, request.tenant, outcome, _scope(item, request)
                )
            except StoreError as err:
                activity.logger.warning("tool %s: result not cached: %s", item.name, err)
        return outcome

    async def _cached(
        self, request: ToolRequest, ttl_s: float, scope: dict[str, str]
    ) -> ToolOutcome | None:
        """A kept result of an identical call, or None (a store failure is a miss).

        So is an entry this worker cannot open: one sealed with a key dropped
        since (rotated out), or read without keys. The call runs, and its
        result replaces the entry.
        """
        assert self._tool_cache is not None
        try:
            return await self._tool_cache.get(
                request.name, request.arguments, request.tenant, ttl_s, scope
            )
        except (StoreError, EncryptionError) as err:
            activity.logger.warning("tool %s: cache not read: %s", request.name, err)
            return None

    async def _run(
        self, item: Tool, args: object, request: ToolRequest
    ) -> tuple[ToolOutcome, bool]:
        """The call's outcome, and whether the tool-result cache may keep it
        (not an :class:`UncachedResult`)."""
        context = ToolContext(
            idempotency_key=request.idempotency_key,
            call_id=request.call_id,
            workspace=self.workspace_of(request.workspace),
            memory=(
                Memory(self._store, request.tenant, request.memory_scope)
                if self._store is not None and request.memory_scope is not None
                else None
            ),
        )
        try:
            async with heartbeating():
                content = await self._stored_file_call(item, args, request)
                if content is None:
                    content = await _call(item, args, context)
        except AttemptAbandoned:
            raise  # the server has moved on: not the tool's error
        except ToolRetryableError as err:
            # Expected and retried: one log line, no traceback (benign errors are
            # logged by the SDK at DEBUG only).
            activity.logger.warning(
                "tool %s attempt %d failed, retrying: %s", item.name, activity.info().attempt, err
            )
            raise ApplicationError(
                str(err), type="ToolRetryableError", category=ApplicationErrorCategory.BENIGN
            ) from err
        except ToolError as err:
            return ToolOutcome(error=str(err)), False
        except StoreError as err:
            # The store is down or refused: worth a retry, like a crashed worker.
            raise ApplicationError(str(err), type="StoreError") from err
        except Exception as err:  # noqa: BLE001 - a tool's bug is reported to the model
            activity.logger.warning("tool %s raised", item.name, exc_info=True)
            return ToolOutcome(error=f"{type(err).__name__}: {err}"), False
        text, cut = truncate(content, RESULT_CAP_CHARS)
        return ToolOutcome(content=text, truncated=cut), not isinstance(content, UncachedResult)

    async def _stored_file_call(self, item: Tool, args: object, request: ToolRequest) -> str | None:
        """A file tool's call on the store's workspace; None: not one (or files are on disk).

        Runs begun before per-run workspaces (no ``workspace``) keep the worker's root.
        """
        files = self.files
        if files is None or request.workspace is None:
            return None
        if item is write_file and isinstance(args, WriteFileArgs):
            return await write_stored(files, request.workspace, args, request.idempotency_key)
        if item is read_file and isinstance(args, ReadFileArgs):
            return await read_stored(files, request.workspace, args)
        if item is list_files and isinstance(args, ListFilesArgs):
            return await list_stored(files, request.workspace, args)
        return None


def _scope(item: Tool, request: ToolRequest) -> dict[str, str]:
    """What else a call's result depends on, for the tool cache's key.

    A tool that takes a ``ToolContext`` may read its run's workspace and memory:
    the same arguments in another run's workspace (or memory scope) are another call.
    """
    if not item.uses_workspace:
        return {}
    scope = {"workspace": request.workspace, "memory_scope": request.memory_scope}
    return {name: value for name, value in scope.items() if value is not None}


async def _call(item: Tool, args: object, context: ToolContext) -> str:
    """Await an async tool; run a sync one in a thread so it cannot stall the worker."""
    if inspect.iscoroutinefunction(item.fn):
        result = await item.fn(args, context)
    else:
        result = await asyncio.to_thread(item.fn, args, context)
        if inspect.isawaitable(result):
            result = await result
    return result if isinstance(result, str) else str(result)
