"""``OnwardClient``: the typed async client every adapter sits on (the CLI, an HTTP API, your code).

It takes and returns the contract models of :mod:`onward.contracts`, never
prints, never exits, and raises only the :class:`~onward.errors.OnwardError`
tree: Temporal's RPC errors are translated once, here.

    client = await OnwardClient.connect()
    run_id = await client.start({"prompt": "What is 17 * 3 + 4?", "tools": ["calculator"]})
    result = await client.result(run_id)
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    Interceptor,
    RPCTimeoutOrCancelledError,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from onward import schedules
from onward import search_attributes as sa
from onward.activities.tools.stored_files import normalize_path
from onward.artifacts import list_artifacts, read_artifact, workspace_dir, workspace_root
from onward.budget import require_a_limit
from onward.compaction import estimate_tokens
from onward.connection import DATA_CONVERTER, connect, no_poller, read, task_failing
from onward.connection import task_queue as default_task_queue
from onward.contracts import (
    AGENT_WORKFLOW,
    DEFAULT_TASK_QUEUE,
    SESSION_WORKFLOW,
    AgentInput,
    AgentResult,
    AgentState,
    AgentStatus,
    ApprovalDecision,
    ApprovalsDecided,
    Artifact,
    Budget,
    BudgetExtension,
    CancelRequest,
    ConversationRef,
    InputCheck,
    Message,
    SteerRequest,
    StepRecord,
    provider_of,
)
from onward.errors import (
    ArtifactNotFound,
    ConnectionFailed,
    InvalidInput,
    NoWorker,
    OnwardError,
    RequestRejected,
    RunAlreadyExists,
    RunEnded,
    RunNotFound,
    ScheduleNotFound,
    SettingsError,
    StoreError,
    TemporalError,
    UnexpectedResponse,
    UpdateNotTaken,
    WorkspaceError,
    validated,
)
from onward.schedules import ScheduleRow
from onward.session_client import (
    SessionMethods,
    approval_target,
    not_taken,
    with_message_run,
    with_sub_agents,
)
from onward.starter.devserver import followed_address
from onward.starter.follow import (
    QUERY_TIMEOUT,
    FollowEvent,
    Outcome,
    StatusSource,
    final_result,
    follow,
    status_of,
)
from onward.starter.listing import RunPage, RunRow, run_page
from onward.starter.render import static_details, static_summary
from onward.starter.report import Report, aggregate, collect_traces, parse_since
from onward.starter.trace import StepSource, Trace, load_step_log, load_trace
from onward.store import (
    FileBackend,
    TranscriptStore,
    is_postgres,
    open_store,
    store_name,
    store_url,
    transcript_id,
)
from onward.text import counted
from onward.tuning import WORKFLOW_TASK_TIMEOUT
from onward.workflows import AgentWorkflow, InputCheckWorkflow

if TYPE_CHECKING:  # imported when used: the replayer brings the workers' modules
    from onward.replay import Replayed, RunExport

__all__ = ["OnwardClient", "RunInfo", "StepLog", "new_run_id"]

log = logging.getLogger("onward.client")

UPDATE_TIMEOUT = timedelta(seconds=10)
"""How long an update (``extend_budget``) may wait for a worker to answer it."""
RUN_ENDED_MESSAGES = ("already completed", "aborted by closing workflow")
"""What Temporal's NOT_FOUND says of a run that has ended: a signal or update to a closed
run, and an update the server had taken in as the run closed (before a worker read it)."""
POLLER_SEEN_WITHIN = timedelta(seconds=75)
"""A worker long-polls for up to 60 s and then polls again: one not seen for longer is gone."""

INPUT_CHECK_TIMEOUT = timedelta(seconds=10)
"""How long :meth:`OnwardClient.check_input` waits for a worker's answer. A worker takes
well under a second; one of an Onward without the check never answers."""

AgentHandle = WorkflowHandle[AgentWorkflow, AgentResult]


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a directory (a local stat, as listing artifacts does)."""
    return path.is_dir()


def new_run_id(prefix: str = "agent") -> str:
    """A fresh run id, short enough to type: ``agent-1f3a9c0b2d4e``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


_NOT_FORKED = frozenset({"prompt", "conversation", "carry", "delegation_depth", "workspace"})
"""Fields of a run's input a fork does not take: it has its own prompt and conversation,
and is a run of its own (not a continuation, not a sub-agent in another's workspace)."""


IN_FLIGHT_LIMIT = 1000
"""Runs :meth:`OnwardClient.in_flight` lists at most unless told otherwise."""


def fork_memo(run_id: str, at_step: int) -> dict[str, Any]:
    """The memo of a run forked from ``run_id`` at ``at_step`` (see :meth:`OnwardClient.fork`)."""
    return {"forked_from": run_id, "forked_at_step": at_step}


@dataclass(frozen=True)
class _Recorded:
    """A run as it recorded itself: what ``export`` writes and ``fork`` goes on from."""

    info: RunInfo
    histories: list[WorkflowHistory]
    """Each run of its chain, first first."""
    input: Any
    """The input its chain's first run was started with (decoded JSON)."""
    log: StepLog
    transcript: str
    messages: list[Message] | None
    messages_missing: str | None


@dataclass(frozen=True)
class RunInfo:
    """Where a run is: its task queue, whether it still runs, when it started."""

    run_id: str
    temporal_run_id: str
    """Temporal's id of the latest execution (``run_id`` is the workflow id people type)."""
    task_queue: str
    running: bool
    start_time: datetime
    # -- the tenant tag, for the HTTP API's ownership checks --------------------------
    tenant: str | None = None
    """The run's ``OnwardTenant`` search attribute (None: untagged, or not published yet)."""
    workflow_type: str = AGENT_WORKFLOW
    """``AgentWorkflow`` for a run, ``SessionWorkflow`` for a session."""
    root_id: str | None = None
    """The workflow id of the run's root (a sub-agent's or a session message's is
    not its own); None: the server did not say."""

    @property
    def workspace_id(self) -> str:
        """Whose workspace the run's files are in: a child writes into its root's."""
        return self.root_id or self.run_id


@dataclass(frozen=True)
class StepLog:
    """A run's finished steps, where they came from, and whether a worker failed to answer."""

    records: list[StepRecord]
    source: StepSource
    unanswered: bool
    missing: str | None = None
    """Which steps are not in ``records`` and why (the transcript store cannot be read,
    or is not the workers'); None: every step is."""


def _unanswered_update(
    run_id: str, update: str, repeatable: bool = False
) -> contextlib.AbstractContextManager[None]:
    """An update of ``run_id`` no worker answered in time as UpdateNotTaken (see
    :func:`~onward.session_client.not_taken`): a second decision, maybe the other
    way, must not follow at once. ``repeatable``: the same update sent again is
    the same one (:func:`decision_update_id`), answered once."""
    then = (
        "the same decision sent again (the same call_id and note) is that one, answered once"
        if repeatable
        else f"check `onward status {run_id}` before sending it again"
    )
    return not_taken(
        lambda: UpdateNotTaken(
            f"no worker answered the {update} of {run_id} in time; the server keeps it and "
            f"a worker that takes the run up may still apply it: {then}",
            repeatable=repeatable,
        )
    )


def decision_update_id(verdict: str, decision: ApprovalDecision) -> str | None:
    """The update id of an approval decision that names its call; None for one that
    decides whatever waits (it differs each time it is sent).

    Temporal answers an update whose id the run has seen with the first one's
    outcome, so the same decision sent again (after a 503, or an answer lost on
    the way) is answered as the first, not refused as "no longer waiting", and
    never applied twice. Another note is another decision: refused if the first
    was taken ("already approved").
    """
    if decision.call_id is None:
        return None
    note = hashlib.sha256((decision.note or "").encode()).hexdigest()[:16]
    return f"{verdict}:{decision.call_id}:{note}"


def _attributes_unusable(err: RPCError) -> bool:
    """Whether the server refused a start's search attributes (not the start itself)."""
    return err.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message


def _visibility_message(err: RPCError) -> str:
    if "search attribute" in err.message:
        return (
            f"{err.message}; this server has no Onward search attributes yet: "
            "a worker registers them when it starts (onward worker)"
        )
    return f"Temporal rejected the request: {err.message}"


class OnwardClient(SessionMethods):
    """A typed async client for Onward runs; safe to keep for the life of an app.

    Every method raises :class:`~onward.errors.OnwardError` subclasses only:
    :class:`~onward.errors.RunNotFound` for an unknown id,
    :class:`~onward.errors.ConnectionFailed` when Temporal is gone, and so on.
    """

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = DEFAULT_TASK_QUEUE,
        store: TranscriptStore | str | None = None,
    ) -> None:
        """Wrap a connected Temporal client (it must use ``onward.connection.DATA_CONVERTER``).

        ``store`` is the workers' store, or its URL (opened when first needed): with
        a PostgreSQL store, artifacts are read from it instead of a workspace
        directory on this machine. None: artifacts are read from disk.
        """
        self._client = client
        self.task_queue = task_queue
        self._store = store if isinstance(store, TranscriptStore) else None
        self._store_url = store if isinstance(store, str) else None
        self._opened_store = False
        self._registered: frozenset[str] = frozenset()
        self._registered_listed_at = -math.inf

    @classmethod
    async def connect(
        cls,
        address: str | None = None,
        namespace: str | None = None,
        task_queue: str | None = None,
        *,
        interceptors: Sequence[Interceptor] = (),
        environ: Mapping[str, str] | None = None,
        store: TranscriptStore | str | None = None,
    ) -> OnwardClient:
        """Connect to Temporal: envconfig's settings, ``address`` and ``namespace`` over them.

        Without ``address``, ``TEMPORAL_ADDRESS`` or a profile's, the server ``onward
        dev`` started from this ``ONWARD_HOME`` (any port), as the CLI's commands do;
        without ``task_queue``, ``ONWARD_TASK_QUEUE`` or ``onward``, as they do too.

        ``store`` defaults to ``ONWARD_STORE`` when it is a PostgreSQL URL (the
        database is reached when artifacts are first asked for).

        Raises:
            ConnectionFailed: the server cannot be reached, or the settings are bad.
        """
        if store is None:
            url = store_url(os.environ if environ is None else environ)
            store = url if is_postgres(url) else None
        overrides: dict[str, Any] = {"interceptors": list(interceptors)}
        address = address or followed_address(environ)
        if address:
            overrides["target_host"] = address
        if namespace:
            overrides["namespace"] = namespace
        try:
            client = await connect(environ, **overrides)
        except ValueError as err:  # a malformed profile file or address
            raise ConnectionFailed(f"bad Temporal connection settings: {err}", address) from err
        return cls(client, task_queue=task_queue or default_task_queue(environ), store=store)

    @property
    def temporal(self) -> Client:
        """The underlying Temporal client."""
        return self._client

    @property
    def address(self) -> str:
        """The ``host:port`` of the Temporal frontend."""
        return self._client.service_client.config.target_host

    @property
    def namespace(self) -> str:
        """The Temporal namespace."""
        return self._client.namespace

    @contextlib.contextmanager
    def _translated(self, run_id: str | None = None) -> Iterator[None]:
        """Temporal's errors as Onward's."""
        try:
            yield
        except RPCError as err:
            raise self._rpc_error(err, run_id) from err
        except (WorkflowQueryFailedError, RPCTimeoutOrCancelledError) as err:
            raise NoWorker(f"no worker answered about {run_id}: {err}") from err
        except ValidationError as err:
            raise UnexpectedResponse(
                f"an answer about {run_id} has an unexpected shape: {err}"
            ) from err

    def _rpc_error(self, err: RPCError, run_id: str | None) -> OnwardError:
        if err.status == RPCStatusCode.NOT_FOUND and err.message.startswith("Namespace "):
            return SettingsError(
                f"the Temporal server at {self.address} has no namespace {self.namespace!r} "
                "(TEMPORAL_NAMESPACE, --namespace or the profile's namespace)"
            )
        if err.status == RPCStatusCode.NOT_FOUND and run_id:
            # The run had ended, or ended while the request waited for it (an update
            # the server had taken in as the run closed: "workflow update was aborted
            # by closing workflow").
            if any(text in err.message for text in RUN_ENDED_MESSAGES):
                return RunEnded(run_id)
            return RunNotFound(run_id)
        if err.status == RPCStatusCode.UNAVAILABLE:
            return ConnectionFailed(
                f"lost connection to Temporal at {self.address} ({err.message})", self.address
            )
        if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED) and run_id:
            return NoWorker(f"no worker answered about {run_id} in time")
        if task_failing(err) and run_id:
            return NoWorker(
                f"the workflow task of {run_id} keeps failing on its worker, which cannot "
                "go on with the run: see the worker's log"
            )
        if no_poller(err) and run_id:
            return NoWorker(
                f"no worker has polled the task queue of {run_id} for a while, so nothing "
                "was sent; start one with `onward worker`"
            )
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            return TemporalError(_visibility_message(err), err.status.name)
        return TemporalError(f"Temporal error ({err.status.name}): {err.message}", err.status.name)

    def _handle(self, run_id: str) -> AgentHandle:
        return self._client.get_workflow_handle_for(AgentWorkflow.run, run_id)

    def _run_handle(self, run_id: str, execution: str) -> AgentHandle:
        """One execution of run ``run_id`` (a run continued as new has several)."""
        return self._client.get_workflow_handle_for(AgentWorkflow.run, run_id, run_id=execution)

    # -- workers ----------------------------------------------------------------------

    async def has_worker(self, task_queue: str | None = None) -> bool:
        """Whether a worker polls ``task_queue`` (default: this client's) right now."""
        request = DescribeTaskQueueRequest(
            namespace=self.namespace,
            task_queue=TaskQueue(
                name=task_queue or self.task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL
            ),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        with self._translated():
            response = await read(self._client.workflow_service.describe_task_queue, request)
        seen_after = datetime.now(UTC) - POLLER_SEEN_WITHIN
        return any(
            not poller.HasField("last_access_time")
            or poller.last_access_time.ToDatetime(tzinfo=UTC) >= seen_after
            for poller in response.pollers
        )

    async def info(self, run_id: str) -> RunInfo:
        """Where the run is and whether it still runs.

        Raises:
            RunNotFound: no run has this id.
        """
        with self._translated(run_id):
            description = await self._handle(run_id).describe()
        return RunInfo(
            run_id=run_id,
            temporal_run_id=description.run_id,
            task_queue=description.task_queue,
            running=description.status in (None, WorkflowExecutionStatus.RUNNING),
            start_time=description.start_time,
            tenant=description.typed_search_attributes.get(sa.TENANT),
            workflow_type=description.workflow_type,
            root_id=description.root_id,
        )

    async def _require_worker(self, run_id: str, info: RunInfo | None = None) -> RunInfo:
        """The run's info (``info`` when the caller has read it) once a worker polls its queue.

        Raises:
            NoWorker: none does.
        """
        info = info or await self.info(run_id)
        task_queue = info.task_queue
        if not await self.has_worker(task_queue):
            raise NoWorker(
                f"no worker is polling task queue {task_queue}; start one with `onward worker`",
                task_queue,
            )
        return info

    # -- starting and waiting -----------------------------------------------------------

    async def start(
        self,
        input: AgentInput | Mapping[str, Any],
        id: str | None = None,
        *,
        tag_tenant: bool = False,
        memo: Mapping[str, Any] | None = None,
        once: bool = False,
    ) -> str:
        """Start a run on this client's task queue; return its id (the workflow id).

        The run starts with the first values of Onward's search attributes the
        server has (``OnwardStatus`` running, its model, counters at 0, its
        tenant), so it is listed from the start and the run itself does not
        upsert them again. ``tag_tenant`` sets ``OnwardTenant`` even when this
        client could not see the server's attributes; the server must have it
        (a worker, or ``onward api``, registers it). ``memo`` is the run's
        Temporal memo (kept when it continues as new; see :meth:`memo`).
        ``once``: ``id`` starts no second run, even after the first has ended
        (Temporal's default lets a closed run's id start a new one).

        Raises:
            InvalidInput: ``input`` is not a valid :class:`~onward.contracts.AgentInput`,
                or ``id`` is blank.
            RunAlreadyExists: a run with ``id`` is running (or, with ``once``, has run).
        """
        agent = validated(AgentInput, input)
        if id is not None and not id.strip():
            raise InvalidInput("id: must not be blank (leave it out for a new one)")
        run_id = id or new_run_id()
        registered = await self._registered_attributes()
        if tag_tenant:
            registered |= {sa.TENANT.name}
        await self._start_workflow(
            AgentWorkflow.run,
            agent,
            run_id,
            None,
            attributes=sa.at_start(agent.model, agent.tenant, registered),
            static_summary=static_summary(agent),
            static_details=static_details(agent),
            # Taken by a worker of this client's process, if any, at once.
            request_eager_start=True,
            memo=memo,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE
            if once
            else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        return run_id

    async def memo(self, run_id: str) -> dict[str, Any]:
        """The memo the run (or session) was started with.

        Raises:
            RunNotFound: no run has this id.
        """
        with self._translated(run_id):
            description = await self._handle(run_id).describe()
            return dict(await description.memo())

    async def _registered_attributes(self) -> set[str]:
        """Onward's search attributes the server has.

        Listed once; listed again after a minute while there were none (no worker
        has registered them yet, or this client may not list them).
        """
        now = time.monotonic()
        if not self._registered and now - self._registered_listed_at > 60:
            self._registered_listed_at = now
            try:
                listed = await read(
                    self._client.operator_service.list_search_attributes,
                    ListSearchAttributesRequest(namespace=self._client.namespace),
                )
            except RPCError:
                return set()
            self._registered = frozenset(
                key.name for key in sa.ALL if key.name in listed.custom_attributes
            )
        return set(self._registered)

    async def _start_workflow(
        self,
        run: Any,
        arg: BaseModel,
        workflow_id: str,
        tenant_tag: str | None,
        *,
        attributes: TypedSearchAttributes | None = None,
        **options: Any,
    ) -> None:
        """Start a run or a session on this client's task queue, as every one starts.

        Each gets ``WORKFLOW_TASK_TIMEOUT`` (see :mod:`onward.tuning`) and its
        search ``attributes``, or with a ``tenant_tag`` its ``OnwardTenant`` at once.

        Raises:
            RunAlreadyExists: a run or session with ``workflow_id`` is running.
        """

        async def start(search_attributes: TypedSearchAttributes | None) -> None:
            await self._client.start_workflow(
                run,
                arg,
                id=workflow_id,
                task_queue=self.task_queue,
                search_attributes=search_attributes,
                task_timeout=WORKFLOW_TASK_TIMEOUT,
                **options,
            )

        with self._translated(workflow_id):
            try:
                try:
                    await start(attributes or sa.tenant_tag(tenant_tag))
                except RPCError as err:
                    if not (attributes or tenant_tag) or not _attributes_unusable(err):
                        raise
                    # Registered a moment ago, on a server whose namespace cache has not
                    # caught up: the run sets them itself once it can (its first upsert).
                    log.info("starting %s without its search attributes: %s", workflow_id, err)
                    await start(None)
            except WorkflowAlreadyStartedError as err:
                raise RunAlreadyExists(workflow_id) from err

    async def outcome(self, run_id: str) -> Outcome:
        """Wait for the run to end; its result, and Temporal's failure if it closed without one."""
        await self._run_only(run_id)
        with self._translated(run_id):
            return await final_result(self._handle(run_id))

    async def result(self, run_id: str) -> AgentResult:
        """Wait for the run to end and return its result, whatever way it ended."""
        return (await self.outcome(run_id)).result

    async def follow(self, run_id: str) -> AsyncIterator[FollowEvent]:
        """Each step, pause, retry and wait for a worker as it happens; last: ``Ended``."""
        task_queue = (await self._run_only(run_id)).task_queue
        events = follow(self._handle(run_id), task_queue=task_queue, has_worker=self.has_worker)
        with self._translated(run_id):
            async for event in events:
                yield event

    # -- reading ----------------------------------------------------------------------

    async def status_and_source(self, run_id: str) -> tuple[AgentStatus, StatusSource]:
        """The run's status, and whether a worker answered or the history was read."""
        with self._translated(run_id):
            handle = self._handle(run_id)
            description = await handle.describe()
            began = await self._chain_began(run_id, description)
            status, source = await status_of(handle, self.has_worker, description, began)
        if status.turns is not None:  # a session: with its message run's wait, if any
            status = await with_message_run(self, run_id, status)
        elif source == "query":  # a running run: with its sub-agents' waits, if any
            children = description.raw_description.pending_children
            status = await with_sub_agents(self, status, [c.workflow_id for c in children])
        return status, source

    async def _chain_began(
        self, run_id: str, description: WorkflowExecutionDescription
    ) -> datetime | None:
        """When a running run continued as new began: its chain's first run's start.

        None for any other run (its own start is the chain's), or when the server no
        longer keeps the first run.
        """
        first = description.raw_description.workflow_execution_info.first_run_id
        running = description.status == WorkflowExecutionStatus.RUNNING
        if not running or not first or first == description.run_id:
            return None
        try:
            return (await self._run_handle(run_id, first).describe()).start_time
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return None

    async def status(self, run_id: str) -> AgentStatus:
        """State, usage against budget, the last step, and a call being retried, if any."""
        return (await self.status_and_source(run_id))[0]

    async def step_log(self, run_id: str) -> StepLog:
        """The finished steps: from the result, a worker, or else the history."""
        await self._run_only(run_id)
        with self._translated(run_id):
            records, source, unanswered, missing = await load_step_log(self._handle(run_id))
        return StepLog(records, source, unanswered, missing)

    async def steps(self, run_id: str) -> builtins.list[StepRecord]:
        """The finished steps of the run."""
        return (await self.step_log(run_id)).records

    async def trace(self, run_id: str) -> Trace:
        """Every model and tool call of the run: attempts, timings, tokens, cost."""
        await self._run_only(run_id)
        with self._translated(run_id):
            return await load_trace(self._handle(run_id), self._handle, self._run_handle)

    # -- replay and export ----------------------------------------------------------------

    async def histories(self, run_id: str) -> builtins.list[WorkflowHistory]:
        """The event history of each run of the run's (or session's) chain, first first.

        A run continued as new is several runs of one workflow id; each is read as
        far back as the server keeps them (its namespace's retention).

        Raises:
            RunNotFound: no run has this id.
        """
        histories: builtins.list[WorkflowHistory] = []
        execution: str | None = None
        with self._translated(run_id):
            while True:
                handle = self._client.get_workflow_handle(run_id, run_id=execution)
                try:
                    history = await handle.fetch_history()
                except RPCError as err:
                    if histories and err.status == RPCStatusCode.NOT_FOUND:
                        break  # an earlier run the server no longer keeps
                    raise
                histories.insert(0, history)
                started = history.events[0].workflow_execution_started_event_attributes
                execution = started.continued_execution_run_id or None
                if execution is None:
                    break
        return histories

    async def replay(self, run_id: str) -> builtins.list[Replayed]:
        """Replay each run of the run's (or session's) chain on this installation's
        workflows: whether a worker of this version would go on with it.

        Raises:
            RunNotFound: no run has this id.
        """
        from onward.replay import replay_histories  # the workflows' replayer: on demand

        return await replay_histories(await self.histories(run_id))

    async def in_flight(self, limit: int = IN_FLIGHT_LIMIT) -> builtins.list[str]:
        """The ids of the runs and sessions still running (sub-agents' and session
        messages' runs too), newest first, at most ``limit``: the runs a new version's
        workers must go on with (see :meth:`replay`)."""
        query = (
            "ExecutionStatus = 'Running' AND "
            f"WorkflowType IN ('{AGENT_WORKFLOW}', '{SESSION_WORKFLOW}')"
        )
        with self._translated():
            return [
                execution.id async for execution in self._client.list_workflows(query, limit=limit)
            ]

    async def export(self, run_id: str) -> RunExport:
        """The run whole: input, result, whole step log, conversation, and the event
        history of each run of its chain (see :class:`~onward.replay.RunExport`).

        The conversation is read from this client's store (``ONWARD_STORE``); when it
        cannot be, ``messages`` is None and ``messages_missing`` says why.

        Raises:
            InvalidInput: ``run_id`` is a session's (export its messages' runs).
            RunNotFound: no run has this id.
        """
        from onward.replay import ExportedHistory, RunExport, run_id_of

        recorded = await self._recorded(run_id)
        with self._translated(run_id):
            status = (await self._handle(run_id).describe()).status
        running = recorded.info.running
        result = None if running else (await self.result(run_id)).model_dump(mode="json")
        return RunExport(
            workflow_id=run_id,
            workflow_type=recorded.info.workflow_type,
            status=status.name.lower() if status is not None else "unknown",
            input=recorded.input,
            result=result,
            steps=recorded.log.records,
            steps_missing=recorded.log.missing,
            messages=recorded.messages,
            messages_missing=recorded.messages_missing,
            histories=[
                ExportedHistory(run_id=run_id_of(history), history=history.to_json_dict())
                for history in recorded.histories
            ],
        )

    async def fork(
        self,
        run_id: str,
        at_step: int,
        prompt: str,
        *,
        id: str | None = None,
        changes: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a new run from the run's conversation at the end of step ``at_step``;
        returns its id. Its input is :meth:`fork_input`'s; its memo says what it was
        forked from (``forked_from``, ``forked_at_step``).

        Raises:
            InvalidInput: ``at_step`` is not a finished step, the new input is not
                valid, or ``run_id`` is a session's.
            RunAlreadyExists: a run with ``id`` is running.
            RunNotFound: no run has this id.
            StoreError: the run's conversation cannot be read from the store.
        """
        agent = await self.fork_input(run_id, at_step, prompt, changes=changes)
        return await self.start(agent, id=id, memo=fork_memo(run_id, at_step))

    async def fork_input(
        self,
        run_id: str,
        at_step: int,
        prompt: str,
        *,
        changes: Mapping[str, Any] | None = None,
    ) -> AgentInput:
        """The input of a run going on from the run's conversation at the end of step
        ``at_step`` (what :meth:`fork` starts).

        The new run begins with the conversation as it stood then (the step's reply
        and its tool calls' results, copied inside the store: nothing is asked of a
        model or a tool again), then ``prompt`` as the next user message. It takes
        the run's input (model, tools, budget, settings...) with ``changes``
        (``AgentInput`` fields: ``{"model": "openai:gpt-4.1"}``, say; a ``budget``
        of some limits keeps the others) over it; a scripted run's script goes on
        from the turn after ``at_step`` (left behind when ``changes`` name a model
        that is not the scripted one); another ``model`` leaves the run's ``pricing``
        override behind (it was its model's price).

        Raises:
            InvalidInput: ``at_step`` is not a finished step, the new input is not
                valid, or ``run_id`` is a session's.
            RunNotFound: no run has this id.
            StoreError: the run's conversation cannot be read from the store.
        """
        from onward.replay import fork_point, replies_through

        recorded = await self._recorded(run_id)
        original, steps, messages = recorded.input, recorded.log.records, recorded.messages
        if messages is None:
            raise StoreError(f"cannot fork {run_id}: {recorded.messages_missing}")
        began_with = (original.get("conversation") or {}).get("messages", 0)
        cut = fork_point(messages, began_with, steps, at_step)
        data = {key: value for key, value in original.items() if key not in _NOT_FORKED}
        if data.get("script"):  # the turns its steps played (summaries play none)
            data["script"] = data["script"][replies_through(steps, at_step) :]
        changes = dict(changes or {})
        if isinstance(changes.get("budget"), Mapping):  # limits given: the others kept
            changes["budget"] = {**(data.get("budget") or {}), **changes["budget"]}
        if changes.get("model", data.get("model")) != data.get("model"):
            data.pop("pricing", None)  # the run's first model's price, as a fallback drops it
        data.update(changes)
        models = [data.get("model", "scripted"), *(data.get("fallback_models") or ())]
        if "script" not in changes and "scripted" not in map(provider_of, models):
            data.pop("script", None)  # the run's turns, for the scripted model it leaves
        data["prompt"] = prompt
        data["conversation"] = ConversationRef(
            transcript=recorded.transcript,
            messages=cut,
            context_tokens=estimate_tokens(messages[:cut]),
        ).model_dump()
        return validated(AgentInput, data)

    async def _recorded(self, run_id: str) -> _Recorded:
        """What the run recorded, as export and fork read it.

        Raises:
            InvalidInput: ``run_id`` is a session's.
            RunNotFound: no run has this id.
        """
        from onward.replay import run_id_of

        info = await self._run_only(run_id)
        histories = await self.histories(run_id)
        started = histories[0].events[0].workflow_execution_started_event_attributes
        with self._translated(run_id):
            arguments = await DATA_CONVERTER.decode(started.input.payloads)
        log = await self.step_log(run_id)
        transcript = transcript_id(run_id, run_id_of(histories[0]))
        messages, missing = await self._messages(transcript, log.records)
        return _Recorded(
            info, histories, arguments[0] if arguments else None, log, transcript, messages, missing
        )

    async def _messages(
        self, transcript: str, steps: builtins.list[StepRecord]
    ) -> tuple[builtins.list[Message] | None, str | None]:
        """The conversation the store holds for ``transcript``, or None and why not."""
        url = self._store_url or store_url(os.environ)
        try:
            store = self._store or await open_store(url, DATA_CONVERTER.payload_codec)
        except StoreError as err:
            return None, f"the transcript store cannot be read ({err})"
        try:
            messages = await store.messages(transcript)
        except (StoreError, ValueError) as err:
            return None, f"the transcript store cannot be read ({err})"
        finally:
            if store is not self._store:
                await store.close()
        if not messages and steps:
            return None, (
                f"not in the transcript store at {store_name(url)} "
                "(ONWARD_STORE must name the workers' store)"
            )
        return messages, None

    async def list(
        self,
        *,
        status: AgentState | None = None,
        model: str | None = None,
        limit: int = 20,
        tenant: str | None = None,
        since: datetime | None = None,
    ) -> builtins.list[RunRow]:
        """Recent runs: running ones, newest first, then ended ones, latest ended first
        (Temporal's visibility order; no worker needed).

        ``tenant`` keeps the runs tagged with it, ``since`` those started at or after it.
        """
        page = await self.list_page(
            status=status, model=model, limit=limit, tenant=tenant, since=since
        )
        return page.rows

    async def list_page(
        self,
        *,
        status: AgentState | None = None,
        model: str | None = None,
        limit: int = 20,
        tenant: str | None = None,
        since: datetime | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """As :meth:`list`, a page at a time: ``page_token`` is the last page's
        ``next_page_token`` (None: the first page), given with the same filters.

        Raises:
            InvalidInput: ``page_token`` is no token a page gave.
        """
        with self._translated():
            return await run_page(
                self._client,
                status=status,
                model=model,
                limit=limit,
                tenant=tenant,
                since=since,
                page_token=page_token,
            )

    async def report(
        self,
        since: datetime | timedelta | str,
        *,
        until: datetime | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> Report:
        """Per model and per tool figures over the runs started since ``since``: a time,
        how long ago (a ``timedelta``), or as ``onward report --since`` takes it
        (``"1h"``, ``"2d"``, ``"2025-01-31T09:00"``).

        Raises:
            InvalidInput: ``since`` is a string of neither form.
        """
        until = until or datetime.now(UTC)
        if isinstance(since, timedelta):
            since = until - since
        elif isinstance(since, str):
            try:
                since = parse_since(since, until)
            except ValueError as err:
                raise InvalidInput(f"since: {err}") from None
        with self._translated():
            traces, unreadable = await collect_traces(self._client, since, tenant, limit)
        return aggregate(traces, since, until, tenant, unreadable)

    # -- control ----------------------------------------------------------------------

    async def run_info(self, run_id: str) -> RunInfo:
        """Where the run is and whether it still runs; a session's id is refused.

        Raises:
            InvalidInput: ``run_id`` is a session's (its messages' runs are ``ID-m<N>``).
            RunNotFound: no run has this id.
        """
        return await self._run_only(run_id)

    async def _run_only(self, run_id: str, control: str | None = None) -> RunInfo:
        """The run's info; a session's id is refused: it has no such signal or update
        (Temporal would take the signal and nothing would happen), nor steps or a result
        of a run (``control`` None: a read; an open session's result waits for days).

        Raises:
            InvalidInput: ``run_id`` is a session's.
            RunNotFound: no run has this id.
        """
        info = await self.info(run_id)
        if info.workflow_type == SESSION_WORKFLOW:
            instead = (
                f"{control} its message's run ({run_id}-m<N>), or close the session "
                f"(onward close {run_id})"
                if control
                else f"its messages' runs are {run_id}-m1, -m2, ...; the session's own "
                "status and history are read as a session's"
            )
            raise InvalidInput(f"{run_id} is a session: {instead}")
        return info

    async def pause(self, run_id: str) -> None:
        """Pause the run before its next model or tool call."""
        await self._run_only(run_id, "pause")
        with self._translated(run_id):
            await self._handle(run_id).signal(AgentWorkflow.pause)

    async def resume(self, run_id: str) -> AgentState | None:
        """Resume a paused run; return its state before (None: no worker said).

        A state other than ``paused`` means there was nothing to resume (the
        signal is sent anyway: it also withdraws a pause not yet reached, see
        :meth:`resume_status`).
        """
        before = await self.resume_status(run_id)
        return None if before is None else before.state

    async def resume_status(self, run_id: str) -> AgentStatus | None:
        """:meth:`resume`, returning the run's whole status before (None: no worker said).

        A ``running`` run that was ``pausing`` (a pause sent, not yet reached while
        calls were in flight) had that pause withdrawn: it does not pause.
        """
        before: AgentStatus | None = None
        info = await self._run_only(run_id, "resume")
        with self._translated(run_id):
            handle = self._handle(run_id)
            if await self.has_worker(info.task_queue):
                with contextlib.suppress(RPCError, WorkflowQueryFailedError):
                    before = await handle.query(AgentWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
            await handle.signal(AgentWorkflow.resume)
        return before

    async def cancel(self, run_id: str, reason: str | None = None) -> None:
        """End the run as cancelled, keeping what it did."""
        await self._run_only(run_id, "cancel")
        with self._translated(run_id):
            await self._handle(run_id).signal(AgentWorkflow.cancel, CancelRequest(reason=reason))

    async def steer(self, run_id: str, message: str) -> None:
        """Add a user message for the run's next model call.

        Raises:
            InvalidInput: the message is blank.
        """
        if not message.strip():
            raise InvalidInput(
                "steer: the message must not be blank",
                [{"loc": ("message",), "msg": "must not be blank", "type": "string_too_short"}],
            )
        await self._run_only(run_id, "steer")
        with self._translated(run_id):
            await self._handle(run_id).signal(AgentWorkflow.steer, SteerRequest(message=message))

    async def extend_budget(
        self, run_id: str, extension: BudgetExtension | Mapping[str, Any]
    ) -> Budget:
        """Raise the run's budget limits; return the new budget.

        Raises:
            InvalidInput: ``extension`` is not a valid :class:`~onward.contracts.BudgetExtension`,
                or names no limit.
            NoWorker: no worker polls the run's task queue, or none answered in time.
            RequestRejected: the run refused (e.g. a limit lower than before).
        """
        extension = validated(BudgetExtension, extension, "invalid budget extension")
        try:
            require_a_limit(extension)  # bad input, before any worker is asked
        except ValueError as err:  # the extension as a whole: no field is wrong by itself
            problem = {"loc": (), "msg": str(err), "type": "missing"}
            raise InvalidInput(str(err), [problem]) from None
        info = await self._run_only(run_id, "extend the budget of")
        await self._require_worker(run_id, info)
        with self._translated(run_id), _unanswered_update(run_id, "extend_budget"):
            try:
                return await self._handle(run_id).execute_update(
                    AgentWorkflow.extend_budget, extension, rpc_timeout=UPDATE_TIMEOUT
                )
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                message = (
                    cause.message if isinstance(cause, ApplicationError) else str(cause or err)
                )
                raise RequestRejected(message) from err

    # -- human approval ------------------------------------------------

    async def approve(
        self, run_id: str, call_id: str | None = None, note: str | None = None
    ) -> ApprovalsDecided:
        """Let a tool call waiting for approval run (``call_id``; default: every pending call).

        Raises:
            NoWorker: no worker polls the run's task queue, or none answered in time.
            RequestRejected: nothing (or not that call) waits for approval.
        """
        return await self._decide(run_id, "approve", ApprovalDecision(call_id=call_id, note=note))

    async def reject(
        self, run_id: str, call_id: str | None = None, note: str | None = None
    ) -> ApprovalsDecided:
        """Refuse a tool call waiting for approval; ``note`` goes to the model as its result.

        Raises:
            NoWorker: no worker polls the run's task queue, or none answered in time.
            RequestRejected: nothing (or not that call) waits for approval.
        """
        return await self._decide(run_id, "reject", ApprovalDecision(call_id=call_id, note=note))

    async def _decide(
        self, run_id: str, verdict: Literal["approve", "reject"], decision: ApprovalDecision
    ) -> ApprovalsDecided:
        update = AgentWorkflow.approve if verdict == "approve" else AgentWorkflow.reject
        info = await self._require_worker(run_id)
        run_id = await approval_target(self, info, decision.call_id)
        update_id = decision_update_id(verdict, decision)
        with (
            self._translated(run_id),
            _unanswered_update(run_id, verdict, repeatable=update_id is not None),
        ):
            try:
                decided = await self._handle(run_id).execute_update(
                    update, decision, id=update_id, rpc_timeout=UPDATE_TIMEOUT
                )
                return decided.model_copy(update={"run_id": run_id})
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                message = (
                    cause.message if isinstance(cause, ApplicationError) else str(cause or err)
                )
                raise RequestRejected(f"{verdict}: {message}") from err

    # -- artifacts -----------------------------------------------------

    async def _files(self) -> FileBackend | None:
        """The store's workspaces (PostgreSQL), opened on first use; None: on disk."""
        if self._store is None and self._store_url is not None:
            self._store = await open_store(self._store_url, DATA_CONVERTER.payload_codec)
            self._opened_store = True
        return self._store.files if self._store is not None else None

    async def aclose(self) -> None:
        """Close the store this client opened from a URL (the Temporal client needs nothing)."""
        if self._opened_store and self._store is not None:
            await self._store.close()
            self._store, self._opened_store = None, False

    def _workspace(self, run_id: str, root: Path | str | None) -> Path:
        base = Path(root).resolve() if root is not None else workspace_root(os.environ)
        return workspace_dir(base, run_id)

    async def artifacts(
        self, run_id: str, *, workspace_root: Path | str | None = None
    ) -> builtins.list[Artifact]:
        """The files the run wrote: from the store when it keeps workspaces (PostgreSQL),
        else from the worker's workspace root on this machine.

        ``workspace_root`` defaults to ``ONWARD_WORKSPACE`` (as the worker reads it).

        Raises:
            RunNotFound: no run has this id.
            StoreError: the store cannot be reached.
        """
        # An unknown id says so, instead of "no artifacts".
        info = await self.info(run_id)
        files = await self._files()
        if files is not None:
            return await files.list_files(info.workspace_id)
        directory = self._workspace(info.workspace_id, workspace_root)
        found = list_artifacts(directory)
        if not found:
            await self._require_workspace_here(info, directory)
        return found

    async def artifact(
        self, run_id: str, path: str, *, workspace_root: Path | str | None = None
    ) -> bytes:
        """The bytes of one artifact of the run (``path`` as :meth:`artifacts` lists it).

        Raises:
            RunNotFound: no run has this id.
            ArtifactNotFound: no such artifact (an ``InvalidInput``).
            InvalidInput: ``path`` leaves the run's workspace.
            StoreError: the store cannot be reached.
        """
        info = await self.info(run_id)
        files = await self._files()
        if files is not None:
            try:
                data = await files.read_file(info.workspace_id, normalize_path(path))
            except WorkspaceError as err:
                raise InvalidInput.at(("path",), str(err)) from err
            if data is None:
                raise ArtifactNotFound(run_id, path)
            return data
        directory = self._workspace(info.workspace_id, workspace_root)
        try:
            return read_artifact(directory, path)
        except FileNotFoundError as err:
            await self._require_workspace_here(info, directory)
            raise ArtifactNotFound(run_id, path) from err
        except WorkspaceError as err:
            raise InvalidInput.at(("path",), str(err)) from err

    async def _require_workspace_here(self, info: RunInfo, directory: Path) -> None:
        """Say so when the run's files are not on this machine, rather than "none".

        A run that wrote no file has no directory either; but an agent run that
        has ended lists the files it wrote in its result: when it lists some and
        ``directory`` does not exist, its worker keeps them elsewhere (another
        machine, another ``ONWARD_WORKSPACE``, a worker started from another
        directory with the default one).

        Raises:
            InvalidInput: the run wrote files that are not under ``directory``'s root.
        """
        if _is_dir(directory) or info.running or info.workflow_type != AGENT_WORKFLOW:
            return
        try:
            written = (await self.result(info.run_id)).artifacts or []
        except OnwardError:
            return  # no result to tell by: answer from the directory alone
        if written:
            shown = ", ".join(artifact.path for artifact in written[:3])
            more = ", ..." if len(written) > 3 else ""
            raise InvalidInput(
                f"workspace_root: run {info.run_id} wrote {counted(len(written), 'file')} "
                f"({shown}{more}), but its workspace is not in {directory.parent.parent} on "
                "this machine: read them where its worker runs, or give that worker's "
                "ONWARD_WORKSPACE (onward artifacts --workspace DIR)"
            )

    # -- schedules -----------------------------------------------------

    async def check_input(self, input: AgentInput | Mapping[str, Any]) -> bool:
        """Ask a worker on this client's task queue whether a run of ``input`` would start.

        Beyond what pydantic checks here, a worker judges what is its own: the
        tools it has, the model providers it has (and their keys), ``approve_tools``
        among the run's tools. A run of ``input`` would fail on what it refuses.

        Returns:
            True: a worker checked ``input`` and would run it. False: none could
            check it (none polls the task queue, or none answered within
            ``INPUT_CHECK_TIMEOUT``: a worker of an Onward without the check).

        Raises:
            InvalidInput: ``input`` is not valid, or a worker refuses it (each
            problem names its field: ``tools``, ``model``, ``approve_tools``...).
        """
        agent = validated(AgentInput, input)
        if not await self.has_worker():
            return False
        with self._translated():
            try:
                answer: InputCheck = await self._client.execute_workflow(
                    InputCheckWorkflow.run,
                    agent,
                    id=f"input-check-{uuid.uuid4().hex[:12]}",
                    task_queue=self.task_queue,
                    execution_timeout=INPUT_CHECK_TIMEOUT,
                    task_timeout=WORKFLOW_TASK_TIMEOUT,
                    request_eager_start=True,
                )
            except WorkflowFailureError:
                return False  # timed out: no worker that knows the check took it
        if answer.problems:
            raise InvalidInput(
                "invalid input: " + "; ".join(str(problem) for problem in answer.problems),
                [
                    {"loc": (problem.field,), "msg": problem.message, "type": "worker_refused"}
                    for problem in answer.problems
                ],
            )
        return True

    async def schedule_create(
        self,
        cron: str,
        input: AgentInput | Mapping[str, Any],
        id: str | None = None,
        *,
        check: bool = True,
        memo: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a run of ``input`` at each time of ``cron`` (a Temporal Schedule); return its id.

        With ``check`` (the default), a worker on this client's task queue is
        asked first (:meth:`check_input`), so a tool or model provider the
        workers lack is refused now, not at each time the schedule comes; with
        no worker to ask, the schedule is created unchecked. Each run starts
        with the first values of Onward's search attributes the server has, its
        tenant's among them, as a run :meth:`start` starts does. ``memo`` is
        kept in the schedule's memo beside Onward's own entry (see
        :meth:`schedule_memo`).

        Raises:
            InvalidInput: ``input`` is not a valid agent input, a worker refuses it,
                or Temporal refuses ``cron`` or ``id`` (blank, or too long for
                the runs' workflow ids, ``<id>-<time>``); its problems name the
                field (``("cron",)``, ``("id",)``, or the input's).
        """
        agent = validated(AgentInput, input)
        if id is not None and not id.strip():
            raise InvalidInput.at(("id",), "must not be blank (leave it out for a new one)")
        if check:
            await self.check_input(agent)
        schedule_id = id or schedules.new_schedule_id()
        attributes = sa.at_start(agent.model, agent.tenant, await self._registered_attributes())
        full_memo = {**(memo or {}), **schedules.schedule_memo(agent, cron)}

        async def create(search_attributes: TypedSearchAttributes) -> None:
            schedule = schedules.agent_schedule(
                agent, cron, schedule_id, self.task_queue, search_attributes
            )
            await self._client.create_schedule(schedule_id, schedule, memo=full_memo)

        with self._translated():
            try:
                try:
                    await create(attributes)
                except RPCError as err:
                    if not attributes or not _attributes_unusable(err):
                        raise
                    # As for a run (see _start_workflow): its runs set them themselves.
                    log.info("creating schedule %s without search attributes: %s", schedule_id, err)
                    await create(TypedSearchAttributes.empty)
            except ScheduleAlreadyRunningError as err:
                raise InvalidInput.at(("id",), f"a schedule {schedule_id} exists already") from err
            except RPCError as err:
                if err.status == RPCStatusCode.INVALID_ARGUMENT:
                    field = schedules.refused_field(err.message)
                    raise InvalidInput.at((field,), err.message) from err
                if err.status == RPCStatusCode.ALREADY_EXISTS:
                    raise InvalidInput.at(
                        ("id",), f"a schedule {schedule_id} exists already"
                    ) from err
                raise
        return schedule_id

    async def schedule(self, schedule_id: str) -> ScheduleRow:
        """One schedule: its cron, whether paused, its next and recent runs.

        Raises:
            ScheduleNotFound: no schedule has this id (an :class:`InvalidInput`).
        """
        with self._schedule_translated(schedule_id):
            handle = self._client.get_schedule_handle(schedule_id)
            return await schedules.described(handle, self._client.data_converter)

    async def schedule_list(
        self, limit: int = 100, *, tenant: str | None = None
    ) -> builtins.list[ScheduleRow]:
        """Onward's schedules in the namespace (from the visibility store, so a moment late).

        ``tenant`` keeps those whose runs are started as its (their input's ``tenant``).
        """
        with self._translated():
            return await schedules.listed(self._client, limit, tenant)

    async def schedule_memo(self, schedule_id: str) -> dict[str, Any]:
        """The memo the schedule was created with (Onward's entry and ``memo``'s).

        Raises:
            ScheduleNotFound: no schedule has this id.
        """
        with self._schedule_translated(schedule_id):
            description = await self._client.get_schedule_handle(schedule_id).describe()
            return dict(await description.memo())

    async def schedule_pause(self, schedule_id: str, note: str | None = None) -> None:
        """Stop the schedule starting runs until :meth:`schedule_unpause`."""
        with self._schedule_translated(schedule_id):
            await self._client.get_schedule_handle(schedule_id).pause(note=note)

    async def schedule_unpause(self, schedule_id: str, note: str | None = None) -> None:
        """Let a paused schedule start runs again."""
        with self._schedule_translated(schedule_id):
            await self._client.get_schedule_handle(schedule_id).unpause(note=note)

    async def schedule_trigger(self, schedule_id: str) -> None:
        """Start one run of the schedule now, whatever its cron (and even while paused).

        Also while an earlier run still goes. The schedule does not count the
        triggered run as running (Temporal tracks no run started with overlaps
        allowed): a time of the schedule that comes while it goes starts a run
        beside it, and :attr:`ScheduleRow.running` does not list it.
        """
        with self._schedule_translated(schedule_id):
            await self._client.get_schedule_handle(schedule_id).trigger(
                overlap=ScheduleOverlapPolicy.ALLOW_ALL
            )

    async def schedule_delete(self, schedule_id: str) -> None:
        """Delete the schedule; the runs it started are left alone."""
        with self._schedule_translated(schedule_id):
            await self._client.get_schedule_handle(schedule_id).delete()

    @contextlib.contextmanager
    def _schedule_translated(self, schedule_id: str) -> Iterator[None]:
        """Temporal's errors as Onward's; an unknown schedule id is :class:`ScheduleNotFound`
        (an :class:`InvalidInput`)."""
        with self._translated():
            try:
                yield
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    raise ScheduleNotFound(schedule_id) from err
                raise
