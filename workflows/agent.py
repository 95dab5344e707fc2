"""AgentWorkflow: the agent loop as a deterministic Temporal workflow.

Each model call and tool call is an activity, so the event history is the
checkpoint: a replacement worker replays it and goes on at the step where the
last one stopped, without repeating a completed call. Everything here is
deterministic: time comes from ``workflow.now()``, and all I/O happens in
activities.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.contrib.workflow_streams import WorkflowStream
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from onward import budget as budgets
    from onward import compaction, final_answer, steplog
    from onward import search_attributes as sa
    from onward.activities.model import ModelActivities
    from onward.activities.providers.errors import PROVIDER_ERROR_TYPES
    from onward.activities.tool_calls import ToolActivities
    from onward.contracts import (
        AGENT_WORKFLOW,
        FINAL_STATES,
        RUN_VERSION,
        AgentCarry,
        AgentInput,
        AgentResult,
        AgentState,
        AgentStatus,
        ApprovalDecision,
        ApprovalRecord,
        ApprovalsDecided,
        Artifact,
        ArtifactsRequest,
        Budget,
        BudgetExtension,
        BudgetLimit,
        CancelRequest,
        CompactionRequest,
        ConversationCopy,
        ConversationRef,
        Message,
        ModelRequest,
        ModelResponse,
        PendingApproval,
        RunUsage,
        ScriptTurn,
        SteerRequest,
        StepRecord,
        ToolCall,
        ToolCallRecord,
        ToolCallStatus,
        ToolOutcome,
        ToolRequest,
        ToolSpec,
        TranscriptRef,
        TranscriptWrite,
        WorkerDescriptionRequest,
        provider_of,
        tool_specs_key,
    )
    from onward.conversation import Conversation
    from onward.delegation import (
        DELEGATE,
        DELEGATE_PATCH,
        ID_TAKEN,
        DelegateArgs,
        check_delegate,
        child_budget,
        child_id,
        child_input,
        delegable,
        delegate_spec,
        failure_message,
        failure_outcome,
        outcome_of,
        roll_up,
        start_delegate,
    )
    from onward.errors import (
        DEADLINE_PASSED,
        INVALID_INPUT,
        MODEL_NOT_PRICED,
        format_validation_error,
    )
    from onward.input_check import (
        WORKSPACE_PROBLEM,
        unknown_approve_tools_problem,
        unknown_provider_problems,
        unknown_tools_problem,
        worker_tools_asked,
    )
    from onward.memory import DEFAULT_MEMORY_SCOPE
    from onward.run_telemetry import RUN_SPAN_EXTERN, RunSpan
    from onward.store.base import transcript_id
    from onward.tool_pipeline import (
        approval_refusal,
        chosen,
        needs_approval,
        rejection,
        unknown_approve_tools,
        unknown_tool,
    )
    from onward.tool_telemetry import TOOL_SPAN_EXTERN, WorkflowToolSpan, record_tool_call
    from onward.tuning import WORKFLOW_SANDBOX
    from onward.workflow_tools import WORKFLOW_TOOLS
    from onward.workflows.inputs import Given
    from onward.workflows.progress import model_summary, progress_card, tool_summary

__all__ = ["AgentWorkflow"]

_Payload = TypeVar("_Payload", bound="BaseModel")
_Result = TypeVar("_Result")

MODEL_CALL_TIMEOUT = timedelta(minutes=10)
"""Longest a single model call attempt may take."""
HEARTBEAT_TIMEOUT = timedelta(seconds=2)
"""A worker that dies mid-call is noticed this long after its last heartbeat (the
activity beats every 0.5 s and the SDK sends at most one beat per 1.6 s, so a worker
whose event loop stalls past about 1.5 s has its call retried elsewhere: a model call
paid twice, against a resume about 2 s sooner than with 4 s)."""
MODEL_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.8,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
)
"""Backoff of model calls: the first retry (a dead worker's call, a dropped connection)
comes within 0.1 s (0.5 s, and 1 s, before), and 429s and 503s wait what their Retry-After
says; 8 attempts without one span about 75 s (0.1, 0.28, 0.78, 2.2, 6.1, 17, 48 s).
``maximum_attempts`` is replaced by the worker's ONWARD_MODEL_MAX_ATTEMPTS (default 8),
which ``describe_worker`` reports; the 20 here applies only to runs begun before workers
reported it."""
TOOL_RETRY_INTERVAL = timedelta(seconds=1)
DESCRIBE_WORKER_TIMEOUT = timedelta(seconds=10)
MAX_MODEL_REQUEST_BYTES = 1_800_000
"""A model call whose conversation is larger than this would exceed Temporal's 2 MB
payload limit and fail its workflow task forever; the run ends as failed instead."""
MAX_STORED_REQUEST_BYTES = 32_000_000
"""With the transcript store a model call carries only what is new, and payloads over
the converter's threshold go to external storage; past this a message is too large for
any model, and the run ends as failed rather than storing it."""
DESCRIBE_WORKER_RETRY = RetryPolicy(maximum_attempts=3)
LOCAL_TOOL_TYPE_PATCH = "local-tool-type-is-its-summary"
"""A local tool call's activity type is its summary; runs begun before used execute_tool."""
HUMAN_APPROVAL_PATCH = "human-approval"
"""Calls needing approval wait for one; runs begun before refused them outright."""
APPROVAL_SHOWS_PAUSE_PATCH = "approval-shows-pause"
"""A call decided while paused shows the run paused; runs begun before showed it running."""
WORKSPACE_PER_RUN_PATCH = "workspace-per-run"
"""Tool calls name their run's workspace; runs begun before share the worker's root."""
ARTIFACTS_PATCH = "artifacts-in-result"
"""A run that ran tool activities lists its workspace's files in its result."""
WEBHOOK_ON_NATIVE_CANCEL_PATCH = "webhook-on-native-cancel"
"""A natively cancelled run delivers its webhook; runs begun before closed without it."""
TOKEN_STREAM_PATCH = "token-stream"
"""Model calls of runs with ``stream: true`` publish their text to the ``tokens`` topic."""
WEBHOOK_ON_INVALID_INPUT_PATCH = "webhook-on-invalid-input"
"""A run failed by input the worker checks delivers its webhook; runs begun before did not."""
TOOL_CACHE_PATCH = "tool-cache"
"""Tool calls carry the run's cache TTL and tenant (the tool cache's key); runs begun
before sent neither."""
SUB_AGENTS_SETTLE_TIMEOUT = timedelta(seconds=60)
"""How long a stopped run waits for its cancelled sub-agents to end, to add up their usage."""
MEMORY_SCOPE_PATCH = "memory-scope"
"""Tool calls carry the run's tenant and memory scope (remember/recall); runs begun
before sent neither, and have no memory."""
ARTIFACTS_BY_TOOL_PATCH = "artifacts-by-tool"
"""Only calls of tools that take a ToolContext (``ToolSpec.uses_workspace``) and
sub-agents that may call one make the run list its artifacts; runs begun before
listed them after any tool activity (one activity more at the end of every run)."""
END_OF_RUN_LOCAL_PATCH = "end-of-run-local"
"""The end's transcript write and artifact listing run as local activities, in the
workflow task that ends the run; runs begun before ran them as regular activities, each
one more round trip through the server. Asked first thing in a run, it also stands for
every older patch (``_patched``): a run that has it asks none of them, so none is asked
for the first time after a local activity (see ``_patched``), and the run's history
holds one patch marker instead of one (and a search-attribute upsert) per patch.
A newer patch the end asks must be asked before the run's first local activity."""
PUBLISH_THROTTLED_PATCH = "publish-throttled"
"""While a run goes on, its steps, tokens and cost search attributes are upserted at
most every PUBLISH_INTERVAL (a change of state, the run's end and the first publish
go at once, with them); runs begun before upserted them after every step. Each
upsert is a history event and a visibility write on the server: with fast steps
they were a fifth of a run's events. Asked first thing in a run, it stands for
END_OF_RUN_LOCAL_PATCH and so for every older patch (see ``_patched``). The last
patch: runs begun since record RUN_VERSION instead (see ``run``)."""
PUBLISH_INTERVAL = timedelta(seconds=30)
"""Longest a running run's steps, tokens and cost search attributes lag behind it.

A running run whose steps are quicker than it pays an upsert each interval: 100 such
runs every 5 s were 20 upserts a second (with none mid-run, 10-step runs at 100 agents
went from 0.93x to 0.96x the bench's floor). The card and the queries are current."""
PUBLISH_INTERVAL_BEFORE_V4 = timedelta(seconds=5)
"""PUBLISH_INTERVAL of runs begun before RUN_VERSION 4."""
LIST_ARTIFACTS_TIMEOUT = timedelta(seconds=30)
LIST_ARTIFACTS_RETRY = RetryPolicy(maximum_attempts=3)
CONTINUE_AS_NEW_AFTER = 200
"""Steps one run takes before it continues as new (``continue_as_new_after`` overrides);
earlier when Temporal suggests it. Keeps every run's history far from its limits."""
STEPS_KEPT = 50
"""Steps the ``steps`` query and the result hold in full; the store holds them all."""
STEPS_CARRIED = 10
"""Of those, the ones a run hands to the next when it continues as new. The carry is
recorded twice (the old run's last event and the new run's first): 50 records of a
tool-heavy agent were most of the history a switch adds; 10 keep the query and the
Web UI showing the latest steps, and the store has the rest."""
WRITE_TRANSCRIPT_TIMEOUT = timedelta(minutes=1)
WRITE_TRANSCRIPT_RETRY = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(seconds=30))
NO_INPUT = (
    'input: AgentWorkflow needs one JSON object as input, e.g. {"prompt": "What is 17 * 3 + 4?"}'
)
"""The error of a run started with no input, or with ``null``."""
_PLACEHOLDER_INPUT = AgentInput(prompt="(no input)")
"""Stands in for a missing input until ``run`` fails the run, so queries still answer."""
FINISH_PROMPT = (
    "The run's budget is exhausted ({reason}). Do not call any tools. "
    "Give your final answer now, from what you have so far."
)


Interruption = budgets.Exceeded | str
"""Why running calls were stopped: the wall-time limit, or a cancel's reason."""


def _tokens_of(messages: list[Message]) -> int:
    """The estimated tokens of ``messages``, counted a message at a time (as compaction does)."""
    return sum(compaction.estimate_tokens([message]) for message in messages)


def _why(interruption: Interruption | None) -> str | None:
    """An interruption as people read it."""
    if isinstance(interruption, budgets.Exceeded):
        return interruption.message
    return interruption


class _RunEnded(Exception):
    """Unwinds the loop to end the run in ``state``."""

    def __init__(
        self, state: AgentState, reason: str | None, limit: BudgetLimit | None = None
    ) -> None:
        super().__init__(reason)
        self.state: AgentState = state
        self.reason = reason
        self.limit = limit


class _FinishNow(Exception):
    """A budget ran out with ``on_exceeded="finish"``: ask for a final answer."""

    def __init__(self, exceeded: budgets.Exceeded) -> None:
        super().__init__(exceeded.message)
        self.exceeded = exceeded
        self.reason = exceeded.message


def _ms(since: datetime) -> int:
    return int((workflow.now() - since).total_seconds() * 1000)


def _root_message(err: BaseException) -> str:
    """The innermost cause's message: 'rate limited', not 'Activity task failed'."""
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    if isinstance(err, ApplicationError):
        return err.message or err.type or "ApplicationError"
    return str(err) or type(err).__name__


def _refused_as(err: BaseException | None, failure_type: str) -> bool:
    """Whether ``err`` is a worker's refusal of a call, typed ``failure_type``."""
    return (
        isinstance(err, ActivityError)
        and isinstance(err.cause, ApplicationError)
        and err.cause.type == failure_type
    )


def _end_if_unpriced(err: ActivityError) -> None:
    """End the run ``budget_exceeded`` if a worker refused a model call for having no price."""
    if _refused_as(err, MODEL_NOT_PRICED):
        reason = f"max_cost_usd: {_root_message(err)}"
        raise _RunEnded("budget_exceeded", reason, "max_cost_usd") from err


UNLIMITED_ATTEMPTS = 1_000_000
"""Where a model's retry policy sets no limit, the attempts a fallback's stream counts past."""


def _provider_failed(err: ActivityError) -> bool:
    """Whether the provider failed the call (after its retries), not Onward or the run."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type in PROVIDER_ERROR_TYPES


def _refused_late(err: BaseException | None) -> bool:
    """Whether ``err`` is a worker's refusal to start a call after the run's deadline."""
    return _refused_as(err, DEADLINE_PASSED)


def _failed_late(task: asyncio.Task[Any]) -> bool:
    """Whether ``task``, a call, ended refused for the run's deadline."""
    return task.done() and not task.cancelled() and _refused_late(task.exception())


def _outcome_of(task: asyncio.Task[ToolOutcome]) -> ToolOutcome:
    """A finished tool call's outcome; a failed activity is an error for the model."""
    try:
        return task.result()
    except ActivityError as err:
        return ToolOutcome(error=f"tool call failed: {_root_message(err)}")


async def _at_once(outcome: ToolOutcome) -> ToolOutcome:
    """A call's outcome known without running anything, as a task's (status ok or error)."""
    return outcome


async def _observed(
    call: ToolCall, running: Callable[[], Coroutine[Any, Any, ToolOutcome]]
) -> ToolOutcome:
    """``running()``, a call of a tool the workflow runs itself, traced and counted.

    An activity's tool call gets its ``execute_tool`` span and metrics in the
    activity (activities/telemetry.py); these get theirs here, when they end.
    The coroutine is made here, so a task cancelled before it began leaves none
    unawaited. Only a call that ends in the workflow's loop is recorded: not one
    whose coroutine is closed when a worker drops the run from its cache.
    """
    started = workflow.now()
    try:
        outcome = await running()
    except (Exception, asyncio.CancelledError) as err:  # a cancel, the run's end
        _record_workflow_tool(call, started, str(err), type(err).__name__)
        raise
    failed = None if outcome.error is None else "ToolError"
    _record_workflow_tool(call, started, outcome.error, failed)
    return outcome


def _record_workflow_tool(
    call: ToolCall, started: datetime, error: str | None, error_type: str | None
) -> None:
    """A workflow tool call's span (when the worker traces) and metrics, once: not on replay."""
    if workflow.unsafe.is_replaying():
        return
    ended = workflow.now()
    seconds = (ended - started).total_seconds()
    record_tool_call(workflow.metric_meter(), call.name, seconds, error_type is not None)
    record_span = workflow.extern_functions().get(TOOL_SPAN_EXTERN)
    if record_span is not None:
        record_span(
            WorkflowToolSpan(
                name=call.name,
                call_id=call.id,
                start_ns=int(started.timestamp() * 1e9),
                end_ns=int(ended.timestamp() * 1e9),
                error=error,
                error_type=error_type,
            )
        )


def _local_tool_type(call: ToolCall, patched: bool, sealed: bool = False) -> str:
    """The activity type of a local tool call: its summary, e.g. ``calculator(2+2)``.

    The Web UI's timeline labels a local activity by its type only (the summary
    on its marker is not shown), so ``execute_tool`` for every local call read as
    nothing. The worker's dynamic activity (``execute_local_tool``) runs them.
    ``patched``: the run has LOCAL_TOOL_TYPE_PATCH. ``sealed``: the run's payloads
    are encrypted, and a type is plain text: ``calculator(…)`` (run version 6).
    """
    if sealed:
        return f"{call.name}(…)"
    return tool_summary(call) if patched else "execute_tool"


def _signal_payload(signal: str, kind: type[_Payload], payload: Sequence[Any]) -> _Payload | None:
    """A signal's one payload as ``kind``; None (and a warning) when absent or invalid.

    An invalid signal is dropped: raising here would fail the run (``ValidationError``
    is a failure type of this workflow) or its workflow task, over one bad signal.
    """
    try:
        (value,) = payload
        return kind.model_validate(value)
    except (ValueError, ValidationError) as err:  # ValueError: not exactly one payload
        workflow.logger.warning("signal %s dropped: invalid payload (%s)", signal, err)
        return None


COUNTER_ATTRIBUTES = frozenset({sa.STEPS.name, sa.TOKENS.name, sa.COST.name})
"""The search attributes that change with every step (see PUBLISH_THROTTLED_PATCH)."""


@workflow.defn(
    name=AGENT_WORKFLOW, failure_exception_types=[ValidationError], sandboxed=WORKFLOW_SANDBOX
)
class AgentWorkflow:
    """Runs one agent: model turn, tool calls, results back, until an answer or a budget stops it.

    Input that fails validation fails the run at once (``ValidationError`` is a
    failure type here), instead of a workflow task that retries forever; so
    does a start with no input or ``null`` (``input`` is then None), or with
    more than one (see :mod:`onward.workflows.inputs`).
    """

    @workflow.init
    def __init__(self, input: AgentInput | None = None, *extra: Any) -> None:
        # Raising here would fail the workflow task, again and again: ``run`` fails the run.
        self._given = Given.of(AgentInput, AGENT_WORKFLOW, (input, *extra), NO_INPUT)
        self._input = self._given.value or _PLACEHOLDER_INPUT
        self._budget: Budget = self._input.budget
        self._state: AgentState = "running"
        self._reason: str | None = None
        self._limit: BudgetLimit | None = None
        self._output: str | None = None
        self._usage = RunUsage()
        self._steps: list[StepRecord] = []
        self._step: StepRecord | None = None
        self._conversation = Conversation()
        self._tools: dict[str, ToolSpec] = {}
        self._structured: dict[str, Any] | None = None  # the final_answer call's arguments
        self._text_answers = 0  # answers in plain text to a run with output_schema
        self._tools_by_key = False  # the worker reads tool specs from the store by key
        self._sealed = False  # local tool calls typed without their arguments
        self._run_span_recorded = False  # the invoke_agent span, at the run's end
        self._steps_from_messages = False  # ... and fills step records in from the messages
        self._tools_kept = False  # this run's first model call has kept them there
        self._tools_key: str | None = None
        self._search_attributes: set[str] = set()
        self._published: dict[str, Any] = {}
        self._published_at: datetime | None = None  # the last upsert's workflow time
        self._throttled = False  # PUBLISH_THROTTLED_PATCH
        self._paused = False
        self._cancel_requested = False
        self._cancel_reason: str | None = None
        self._steering: list[str] = []
        # Steering already in the conversation, not yet shown in a step of the log.
        self._steered: list[str] = []
        self._failed_models: list[str] = []  # this step's models given up on (fallback_models)
        # Their context windows, when the run compacts at its model's (no input `context`).
        self._fallback_windows: dict[str, int | None] | None = None
        self._script_index = 0
        self._in_flight: list[asyncio.Task[Any]] = []
        self._started_calls: list[tuple[ToolCallRecord, asyncio.Task[ToolOutcome]]] = []
        """The current turn's started tool calls, for a native cancel to record."""
        self._turn_calls: list[ToolCall] = []
        """The tool calls of the current turn, in the model's order."""
        self._run_version = 0
        """The RUN_VERSION the run began with (``describe_worker`` says; 0: before them)."""
        self._started_at = workflow.now()
        self._ended_at: datetime | None = None
        self._finishing = False
        self._webhook_on_invalid_input = False  # decided in ``_prepare``
        self._offer_delegate = False  # decided in ``_prepare``: sub-agents
        self._lent: dict[str, Budget] = {}  # budget slices of sub-agents still running
        self._sub_agents: dict[str, workflow.ChildWorkflowHandle[Any, AgentResult]] = {}
        self._forwarding: set[asyncio.Task[None]] = set()  # pause/resume sent to sub-agents
        # -- human approval and artifacts ---------------------------
        self._pending: dict[str, PendingApproval] = {}
        self._decisions: dict[str, ApprovalRecord] = {}
        self._used_workspace = False
        self._artifacts_by_tool = False  # decided in ``_prepare``
        self._end_local = False  # decided first thing in ``run``
        self._artifacts: list[Artifact] | None = None
        # -- transcript store: this run's part of the conversation, and counters ---------
        self._use_store = False
        self._transcript: str | None = None
        self._base = 0  # messages the transcript held when this run began
        self._stored = 0  # messages the store holds for sure (sent or answered)
        self._steps_total = 0  # steps of the whole continue-as-new chain
        self._run_steps = 0  # steps of this run
        self._unwritten: list[StepRecord] = []  # closed, not yet sent to the store
        self._runs = 1
        self._context_tokens = 0  # estimated tokens the model is sent (compaction)
        self._tokens_counted = 0  # messages of this run in that estimate
        self._summary_step: int | None = None
        self._summary_covers = 0
        self._context = self._input.context  # or 80% of the model's window (see _prepare)
        # -- token streaming: model activities publish text to the "tokens" topic ---------
        # Registering its handlers adds no command, so old histories replay unchanged.
        # A next run of the chain goes on with the stream's offsets and last items.
        carried = self._input.carry.stream if self._input.carry else None
        self._stream = WorkflowStream(carried)
        self._stream_kept_from = carried.base_offset if carried else 0
        carry = self._input.carry
        if carry is not None:
            self._budget = carry.budget
            self._usage = carry.usage.model_copy()
            self._steps = list(carry.recent_steps)
            self._steps_total = carry.steps_total
            self._paused = carry.paused
            self._cancel_requested = carry.cancel_requested
            self._cancel_reason = carry.cancel_reason
            self._steering = list(carry.steering)
            self._steered = list(carry.steered)
            self._script_index = carry.script_index
            self._started_at = carry.started_at
            self._transcript = carry.transcript
            self._base = self._stored = carry.messages
            self._runs = carry.runs + 1
            self._context_tokens = carry.context_tokens
            self._summary_step = carry.summary_step
            self._summary_covers = carry.summary_covers
            self._used_workspace = carry.used_workspace
            self._text_answers = carry.text_answers

    # -- the loop -------------------------------------------------------------

    @workflow.run
    async def run(self, input: AgentInput | None = None, *extra: Any) -> AgentResult:
        """Run the agent; the result is returned whatever the outcome."""
        try:
            self._given.check()
        except (ApplicationError, ValidationError):
            self._end("failed", self._given.reason())
            raise
        if workflow.unsafe.is_replaying_history_events():
            # Runs begun before run versions asked these first thing: asked again, in
            # the same place. A run begun since asked none (they answer False) and
            # learns from describe_worker that it has them all (see ``_prepare``).
            self._throttled = workflow.patched(PUBLISH_THROTTLED_PATCH)
            self._end_local = self._throttled or workflow.patched(END_OF_RUN_LOCAL_PATCH)
        else:
            # This worker begins the run: it follows RUN_VERSION, so every patch.
            self._throttled = self._end_local = True
        try:
            try:
                await self._prepare()
                await self._loop()
            except _FinishNow as finish:
                await self._final_answer(finish.exceeded)
        except _RunEnded as end:
            self._end(end.state, end.reason, end.limit)
        except ApplicationError:
            # Input only the worker can check (tools, provider, approve_tools): ``_prepare``
            # ended the run as failed; its webhook hears of it like any failed run's.
            if self._state == "failed" and self._webhook_on_invalid_input:
                await self._deliver_webhook(self._result(), patched=True)
            raise
        except asyncio.CancelledError:
            # A native `temporal workflow cancel`: stop in-flight calls, keep the
            # partial results readable by query, and close as Cancelled.
            reason = "cancelled through Temporal (workflow cancel)"
            for task in self._in_flight:
                task.cancel()
            # A call that finished while its turn waited (on another call's approval,
            # say) keeps its result; only the unfinished ones are interrupted.
            for record, task in self._started_calls:
                finished = task.done() and not task.cancelled() and not _failed_late(task)
                if finished and record.status is None:
                    self._record_outcome(record, _outcome_of(task), None)
            for record in self._step.tool_calls if self._step else []:
                if record.result is None and record.error is None:
                    steplog.apply_outcome(record, steplog.interrupted(reason), "interrupted")
            await self._settle_sub_agents()
            self._end("cancelled", reason)
            # The workflow may still run an activity once cancelled: the log's end.
            await self._write_transcript(at_end=True)
            if self._input.delegation_depth > 0:
                # A sub-agent ends with its result, as on a cancel signal: its parent
                # waits for it to add up what it used.
                return self._result()
            # Natively cancelled runs are cancelled runs too: their webhook hears of it.
            if self._input.webhook_url and self._patched(WEBHOOK_ON_NATIVE_CANCEL_PATCH):
                await self._deliver_webhook(self._result())
            raise
        await self._write_transcript(at_end=True, local=self._end_local)
        # -- artifacts ------------------------------------------------
        await self._list_artifacts(local=self._end_local)
        # -- end artifacts ---------------------------------------------------------------
        result = self._result()
        await self._deliver_webhook(result)
        # Token subscribers waiting for more are answered now, not left as open updates.
        self._stream.detach_pollers()
        return result

    # -- webhook ---------------------------------------------------------

    async def _deliver_webhook(self, result: AgentResult, patched: bool = False) -> None:
        """POST ``result`` to the run's webhook_url with bounded, backed-off attempts.

        A receiver that is down only delays the close (at most the deadline), never fails it.
        ``patched``: a later patch already decided the delivery (no "webhook" marker needed).
        """
        if not self._input.webhook_url or not (patched or self._patched("webhook")):
            return
        with workflow.unsafe.imports_passed_through():
            from onward.activities.webhooks import WebhookActivities
            from onward.contracts import WebhookDelivery
        delivery = WebhookDelivery(
            url=self._input.webhook_url, run_id=workflow.info().workflow_id, result=result
        )
        try:
            await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                delivery,
                start_to_close_timeout=timedelta(seconds=15),
                schedule_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30),
                    maximum_attempts=5,
                ),
                summary=f"webhook {self._input.webhook_url.split('?', 1)[0][:120]}",
            )
        except ActivityError as err:
            workflow.logger.warning("webhook delivery failed: %s", _root_message(err))

    # -- end webhook ------------------------------------------------------------------

    def _decide_before_describe(self) -> tuple[bool, bool]:
        """Settle what a run decides before describe_worker, in the patches' order.

        Runs begun before run versions ask patches for these here: a patch marker
        must come before the local activity's, or replay finds the marker without
        its command. Returns whether the worker decides model attempts, and the
        context window.
        """
        if self._patched("elapsed-from-workflow-start"):
            # Time queued before a worker picked the run up counts against max_duration_s.
            self._started_at = workflow.info().workflow_start_time
        if self._input.carry is not None:
            self._started_at = self._input.carry.started_at  # the chain's wall-time start
        asked = self._input.tools
        # Offered only when named; runs begun before sub-agents asked the worker for it.
        self._offer_delegate = (
            asked is not None and DELEGATE.name in asked and self._patched(DELEGATE_PATCH)
        )
        attempts_from_worker = self._patched("model-attempts-from-worker")
        window_from_worker = self._patched("context-window")
        # The conversation and the step log go to the transcript store; runs begun
        # before it send the whole conversation with every model call.
        self._use_store = self._input.carry is not None or self._patched("transcript-store")
        # Asked here for the same reason: the invalid-input failure follows describe_worker.
        self._webhook_on_invalid_input = bool(self._input.webhook_url) and self._patched(
            WEBHOOK_ON_INVALID_INPUT_PATCH
        )
        # Asked here, before any call, so the run decides it once, in its first workflow task.
        self._artifacts_by_tool = self._patched(ARTIFACTS_BY_TOOL_PATCH)
        return attempts_from_worker, window_from_worker

    async def _prepare(self) -> None:
        asked = self._input.tools
        attempts_from_worker, window_from_worker = self._decide_before_describe()
        worker_tools = worker_tools_asked(asked, self._offer_delegate)
        description = await workflow.execute_local_activity_method(
            ToolActivities.describe_worker,
            WorkerDescriptionRequest(
                tools=worker_tools,
                model=self._input.model,
                fallback_models=self._input.fallback_models,
            ),
            start_to_close_timeout=DESCRIBE_WORKER_TIMEOUT,
            retry_policy=DESCRIBE_WORKER_RETRY,
            summary="describe worker tools",
        )
        self._run_version = description.run_version
        if description.run_version > RUN_VERSION:
            # Begun by a newer worker: this one would follow older rules (and name tool
            # specs the store never kept). Fail the task until a newer worker takes it.
            raise RuntimeError(
                f"this run began on run version {description.run_version}, this worker "
                f"knows up to {RUN_VERSION}: run a newer Onward worker on its task queue"
            )
        if description.run_version >= 1 and not self._end_local:
            # Replaying a run begun with a run version: it has every patch (see
            # ``run``), decided again without asking. (The request this replay built
            # is not sent: the local activity's recorded answer is read.)
            self._throttled = self._end_local = True
            attempts_from_worker, window_from_worker = self._decide_before_describe()
        offer_delegate = self._offer_delegate
        if description.unknown:
            self._end("failed", "invalid input: unknown tools")
            raise ApplicationError(
                str(unknown_tools_problem(description.unknown, description.available)),
                type=INVALID_INPUT,
                non_retryable=True,
            )
        for problem in unknown_provider_problems(self._input, description.providers):
            self._end("failed", "invalid input: unknown model provider")
            raise ApplicationError(str(problem), type=INVALID_INPUT, non_retryable=True)
        # -- sub-agents: a run names a workspace only as a sub-agent,
        # its parent's or root's; any other would reach into another run's files.
        info = workflow.info()
        ancestors = {run.workflow_id for run in (info.parent, info.root) if run is not None}
        if self._input.workspace is not None and self._input.workspace not in ancestors:
            self._end("failed", "invalid input: workspace")
            raise ApplicationError(
                str(WORKSPACE_PROBLEM),
                type=INVALID_INPUT,
                non_retryable=True,
            )
        self._tools = {spec.name: spec for spec in description.tools}
        for name, tool in WORKFLOW_TOOLS.items():
            if asked is None or name in asked:
                self._tools[name] = tool.spec
        if offer_delegate:
            self._tools[DELEGATE.name] = delegate_spec(self._run_version)
        if self._input.output_schema is not None:
            self._tools[final_answer.FINAL_ANSWER] = final_answer.answer_spec(
                self._input.output_schema
            )
        self._search_attributes = set(description.search_attributes)
        if description.run_version >= 1:
            # What the run was started with (OnwardClient sets the first values; a run
            # continued as new has its last run's) is not upserted again.
            self._published = sa.values_in(workflow.info().typed_search_attributes)
            self._published_at = workflow.now() if self._published else None
        self._tools_by_key = description.tools_by_key
        self._sealed = description.run_version >= 6 and description.sealed
        self._steps_from_messages = description.steps_from_messages
        unapprovable = unknown_approve_tools(self._input.approve_tools or [], self._tools)
        if unapprovable:
            self._end("failed", "invalid input: unknown approve_tools")
            raise ApplicationError(
                str(unknown_approve_tools_problem(unapprovable, self._tools)),
                type=INVALID_INPUT,
                non_retryable=True,
            )
        # -- model attempts ------------------------------------------
        # The worker's ONWARD_MODEL_MAX_ATTEMPTS is the one setting; runs begun before
        # workers sent it keep MODEL_RETRY_POLICY.
        self._model_retry = MODEL_RETRY_POLICY
        if attempts_from_worker and description.model_max_attempts is not None:
            self._model_retry = dataclasses.replace(
                MODEL_RETRY_POLICY, maximum_attempts=description.model_max_attempts
            )
        # -- end model attempts ------------------------------------------------------
        # -- context window: without the input's `context`, compact
        # at 80% of the model's window when the worker's pricing table knows it; runs
        # begun before this never compact.
        if self._context is None and window_from_worker and description.context_window:
            self._context = compaction.limit_for_window(description.context_window)
        if self._input.context is None and window_from_worker:
            # A fallback model compacts at its own window (see ``_fall_back``); a worker
            # that does not report them: none known.
            windows = description.fallback_context_windows or []
            fallbacks = self._input.fallback_models or []
            self._fallback_windows = dict(zip(fallbacks, windows, strict=False))
        # -- end context window -------------------------------------------------------
        carry = self._input.carry
        if carry is not None:
            # The tools the chain began with; the conversation is in the store.
            self._tools = {spec.name: spec for spec in carry.tools}
            self._publish()
            return
        if self._use_store:
            info = workflow.info()
            self._transcript = transcript_id(info.workflow_id, info.first_execution_run_id)
        conversation = self._input.conversation
        if conversation is not None and conversation.messages:
            await self._continue_conversation(conversation)
        elif self._input.system:
            self._conversation.add_system(self._input.system)
        self._conversation.add_user(self._input.prompt)
        self._publish()

    async def _continue_conversation(self, conversation: ConversationRef) -> None:
        """Begin this run's transcript with the conversation so far (a session's message).

        The messages are copied inside the store by an activity, so neither this
        history nor the session's holds them; the prompt follows them.
        """
        if self._transcript is None:
            raise _RunEnded("failed", "conversation: needs a worker with a transcript store")
        try:
            await workflow.execute_activity_method(
                ModelActivities.copy_conversation,
                ConversationCopy(source=conversation, target=self._transcript),
                start_to_close_timeout=WRITE_TRANSCRIPT_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,  # a dead worker: retried in 2 s, not 60
                retry_policy=WRITE_TRANSCRIPT_RETRY,
                summary="copy the conversation",
            )
        except ActivityError as err:
            raise _RunEnded(
                "failed", f"cannot read the conversation: {_root_message(err)}"
            ) from err
        self._base = self._stored = conversation.messages
        self._context_tokens = conversation.context_tokens

    async def _loop(self) -> None:
        while True:
            if self._time_to_continue_as_new():
                await self._continue_as_new()
            await self._checkpoint("model")
            response = await self._call_model(allow_tools=True)
            if response is None:
                continue  # interrupted by the deadline, and the budget was extended
            if self._input.output_schema is not None:
                if self._took_final_answer(response):
                    return
                if not response.tool_calls:
                    self._remind_to_answer_by_tool(response)
                    continue
            elif not response.tool_calls:
                self._output = response.text
                self._end("completed", steplog.cut_short(response.finish_reason))
                return
            await self._run_tool_calls(response.tool_calls)
            self._close_step()

    # -- structured output (output_schema) ------------------------------------------

    def _took_final_answer(self, response: ModelResponse) -> bool:
        """End the run if the model called final_answer with arguments that match the
        schema: the turn's other calls are not run. Else False (a mismatch is a tool
        error the model reads, from the tool pipeline)."""
        schema = self._input.output_schema
        assert schema is not None and self._step is not None
        taken = final_answer.taken_answer(schema, response.tool_calls)
        if taken is None:
            return False
        for call in response.tool_calls:
            record = ToolCallRecord(
                id=call.id, name=call.name, arguments=call.arguments, started_at=workflow.now()
            )
            answered = final_answer.answer_outcome(schema, call, taken)
            assert answered is not None
            outcome = self._record_outcome(record, *answered)
            self._step.tool_calls.append(record)
            # The conversation stays one a provider takes: every call has its result.
            self._conversation.add_tool_result(call, outcome, None)
        self._structured = taken.arguments
        self._output = final_answer.answer_text(taken.arguments)
        self._end("completed", final_answer.answer_reason(response.finish_reason))
        return True

    def _remind_to_answer_by_tool(self, response: ModelResponse) -> None:
        """An answer in plain text: ask for final_answer, or end the run once asked enough."""
        self._close_step()
        self._text_answers += 1
        if self._text_answers > final_answer.TEXT_ANSWERS_ALLOWED:
            self._output = response.text
            raise _RunEnded(
                "failed",
                f"the model answered in plain text {self._text_answers} times, not by "
                f"calling {final_answer.FINAL_ANSWER} as output_schema asks",
            )
        self._conversation.add_user(final_answer.answer_reminder())

    # -- continue-as-new ------------------------------------------------------------

    def _time_to_continue_as_new(self) -> bool:
        if not self._use_store or self._run_steps == 0:
            return False
        limit = self._input.continue_as_new_after or CONTINUE_AS_NEW_AFTER
        return self._run_steps >= limit or workflow.info().is_continue_as_new_suggested()

    async def _continue_as_new(self) -> None:
        """Go on in a fresh run, carrying references and counters, not the conversation."""
        assert self._transcript is not None
        # An update that is still running would be lost with this run. A token
        # subscriber's poll waits for items that may never come: it is let go (it
        # follows the chain to the next run); no command, so histories replay the same.
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._write_transcript(at_end=False)
        # Signals that came during the write are in this state; a signal that comes
        # while this workflow task completes makes the server retry the task, so
        # it is in the carry too.
        carry = AgentCarry(
            transcript=self._transcript,
            messages=self._stored,
            steps_total=self._steps_total,
            recent_steps=self._steps[-STEPS_CARRIED:],
            usage=self._usage,
            budget=self._budget,
            started_at=self._started_at,
            script_index=self._script_index,
            paused=self._paused,
            cancel_requested=self._cancel_requested,
            cancel_reason=self._cancel_reason,
            steering=self._steering,
            steered=self._steered,
            tools=list(self._tools.values()),
            runs=self._runs,
            context_tokens=self._tokens_now(),
            summary_step=self._summary_step,
            summary_covers=self._summary_covers,
            used_workspace=self._used_workspace,
            stream=self._stream.get_state() if self._stream_end() else None,
            text_answers=self._text_answers,
        )
        workflow.continue_as_new(self._input.model_copy(update={"carry": carry}))

    async def _write_transcript(self, at_end: bool, local: bool = False) -> None:
        """Send the messages and step records the store lacks (a small activity).

        ``local``: as a local activity (the end of a run, see ``_decide_the_end``); the
        write is at fixed positions, so a worker that dies during it leaves the task
        to another worker, which writes the same again.
        """
        if not self._use_store or self._transcript is None:
            return
        new = self._conversation.since(self._stored - self._base)
        if not new and not self._unwritten:
            return
        write = TranscriptWrite(
            id=self._transcript,
            count=self._base + len(self._conversation),
            new_messages=new,
            steps=self._unwritten,
        )
        try:
            if local:
                await workflow.execute_local_activity_method(
                    ModelActivities.write_transcript,
                    write,
                    start_to_close_timeout=WRITE_TRANSCRIPT_TIMEOUT,
                    retry_policy=WRITE_TRANSCRIPT_RETRY,
                    summary="write transcript",
                )
            else:
                await workflow.execute_activity_method(
                    ModelActivities.write_transcript,
                    write,
                    start_to_close_timeout=WRITE_TRANSCRIPT_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,  # a dead worker: retried in 2 s
                    retry_policy=WRITE_TRANSCRIPT_RETRY,
                    summary="write transcript",
                )
        except ActivityError as err:
            if not at_end:
                reason = f"cannot write the transcript: {_root_message(err)}"
                raise _RunEnded("failed", reason) from err
            # The run's outcome stands; only its full log in the store lacks the end.
            workflow.logger.warning("transcript not written: %s", _root_message(err))
            return
        self._stored = write.count
        self._unwritten = []

    async def _final_answer(self, exceeded: budgets.Exceeded) -> None:
        """One last model call with tools disabled (``on_exceeded="finish"``)."""
        self._close_step()
        self._finishing = True  # extend_budget is refused from here on
        reason = exceeded.message
        self._reason = reason
        self._limit = exceeded.limit
        while self._paused and not self._cancel_requested:
            self._set_state("paused", reason, exceeded.limit)
            await workflow.wait_condition(lambda: not self._paused or self._cancel_requested)
        if self._cancel_requested:
            raise _RunEnded("cancelled", self._cancel_reason or "cancelled by signal")
        self._set_state("running", reason, exceeded.limit)
        self._conversation.add_user(FINISH_PROMPT.format(reason=reason))
        response = await self._call_model(allow_tools=False, race_deadline=False)
        if response is not None:
            self._output = response.text
        self._end("budget_exceeded", reason, exceeded.limit)

    # -- gates ------------------------------------------------------------------

    async def _checkpoint(self, before: budgets.CallKind) -> None:
        """Return when a call of kind ``before`` may start: not paused, not cancelled, in budget."""
        while True:
            if self._cancel_requested:
                raise _RunEnded("cancelled", self._cancel_reason or "cancelled by signal")
            if self._paused:
                self._set_state("paused")
                await workflow.wait_condition(lambda: not self._paused or self._cancel_requested)
                continue
            exceeded = budgets.exceeded(self._budget, self._usage, self._elapsed_s(), before)
            if exceeded is None:
                self._set_state("running")
                return
            await self._on_exceeded(exceeded, before)

    async def _on_exceeded(self, exceeded: budgets.Exceeded, before: budgets.CallKind) -> None:
        """Stop, finish, or wait until ``extend_budget`` lifts the limit (then return)."""
        if self._budget.on_exceeded == "stop":
            raise _RunEnded("budget_exceeded", exceeded.message, exceeded.limit)
        if self._budget.on_exceeded == "finish":
            raise _FinishNow(exceeded)

        def current() -> budgets.Exceeded | None:
            return budgets.exceeded(self._budget, self._usage, self._elapsed_s(), before)

        # Wait until this limit is lifted; if another one is still exceeded, say
        # that one instead of the stale reason, and wait again.
        late: budgets.Exceeded | None = exceeded
        while late is not None and not self._cancel_requested:
            self._set_state("budget_paused", late.message, late.limit)

            def lifted(name: BudgetLimit = late.limit) -> bool:
                now = current()
                return self._cancel_requested or now is None or now.limit != name

            await workflow.wait_condition(lifted)
            late = current()

    def _in_time(
        self,
        start: Callable[[datetime | None], asyncio.Task[_Result]],
        deadline: bool = True,
    ) -> asyncio.Task[_Result]:
        """Start a call a worker may begin only before the run's deadline (``start(not_after)``).

        A worker refuses an attempt the deadline has passed (``DeadlinePassed``);
        if ``extend_budget`` moved the deadline meanwhile, the call is started
        again with the new one. Runs begun before run version 3 give no deadline.
        """
        if self._run_version < 3 or not deadline or self._budget.max_duration_s is None:
            return start(None)
        not_after = self._deadline()
        calls = [start(not_after)]
        task = asyncio.create_task(self._again_if_extended(calls, not_after, start))

        def cancel_the_call(wrapper: asyncio.Task[_Result]) -> None:
            # Cancelled before its first step, the task never awaited the call it
            # started: cancel that here (a call it awaits, asyncio cancels itself).
            if wrapper.cancelled():
                calls[-1].cancel()

        task.add_done_callback(cancel_the_call)
        return task

    async def _again_if_extended(
        self,
        calls: list[asyncio.Task[_Result]],
        not_after: datetime,
        start: Callable[[datetime | None], asyncio.Task[_Result]],
    ) -> _Result:
        """The last of ``calls``'s result; started again if refused for a deadline since moved."""
        while True:
            try:
                return await calls[-1]
            except ActivityError as err:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled (a cancel, the deadline): so it reads, not as a failure.
                    raise asyncio.CancelledError from err
                if not _refused_late(err):
                    raise
                late = budgets.out_of_time(self._budget, self._elapsed_s())
                if late is not None or self._deadline() <= not_after:
                    # Not moved: the worker's clock is ahead of the run's. The run's own
                    # time says when it is up (``_race``'s timer cancels this then).
                    left = budgets.remaining_s(self._budget, self._elapsed_s())
                    if left:
                        await workflow.sleep(left)
                    raise
            not_after = self._deadline()
            calls.append(start(not_after))

    def _deadline(self) -> datetime:
        """When the run's wall time runs out (it has a ``max_duration_s``)."""
        assert self._budget.max_duration_s is not None
        return self._started_at + timedelta(seconds=self._budget.max_duration_s)

    async def _race(
        self, tasks: Sequence[asyncio.Task[Any]], deadline: bool = True
    ) -> Interruption | None:
        """Wait for ``tasks``; cancel them and return why if a cancel or the deadline comes first.

        A running call is never waited on past the wall-time limit: the wait is
        raced against a timer.
        """
        self._in_flight = list(tasks)

        def settled() -> bool:
            return self._cancel_requested or all(task.done() for task in tasks)

        while not settled():
            left = budgets.remaining_s(self._budget, self._elapsed_s()) if deadline else None
            if left is None:
                await workflow.wait_condition(settled)
            elif left > 0:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        settled, timeout=left, timeout_summary="max_duration_s"
                    )
            late = budgets.out_of_time(self._budget, self._elapsed_s()) if deadline else None
            if settled() or late is not None:
                break
            # extend_budget moved the deadline while we waited: wait again.
        self._in_flight = []
        if all(task.done() for task in tasks):
            if deadline and any(_failed_late(task) for task in tasks):
                # A worker refused a call for the deadline before the run read its timer.
                return budgets.out_of_time(self._budget, self._elapsed_s())
            return None
        for task in tasks:
            task.cancel()
        if self._cancel_requested:
            return self._cancel_reason or "cancelled by signal"
        return budgets.out_of_time(self._budget, self._elapsed_s())

    # -- model calls ------------------------------------------------------------

    async def _call_model(
        self, allow_tools: bool, race_deadline: bool = True, began: datetime | None = None
    ) -> ModelResponse | None:
        """Call the model; None when the deadline interrupted it and the run goes on.

        ``began``: when the step's first call began, for a call a fallback model makes
        after its model failed (the step's time includes the failed calls').
        """
        if not self._failed_models:
            # Else a fallback model's call, in the middle of the step (also when called
            # again after a deadline): a summary there would take the step's number from
            # the call and the failures with it. The next step compacts.
            await self._compact_if_needed()
        number = self._steps_total + 1
        for message in self._steering:
            self._conversation.add_user(message)
        # Shown with the first step whose model call answers after they were added.
        self._steered += self._steering
        self._steering.clear()
        # The step becomes current only once the model has answered: a call that
        # is interrupted or cancelled leaves no step behind.
        step = StepRecord(step=number, started_at=began or workflow.now(), model=self._input.model)
        transcript: TranscriptRef | None = None
        messages: list[Message] = []
        if self._use_store:
            transcript = self._transcript_ref()
        else:
            messages = self._conversation.for_model()
        tools = list(self._tools.values()) if allow_tools else []
        # The script is the scripted model's turns: another model's answers play none
        # (a run whose fallback is the scripted model begins it where that takes over).
        scripted = provider_of(self._input.model) == "scripted"
        tools_key = None
        if tools and transcript is not None and self._tools_by_key:
            # Kept in the store by this run's first call: later calls name them.
            tools_key = self._tools_key = self._tools_key or tool_specs_key(tools)
            if self._tools_kept:
                tools = []
        request = ModelRequest(
            model=self._input.model,
            messages=messages,
            transcript=transcript,
            tools=tools,
            tools_key=tools_key,
            allow_tools=allow_tools,
            step=number,
            scripted_turn=self._script_turn() if scripted else None,
            settings=self._input.settings,
            pricing=self._input.pricing,
            stream=self._input.stream and self._patched(TOKEN_STREAM_PATCH),
            # Past every attempt the step's failed models' retry policy allows.
            stream_attempt_offset=len(self._failed_models)
            * (self._model_retry.maximum_attempts or UNLIMITED_ATTEMPTS),
            clear_tool_results=self._input.clear_tool_results,
            require_price=self._budget.max_cost_usd is not None,
        )
        size = len(request.model_dump_json())
        limit = MAX_STORED_REQUEST_BYTES if self._use_store else MAX_MODEL_REQUEST_BYTES
        if size > limit:
            raise _RunEnded(
                "failed",
                f"the conversation is too large for one model call ({size} bytes; "
                f"the limit is {limit}): lower tools' max_result_chars",
            )
        handle = self._in_time(
            lambda not_after: workflow.start_activity_method(
                ModelActivities.call_model,
                request.model_copy(update={"not_after": not_after}),
                start_to_close_timeout=MODEL_CALL_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=self._model_retry,  # model attempts
                summary=model_summary(self._input.model, number),
            ),
            race_deadline,
        )
        interrupted = await self._race([handle], deadline=race_deadline)
        if request.stream:
            # The finished message goes to the step, so tokens need not stay in memory:
            # the call before this one's are dropped (a subscriber a little behind
            # still reads all of this call's).
            self._stream.truncate(self._stream_kept_from)
            self._stream_kept_from = self._stream_end()
        if interrupted is not None:
            if isinstance(interrupted, str):
                raise _RunEnded("cancelled", interrupted)
            await self._on_exceeded(interrupted, "model")
            return None
        step.steering, self._steered = self._steered, []
        try:
            response = handle.result()
        except ActivityError as err:
            if self._failed_models and _refused_as(err, MODEL_NOT_PRICED):
                # The fallback has no price: the models before it were asked and failed,
                # which the log keeps (trace, report), as when a fallback's provider fails.
                step.error, step.failed_models = _root_message(err), self._failed_models
                self._step = step
            _end_if_unpriced(err)  # else nothing was spent: no step to log
            if self._fall_back(err):
                self._steered = step.steering + self._steered  # shown with the answer
                await self._unpaused()  # the next model's call is a new call
                return await self._call_model(allow_tools, race_deadline, step.started_at)
            step.error = _root_message(err)
            step.failed_models = self._failed_models or None
            self._step = step  # kept in the log: it says what failed
            raise _RunEnded("failed", self._failed("model call", step.error)) from err
        if self._failed_models:
            step.failed_models, self._failed_models = self._failed_models, []
        self._step = step
        if scripted:
            self._script_index += 1
        if transcript is not None:
            # Written by the activity: the new messages, the steps and the reply.
            self._stored = transcript.count + 1
            self._unwritten = []
        self._tools_kept = self._tools_kept or request.tools_key is not None
        response = steplog.with_unique_call_ids(response, number)
        self._count_model_call(response)
        steplog.apply_response(step, response)
        self._conversation.add_assistant(response)
        if transcript is not None:
            # The store holds every message now. The reply stays: the step's record
            # travels slimmed by it (see ``_transcript_ref``).
            self._forget_before(len(self._conversation) - 1)
        return response

    def _failed(self, what: str, error: str) -> str:
        """The reason of a run whose model call failed, on every model it was given."""
        if not self._failed_models:
            return f"{what} failed: {error}"
        return f"{what} failed on all {len(self._failed_models) + 1} models; the last: {error}"

    async def _unpaused(self) -> None:
        """Return when not paused (a cancel ends the run): as ``_checkpoint``, budgets aside.

        Between a failed call and its fallback nothing was spent, and the state's reason
        (a ``finish`` call's limit) stays.
        """
        reason, limit = self._reason, self._limit
        while self._paused and not self._cancel_requested:
            self._set_state("paused", reason, limit)
            await workflow.wait_condition(lambda: not self._paused or self._cancel_requested)
        if self._cancel_requested:
            raise _RunEnded("cancelled", self._cancel_reason or "cancelled by signal")
        self._set_state("running", reason, limit)

    def _fall_back(self, err: ActivityError) -> bool:
        """Go on with the next of ``fallback_models`` if the provider failed the call.

        The run keeps the model that answers for its remaining steps (and its sub-agents
        and continued runs); the price override was the failed model's. False: no
        fallback is left, or the failure was not the provider's.
        """
        rest = self._input.fallback_models
        if not rest or not _provider_failed(err):
            return False
        self._failed_models.append(f"{self._input.model}: {_root_message(err)}")
        workflow.logger.warning(
            "model %s failed (%s); going on with %s", self._input.model, _root_message(err), rest[0]
        )
        self._input = self._input.model_copy(
            update={"model": rest[0], "fallback_models": rest[1:] or None, "pricing": None}
        )
        if self._fallback_windows is not None:
            # The window was the failed model's: the next one's (none known: no compaction,
            # as a run of that model begins), from the next step on.
            window = self._fallback_windows.get(rest[0])
            self._context = compaction.limit_for_window(window) if window else None
        return True

    def _forget_before(self, position: int) -> None:
        """Let go of the messages before ``position`` that the store holds.

        A cached run keeps only the messages it still sends or reads; their tokens
        are counted first (the compaction estimate covers every message).
        """
        position = min(position, self._stored - self._base)
        self._count_tokens_until(position)
        self._conversation.forget_before(position)

    def _count_tokens_until(self, position: int) -> None:
        """Add the messages before ``position`` not counted yet to the token estimate."""
        uncounted = self._conversation.since(self._tokens_counted)
        self._context_tokens += _tokens_of(uncounted[: max(position - self._tokens_counted, 0)])
        self._tokens_counted = max(self._tokens_counted, position)

    def _stream_end(self) -> int:
        """The offset after the last item published to the run's stream."""
        end: int = self._stream._on_offset()  # the offset query's answer; no public getter
        return end

    def _transcript_ref(self) -> TranscriptRef:
        """This run's messages by reference: only what the store lacks travels."""
        assert self._transcript is not None
        steps: list[StepRecord] = list(self._unwritten)
        left_out: list[str] = []
        if self._steps_from_messages:
            # What the messages already say travels once, in the messages.
            steps, left_out = steplog.slimmed(steps, self._conversation.held())
        return TranscriptRef(
            id=self._transcript,
            count=self._base + len(self._conversation),
            new_messages=self._conversation.since(self._stored - self._base),
            steps=steps,
            summary_step=self._summary_step,
            summary_covers=self._summary_covers,
            left_out=left_out,
        )

    async def _compact_if_needed(self) -> None:
        """Past the run's context limit, summarise older turns: a model call and a step."""
        limit = self._context
        if limit is None or not self._use_store:
            return
        self._count_tokens_until(len(self._conversation))
        if self._context_tokens <= limit.max_tokens:
            return
        number = self._steps_total + 1
        started = workflow.now()
        ref = self._transcript_ref()
        try:
            result = await workflow.execute_activity_method(
                ModelActivities.compact_transcript,
                CompactionRequest(
                    transcript=ref,
                    context=limit,
                    model=self._input.model,
                    step=number,
                    settings=self._input.settings,
                    pricing=self._input.pricing,
                    require_price=self._budget.max_cost_usd is not None,
                ),
                start_to_close_timeout=MODEL_CALL_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=self._model_retry,
                summary="compact the conversation",
            )
        except ActivityError as err:
            _end_if_unpriced(err)
            if self._fall_back(err):  # the same summary, asked of the next model
                await self._unpaused()
                await self._compact_if_needed()
                return
            raise _RunEnded("failed", self._failed("compaction", _root_message(err))) from err
        self._stored = ref.count  # the activity wrote the new messages and steps
        self._unwritten = []
        self._context_tokens = result.tokens
        if result.summary is None:
            return  # nothing older than the kept turns yet
        self._step = StepRecord(
            step=number,
            started_at=started,
            model=self._input.model,
            text=result.summary,
            usage=result.usage,
            cost_usd=result.cost_usd,
            cache_saved_usd=result.cache_saved_usd,
            compaction=True,
            failed_models=self._failed_models or None,
        )
        self._failed_models = []
        # Its tokens and cost count in the budget like any model call's.
        self._count_model_call(
            ModelResponse(
                text=result.summary,
                usage=result.usage,
                cost_usd=result.cost_usd,
                cache_saved_usd=result.cache_saved_usd,
            )
        )
        self._close_step()
        self._summary_step, self._summary_covers = number, result.covers

    def _script_turn(self) -> ScriptTurn | None:
        script = self._input.script or []
        return script[self._script_index] if self._script_index < len(script) else None

    def _count_model_call(self, response: ModelResponse) -> None:
        usage = self._usage
        usage.model_calls += 1
        usage.input_tokens += response.usage.input_tokens
        usage.output_tokens += response.usage.output_tokens
        usage.total_tokens = usage.input_tokens + usage.output_tokens
        usage.cached_input_tokens += response.usage.cached_input_tokens or 0
        usage.cache_write_tokens += response.usage.cache_write_tokens or 0
        if response.cache_saved_usd is not None:
            usage.cache_saved_usd = round(usage.cache_saved_usd + response.cache_saved_usd, 12)
        if response.usage.estimated:
            usage.tokens_estimated = True
        if response.cost_usd is None:
            usage.cost_known = False
        else:
            # Rounded so sums read as figures, not float noise (0.000049999999999999996).
            usage.cost_usd = round(usage.cost_usd + response.cost_usd, 12)

    # -- tool calls -------------------------------------------------------------

    async def _run_tool_calls(self, calls: list[ToolCall]) -> None:
        """Run the calls of one turn concurrently, each started only if the gates allow it."""
        assert self._step is not None
        self._turn_calls = calls
        started: list[tuple[ToolCall, ToolCallRecord, asyncio.Task[ToolOutcome]]] = []
        outcomes: dict[str, ToolOutcome] = {}
        stop: _RunEnded | _FinishNow | None = None
        interrupted: Interruption | None = None
        settle_first = self._patched("settle-started-calls-before-a-gate-waits")
        for call in calls:
            if settle_first and started and self._gate_blocks("tool"):
                # Calls already running finish (racing the deadline and cancel)
                # before this turn waits on a pause or a budget.
                interrupted = await self._race([task for _, _, task in started])
                if interrupted is not None:
                    break
            try:
                await self._checkpoint("tool")
            except (_RunEnded, _FinishNow) as err:
                stop = err
                break
            record = ToolCallRecord(
                id=call.id, name=call.name, arguments=call.arguments, started_at=workflow.now()
            )
            self._step.tool_calls.append(record)
            self._usage.tool_calls += 1
            task = self._through_pipeline(call, record)
            if isinstance(task, ToolOutcome):
                outcomes[call.id] = self._record_outcome(record, task, "refused")
                continue
            task.add_done_callback(functools.partial(self._stamp_duration, record))
            started.append((call, record, task))
            self._in_flight = [task for _, _, task in started]  # a native cancel stops them
            self._started_calls = [(record, task) for _, record, task in started]

        if started and interrupted is None:
            interrupted = await self._race([task for _, _, task in started])
        for call, record, task in started:
            status: ToolCallStatus | None = None
            if not task.done() or task.cancelled() or _failed_late(task):
                outcome, status = steplog.interrupted(_why(interrupted)), "interrupted"
            else:
                outcome = _outcome_of(task)
                if record.approval is not None and record.approval.decision == "rejected":
                    status = "refused"
            outcomes[call.id] = self._record_outcome(record, outcome, status)
        self._started_calls = []

        for call in calls:
            if call.id not in outcomes:
                record = ToolCallRecord(id=call.id, name=call.name, arguments=call.arguments)
                reason = stop.reason if stop else _why(interrupted)
                outcomes[call.id] = self._record_outcome(record, steplog.not_run(reason), "not_run")
                self._step.tool_calls.append(record)
            spec = self._tools.get(call.name)
            limit = spec.max_result_chars if spec is not None else None
            self._conversation.add_tool_result(call, outcomes[call.id], limit)

        if interrupted is not None:
            await self._settle_sub_agents()
        if isinstance(interrupted, str):
            raise _RunEnded("cancelled", interrupted)
        if interrupted is not None:
            await self._on_exceeded(interrupted, "tool")
        if stop is not None:
            raise stop

    def _gate_blocks(self, before: budgets.CallKind) -> bool:
        """Whether ``_checkpoint`` would wait or stop instead of returning at once."""
        return (
            self._cancel_requested
            or self._paused
            or budgets.exceeded(self._budget, self._usage, self._elapsed_s(), before) is not None
        )

    def _through_pipeline(
        self, call: ToolCall, record: ToolCallRecord
    ) -> asyncio.Task[ToolOutcome] | ToolOutcome:
        """Every tool call's one path: refuse, approve, start. A refusal is its outcome."""
        spec = self._tools.get(call.name)
        if spec is None:
            return steplog.refused(unknown_tool(call, self._tools))
        schema = self._input.output_schema
        if schema is not None and call.name == final_answer.FINAL_ANSWER:
            # Reached only when it does not match (see _took_final_answer): an error.
            answered = final_answer.answer_outcome(schema, call, None)
            assert answered is not None
            return asyncio.create_task(_at_once(answered[0]))
        if needs_approval(spec, self._input.approve_tools):
            if not self._patched(HUMAN_APPROVAL_PATCH):
                # Runs begun before approval existed refused such calls: they still do.
                return steplog.refused(approval_refusal(spec, call) or "requires approval")
            return asyncio.create_task(self._after_approval(spec, call, record))
        return self._start_tool(spec, call, record)

    # -- human approval ----------------------------------------------

    async def _after_approval(
        self, spec: ToolSpec, call: ToolCall, record: ToolCallRecord
    ) -> ToolOutcome:
        """Wait for a decision on ``call``; run it if approved, else the rejection is its outcome.

        Nothing is scheduled before the decision, so nothing runs unapproved,
        whichever worker replays the run. A cancel or the deadline interrupts
        the wait as it does a running call (``_race`` cancels this task).
        """
        assert self._step is not None
        seconds = self._input.approval_timeout_s
        now = workflow.now()
        self._pending[call.id] = PendingApproval(
            call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            step=self._step.step,
            requested_at=now,
            deadline=now + timedelta(seconds=seconds) if seconds is not None else None,
        )
        self._show_approvals()
        try:
            await workflow.wait_condition(
                lambda: call.id in self._decisions,
                timeout=seconds,
                timeout_summary="approval_timeout_s",
            )
        except TimeoutError:
            policy = self._input.on_approval_timeout
            self._decisions.setdefault(
                call.id,
                ApprovalRecord(
                    decision="approved" if policy == "approve" else "rejected",
                    by="timeout",
                    note=f"no decision within approval_timeout_s ({seconds:g} s)",
                    decided_at=workflow.now(),
                ),
            )
        except asyncio.CancelledError:
            # Not ``finally``: a run evicted from the worker's cache closes this
            # coroutine outside the workflow's event loop, where nothing may be published.
            self._pending.pop(call.id, None)
            self._show_approvals()
            raise
        self._pending.pop(call.id, None)
        self._show_approvals()
        decision = self._decisions.pop(call.id)
        record.approval = decision
        if decision.decision == "rejected":
            return steplog.refused(rejection(decision.note))
        # Approved while paused: it starts on resume, like any call.
        await workflow.wait_condition(lambda: not self._paused)
        if self._state == "paused" and self._patched(APPROVAL_SHOWS_PAUSE_PATCH):
            self._set_state("running")  # ``_show_approvals`` showed the pause
        return await self._start_tool(spec, call, record)

    def _show_approvals(self) -> None:
        """``awaiting_approval`` while any call waits; the card lists them either way."""
        if self._pending:
            self._set_state("awaiting_approval")
        elif self._state == "awaiting_approval":
            # A call decided while paused waits for resume: the run reads paused till then.
            paused = self._paused and self._patched(APPROVAL_SHOWS_PAUSE_PATCH)
            self._set_state("paused" if paused else "running")
        self._publish()

    def _decide(self, decision: ApprovalDecision, verdict: ApprovalRecord) -> ApprovalsDecided:
        # The validator refused a call decided already (the SDK runs each update's
        # validator and its handler in one go); a replayed history may hold two
        # decisions of one call from before: the last one counted then, and does.
        call_ids = chosen(self._pending.values(), decision)
        for call_id in call_ids:
            self._decisions[call_id] = verdict
        return ApprovalsDecided(call_ids=call_ids, decision=verdict.decision)

    # The decision is optional: `temporal workflow update execute --name approve`
    # without --input decides every pending call, as `{}` does.

    @workflow.update(name="approve")
    def approve(self, decision: ApprovalDecision | None = None) -> ApprovalsDecided:
        """Let a call waiting for approval run (``call_id``, or every pending call)."""
        decision = decision or ApprovalDecision()
        verdict = ApprovalRecord(
            decision="approved", by="person", note=decision.note, decided_at=workflow.now()
        )
        return self._decide(decision, verdict)

    def _read_decisions(self) -> dict[str, ApprovalRecord]:
        """The decisions the calls of the step log (and the step running) have read.

        For validators only (they do not run on replay): a call decided and read is
        named as decided in a refusal, not as a call that never waited.
        """
        steps = [*self._steps, *([self._step] if self._step is not None else [])]
        return {
            call.id: call.approval
            for step in steps
            for call in step.tool_calls
            if call.approval is not None
        }

    @approve.validator
    def _validate_approve(self, decision: ApprovalDecision | None = None) -> None:
        if self._cancel_requested:
            raise ValueError("the run is being cancelled: no call of it starts any more")
        decision = decision or ApprovalDecision()
        chosen(self._pending.values(), decision, self._decisions, self._read_decisions())

    @workflow.update(name="reject")
    def reject(self, decision: ApprovalDecision | None = None) -> ApprovalsDecided:
        """Refuse a call waiting for approval; the note is its result for the model."""
        decision = decision or ApprovalDecision()
        verdict = ApprovalRecord(
            decision="rejected", by="person", note=decision.note, decided_at=workflow.now()
        )
        return self._decide(decision, verdict)

    @reject.validator
    def _validate_reject(self, decision: ApprovalDecision | None = None) -> None:
        decision = decision or ApprovalDecision()
        chosen(self._pending.values(), decision, self._decisions, self._read_decisions())

    # -- artifacts -----------------------------------------------------

    def _patched(self, patch: str) -> bool:
        """``workflow.patched(patch)`` for a patch older than END_OF_RUN_LOCAL_PATCH.

        A run that has that patch began on code with every older one: they are all
        True, and asking them would only add a marker and an upsert each; so are
        they in a run begun with a run version (RUN_VERSION), which asks none. Runs
        begun before ask each as they did, where they did.

        Asking a patch for the first time after a local activity has failed replay
        ("patch marker ... no corresponding change command"): when the workflow
        task is heartbeated as the local activity ends, its marker can land in one
        task and the commands after it in the next, and on replay the result comes
        before that next task's patch markers are known. The end's local activities
        are only safe because its patches are no longer asked there.
        """
        return self._end_local or workflow.patched(patch)

    def _workspace_key(self, uses_workspace: bool = True) -> str | None:
        """The run whose workspace tool calls use: the root run's, so sub-agents share it.

        A call that ``uses_workspace`` makes the run list its artifacts at its end;
        in runs begun before ARTIFACTS_BY_TOOL_PATCH every call did.
        """
        if not self._patched(WORKSPACE_PER_RUN_PATCH):
            return None
        if uses_workspace or not self._artifacts_by_tool:
            self._used_workspace = True
        if self._input.workspace is not None:
            return self._input.workspace  # a sub-agent's: its parent's workspace
        info = workflow.info()
        return info.root.workflow_id if info.root is not None else info.workflow_id

    def _memory_scope(self) -> str | None:
        """The run's memory scope for its tool calls; None for runs begun before scopes."""
        if not self._patched(MEMORY_SCOPE_PATCH):
            return None
        return self._input.memory_scope or DEFAULT_MEMORY_SCOPE

    async def _list_artifacts(self, local: bool = False) -> None:
        """The files in the run's workspace, into the result; a failure only leaves them out.

        ``local``: as a local activity (the end of a run, see ``_decide_the_end``); it only
        reads.
        """
        if not self._used_workspace or not self._patched(ARTIFACTS_PATCH):
            return
        key = self._workspace_key()
        assert key is not None
        execute = (
            workflow.execute_local_activity_method if local else workflow.execute_activity_method
        )
        try:
            self._artifacts = await execute(
                ToolActivities.list_artifacts,
                ArtifactsRequest(workspace=key),
                start_to_close_timeout=LIST_ARTIFACTS_TIMEOUT,
                retry_policy=LIST_ARTIFACTS_RETRY,
                summary="list artifacts",
            )
        except ActivityError as err:
            workflow.logger.warning("artifacts not listed: %s", _root_message(err))
        self._publish()

    def _start_tool(
        self, spec: ToolSpec, call: ToolCall, record: ToolCallRecord
    ) -> asyncio.Task[ToolOutcome]:
        """Start a call: inside the workflow for a workflow tool, else as an activity."""
        assert self._step is not None
        if spec.name == DELEGATE.name and self._offer_delegate:
            step = self._step.step
            return asyncio.create_task(_observed(call, lambda: self._delegate(call, record, step)))
        inside = WORKFLOW_TOOLS.get(spec.name)
        if inside is not None:
            run = inside.run
            return asyncio.create_task(_observed(call, lambda: run(call, tool_summary(call))))
        info = workflow.info()
        memory_scope = self._memory_scope()
        request = ToolRequest(
            name=call.name,
            arguments=call.arguments,
            call_id=call.id,
            idempotency_key=steplog.idempotency_key(
                info.workflow_id, info.run_id, self._step.step, call.id
            ),
            step=self._step.step,
            workspace=self._workspace_key(spec.uses_workspace),
            tenant=self._input.tenant if memory_scope is not None else None,
            memory_scope=memory_scope,
        )
        # The run's TTL and tenant key the tool activity's result cache.
        ttl_s = (self._input.cache_tools or {}).get(call.name)
        if (ttl_s is not None or self._input.tenant is not None) and self._patched(
            TOOL_CACHE_PATCH
        ):
            request.cache_ttl_s, request.tenant = ttl_s, self._input.tenant
        timeout = timedelta(seconds=spec.timeout_s)
        retry = RetryPolicy(
            initial_interval=TOOL_RETRY_INTERVAL, maximum_attempts=spec.max_attempts
        )
        if spec.local:
            patched = self._patched(LOCAL_TOOL_TYPE_PATCH)
            activity_type = _local_tool_type(call, patched, self._sealed)
            return self._in_time(
                lambda not_after: workflow.start_local_activity(
                    activity_type,
                    request.model_copy(update={"not_after": not_after}),
                    result_type=ToolOutcome,
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                    summary=tool_summary(call),
                )
            )
        return self._in_time(
            lambda not_after: workflow.start_activity_method(
                ToolActivities.execute_tool,
                request.model_copy(update={"not_after": not_after}),
                start_to_close_timeout=timeout,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=retry,
                summary=tool_summary(call),
            )
        )

    # -- sub-agents ---------------------------------------------------

    async def _delegate(self, call: ToolCall, record: ToolCallRecord, step: int) -> ToolOutcome:
        """Run a sub-agent as a child workflow; its end is this call's outcome.

        The child gets a slice of what this run has left, and its usage is added
        to this run's when it ends. Cancelling this task (a cancel, the deadline)
        cancels the child.
        """
        depth, model = self._input.delegation_depth, self._input.model
        offered = delegable(self._tools)
        error = check_delegate(call, depth, offered, model)
        if error is not None:
            return ToolOutcome(error=error)
        args = DelegateArgs.model_validate(call.arguments)
        budget = child_budget(
            self._budget,
            self._usage,
            self._elapsed_s(),
            args.max_tokens,
            self._lent.values(),
            # Run version 2: the turn's later sub-agents share what is left.
            later=self._later_delegates(call) if self._run_version >= 2 else (),
        )
        tools = args.tools if args.tools is not None else offered
        try:
            workspace = self._workspace_key(self._any_uses_workspace(tools))
            agent_input = child_input(self._input, args, budget, tools, workspace)
        except ValidationError as err:  # a bad model name, say
            return ToolOutcome(error=format_validation_error(call.name, err))
        ident = child_id(workflow.info().workflow_id, step, call.id)
        record.child_id = ident
        self._lent[ident] = budget
        try:
            handle = await start_delegate(agent_input, ident, summary=tool_summary(call))
            self._sub_agents[ident] = handle
            if self._paused:  # paused while it was starting: it waits with its parent
                self._tell_sub_agents("pause")
            result = await handle
        except ChildWorkflowError as err:
            return failure_outcome(ident, failure_message(err))
        except WorkflowAlreadyStartedError:
            return failure_outcome(ident, ID_TAKEN)
        finally:
            self._lent.pop(ident, None)
            self._sub_agents.pop(ident, None)
        roll_up(self._usage, result.usage)
        self._publish()
        return outcome_of(result, ident)

    def _later_delegates(self, call: ToolCall) -> list[int | None]:
        """The ``max_tokens`` of each valid ``delegate`` call of ``call``'s turn after it."""
        ids = [turn_call.id for turn_call in self._turn_calls]
        later = self._turn_calls[ids.index(call.id) + 1 :] if call.id in ids else []
        asked: list[int | None] = []
        for sibling in later:
            if sibling.name != DELEGATE.name:
                continue
            try:
                asked.append(DelegateArgs.model_validate(sibling.arguments).max_tokens)
            except ValidationError:
                continue  # it fails as it starts, taking nothing
        return asked

    def _any_uses_workspace(self, tools: list[str]) -> bool:
        """Whether a sub-agent with ``tools`` may write into the shared workspace."""
        return any(spec is None or spec.uses_workspace for spec in map(self._tools.get, tools))

    async def _settle_sub_agents(self) -> None:
        """Wait for interrupted sub-agents to end (bounded): their usage rolls up into this run's.

        Their ``delegate`` calls are already recorded as interrupted; what each
        sub-agent used up to its cancel still counts. Nothing waits in runs that
        have no sub-agent running.
        """
        if not self._lent:
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: not self._lent,
                timeout=SUB_AGENTS_SETTLE_TIMEOUT,
                timeout_summary="sub-agents ending",
            )

    def _stamp_duration(self, record: ToolCallRecord, task: asyncio.Task[ToolOutcome]) -> None:
        """Time and record a call when it ends, not when the slowest call of its turn does.

        A call with no ``status`` reads as running (``current_step``, ``now:`` lines),
        so one that finished says so at once; the turn's end records it the same way.
        """
        if record.started_at is not None and record.duration_ms is None:
            record.duration_ms = _ms(record.started_at)
        if record.status is not None or task.cancelled() or _failed_late(task):
            return  # the turn's end records it interrupted
        if task.exception() is not None and not isinstance(task.exception(), ActivityError):
            return
        rejected = record.approval is not None and record.approval.decision == "rejected"
        steplog.apply_outcome(record, _outcome_of(task), "refused" if rejected else None)

    def _record_outcome(
        self, record: ToolCallRecord, outcome: ToolOutcome, status: ToolCallStatus | None
    ) -> ToolOutcome:
        """Put ``outcome`` in the step log; return it, tagged with its call and step."""
        assert self._step is not None
        steplog.apply_outcome(record, outcome, status)
        if record.started_at is not None and record.duration_ms is None:
            record.duration_ms = _ms(record.started_at)
        return outcome.model_copy(update={"call_id": record.id, "step": self._step.step})

    # -- bookkeeping ------------------------------------------------------------

    def _close_step(self) -> None:
        if self._step is None:
            return
        self._step.duration_ms = _ms(self._step.started_at)
        # The SDK's workflow meter records nothing while replaying, so no step counts twice.
        workflow.metric_meter().create_histogram_timedelta(
            "onward.step.duration", "Duration of agent steps (model turn and its tools)", "ms"
        ).record(
            timedelta(milliseconds=self._step.duration_ms), {"onward.model": self._input.model}
        )
        self._steps.append(self._step)
        self._steps_total += 1
        self._run_steps += 1
        if self._use_store:
            self._unwritten.append(self._step)
            # The store holds them all; queries and the result hold the last ones.
            del self._steps[:-STEPS_KEPT]
        self._usage.steps = self._steps_total
        self._step = None
        self._publish()

    def _end(self, state: AgentState, reason: str | None, limit: BudgetLimit | None = None) -> None:
        self._close_step()
        self._ended_at = workflow.now()
        self._state = state
        self._reason = reason
        self._limit = limit
        self._publish()
        self._record_run_span()

    def _record_run_span(self) -> None:
        """The run's ``invoke_agent`` span (when the worker traces), once: not on replay.

        No command: an extern call, like a workflow tool's span, so histories replay as before.
        """
        record_span = workflow.extern_functions().get(RUN_SPAN_EXTERN)
        if record_span is None or self._run_span_recorded or workflow.unsafe.is_replaying():
            return
        self._run_span_recorded = True
        ended = self._ended_at or workflow.now()
        usage = self._usage
        # A session's message run is its session's child, and is given the conversation.
        parent = workflow.info().parent
        given = self._input.conversation is not None
        session = parent.workflow_id if parent is not None and given else None
        record_span(
            RunSpan(
                workflow_id=workflow.info().workflow_id,
                model=self._input.model,
                start_ns=int(self._started_at.timestamp() * 1e9),
                end_ns=int(ended.timestamp() * 1e9),
                status=self._state,
                reason=self._reason,
                steps=self._steps_total,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd if usage.cost_known else None,
                conversation_id=session,
            )
        )

    def _set_state(
        self, state: AgentState, reason: str | None = None, limit: BudgetLimit | None = None
    ) -> None:
        if (state, reason, limit) != (self._state, self._reason, self._limit):
            self._state = state
            self._reason = reason
            self._limit = limit
            self._publish()

    def _elapsed_s(self) -> float:
        end = self._ended_at or workflow.now()
        return (end - self._started_at).total_seconds()

    def _publish(self) -> None:
        """Show progress in the Web UI, and in search attributes where the server has them."""
        workflow.set_current_details(progress_card(self.status()))
        wanted: dict[str, Any] = {
            sa.STATUS.name: self._state,
            sa.MODEL.name: self._input.model,
            sa.STEPS.name: self._steps_total,
            sa.TOKENS.name: self._usage.total_tokens,
            # No call priced (a model with no price) is no figure, not $0 in lists; some
            # priced is what they cost (a tenant's spend ceiling sums it).
            sa.COST.name: round(self._usage.cost_usd, 8)
            if self._usage.cost_known or self._usage.cost_usd or self._run_version < 3
            else None,
        }
        if self._input.tenant:
            wanted[sa.TENANT.name] = self._input.tenant
        changed = {
            name: value
            for name, value in wanted.items()
            if name in self._search_attributes and self._published.get(name) != value
        }
        if not changed or self._counters_can_wait(changed):
            return
        keys = {key.name: key for key in sa.ALL}
        workflow.upsert_search_attributes(
            [
                keys[name].value_unset() if v is None else keys[name].value_set(v)
                for name, v in changed.items()
            ]
        )
        self._published.update(changed)
        self._published_at = workflow.now()

    def _counters_can_wait(self, changed: dict[str, Any]) -> bool:
        """Whether only the counters changed, in a running run, within PUBLISH_INTERVAL."""
        interval = PUBLISH_INTERVAL if self._run_version >= 4 else PUBLISH_INTERVAL_BEFORE_V4
        return (
            self._throttled
            and self._state not in FINAL_STATES
            and changed.keys() <= COUNTER_ATTRIBUTES
            and self._published_at is not None
            and workflow.now() - self._published_at < interval
        )

    def _result(self) -> AgentResult:
        return AgentResult(
            status=self._state,
            output=self._output,
            reason=self._reason,
            usage=self._usage_now(),
            steps=list(self._steps),
            limit=self._limit,
            artifacts=self._artifacts,
            steps_total=self._steps_total if self._use_store else None,
            transcript=self._transcript,
            conversation=self._conversation_after(),
            script_played=self._script_index if self._input.script is not None else None,
            structured_output=self._structured,
        )

    def _conversation_after(self) -> ConversationRef | None:
        """The conversation including this run, for the next message (only when given one)."""
        if self._input.conversation is None or self._transcript is None:
            return None
        return ConversationRef(
            transcript=self._transcript,
            messages=self._base + len(self._conversation),
            context_tokens=self._tokens_now(),
        )

    def _tokens_now(self) -> int:
        """The estimated tokens of the whole conversation, its uncounted messages too.

        Counted a message at a time, as the compaction check counts them.
        """
        return self._context_tokens + _tokens_of(self._conversation.since(self._tokens_counted))

    def _usage_now(self) -> RunUsage:
        return self._usage.model_copy(update={"duration_s": round(self._elapsed_s(), 3)})

    # -- signals, queries, updates ------------------------------------------------

    # Signal handlers take ``*payload`` and validate it themselves: a handler with a
    # fixed signature raises TypeError when a client sends more arguments than it
    # takes (`temporal workflow signal --input a --input b`), and that fails the
    # workflow task again and again instead of dropping one bad signal.

    @workflow.signal(name="pause")
    def pause(self, *_payload: Any) -> None:
        """Stop starting new calls, between steps, until ``resume`` (no payload)."""
        if self._state not in FINAL_STATES:
            self._paused = True
            self._tell_sub_agents("pause")

    @workflow.signal(name="resume")
    def resume(self, *_payload: Any) -> None:
        """Undo ``pause`` (no payload)."""
        self._paused = False
        self._tell_sub_agents("resume")

    def _tell_sub_agents(self, signal: str) -> None:
        """Pass ``pause`` or ``resume`` on to the sub-agents running now (none: no command)."""
        for ident, handle in self._sub_agents.items():
            task = asyncio.create_task(self._signal_sub_agent(ident, handle, signal))
            self._forwarding.add(task)
            task.add_done_callback(self._forwarding.discard)

    async def _signal_sub_agent(
        self, ident: str, handle: workflow.ChildWorkflowHandle[Any, AgentResult], signal: str
    ) -> None:
        try:
            await handle.signal(signal)
        except FailureError as err:  # it ended meanwhile: nothing left to pause
            workflow.logger.info("%s not passed on to sub-agent %s: %s", signal, ident, err)

    @workflow.signal(name="cancel")
    def cancel(self, *payload: Any) -> None:
        """End the run as ``cancelled`` with the partial results; in-flight calls are cancelled.

        Payload: an optional :class:`CancelRequest`.
        """
        request = _signal_payload("cancel", CancelRequest, payload) if payload else None
        if payload and request is None:
            return  # malformed: dropped, as the SDK drops a payload it cannot decode
        if self._state not in FINAL_STATES and not self._cancel_requested:
            self._cancel_requested = True
            self._cancel_reason = (request.reason if request else None) or "cancelled by signal"

    @workflow.signal(name="steer")
    def steer(self, *payload: Any) -> None:
        """Add a user message to the conversation before the next model call.

        Payload: a :class:`SteerRequest`.
        """
        request = _signal_payload("steer", SteerRequest, payload)
        if request is not None:
            self._steering.append(request.message)

    @workflow.update(name="extend_budget")
    def extend_budget(self, extension: BudgetExtension | None = None) -> Budget:
        """Raise limits of a running or budget-paused agent; returns the new limits."""
        assert extension is not None  # the validator refuses none
        self._budget = budgets.apply_extension(self._budget, extension)
        self._publish()
        return self._budget

    @extend_budget.validator
    def _validate_extension(self, extension: BudgetExtension | None = None) -> None:
        if extension is None:  # `temporal workflow update execute` without --input
            raise ValueError('extend_budget takes one JSON object, e.g. {"max_tokens": 5000}')
        if self._state in FINAL_STATES:
            raise ValueError(f"extend_budget: the run has already ended ({self._state})")
        if self._input.delegation_depth > 0:
            # Its slice is never more than the parent has left: raised alone, the
            # sub-agent would spend past the parent's limits.
            parent = workflow.info().parent
            of = f" of {parent.workflow_id}" if parent is not None else ""
            raise ValueError(
                f"extend_budget: this run is a sub-agent{of}, whose budget is a slice of its "
                "parent's fixed when it started: extend the parent instead (that reaches "
                "the sub-agents it starts from then on, not one already running)"
            )
        if self._finishing:
            raise ValueError("extend_budget: the run is already giving its final answer")
        budgets.check_extension(self._budget, extension)

    @workflow.query(name="status")
    def status(self) -> AgentStatus:
        """State, finished steps, usage against budget and the last step."""
        return AgentStatus(
            state=self._state,
            step=self._steps_total,
            usage=self._usage_now(),
            budget=self._budget,
            last_step=self._steps[-1] if self._steps else None,
            reason=self._reason,
            model=self._input.model,
            limit=self._limit,
            pending_approvals=[] if self._state in FINAL_STATES else list(self._pending.values()),
            transcript=self._transcript,
            pausing=self._paused and self._state == "running",
            current_step=None if self._state in FINAL_STATES else self._step,
        )

    @workflow.query(name="steps")
    def steps(self) -> list[StepRecord]:
        """The step log: one record per finished step (the last STEPS_KEPT of long runs)."""
        return list(self._steps)

    @workflow.query(name="result")
    def result(self) -> AgentResult:
        """The result so far (the final result once the run has ended)."""
        return self._result()
