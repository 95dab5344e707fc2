"""Reading one run: its status, how it ended, and what happens in it while it runs.

Print-free and argparse-free: :class:`~onward.client.OnwardClient` calls these
and the ``onward`` command renders what they return. ``follow`` yields typed
events (a step finished, the state changed, no worker, a call is being
retried, the end). The end is taken from the workflow's result; when a run
closed without one (cancelled through Temporal, terminated, failed on invalid
input) the ``result`` query still gives the steps it made, so every caller gets
an :class:`~onward.contracts.AgentResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    TerminatedError,
    TimeoutError,
)
from temporalio.service import RPCError, RPCStatusCode

from onward import search_attributes as sa
from onward import steplog
from onward.connection import DATA_CONVERTER, task_failing, unanswered
from onward.contracts import (
    FINAL_STATES,
    SESSION_WORKFLOW,
    AgentResult,
    AgentState,
    AgentStatus,
    Budget,
    BudgetLimit,
    CallRetry,
    RunUsage,
    StepRecord,
)
from onward.errors import INVALID_INPUT
from onward.starter.calls import failure_message
from onward.starter.history import RunHistory, SessionHistory
from onward.starter.sealed import opened_pending
from onward.starter.trace import (
    load_step_log,
    read_history,
    read_session_history,
    run_status,
    trace_of,
)
from onward.states import closed_reason, run_state
from onward.workflows import AgentWorkflow

__all__ = [
    "POLL_INTERVAL_S",
    "QUERY_TIMEOUT",
    "Ended",
    "FollowEvent",
    "Outcome",
    "Retrying",
    "StateChanged",
    "StatusSource",
    "StepFinished",
    "WaitingForWorker",
    "final_result",
    "follow",
    "history_status",
    "retrying_of",
    "status_of",
]

POLL_INTERVAL_S = 0.3
"""How often a followed run is asked for its status."""
DESCRIBE_INTERVAL_S = 1.0
"""How often a followed run's pending calls are read (for retries)."""
QUERY_TIMEOUT = timedelta(seconds=3)
"""A query no worker answers within this long is treated as having no worker."""

HasWorker = Callable[[str], Awaitable[bool]]
StatusSource = Literal["query", "history"]
"""Where a status came from: a worker's answer, or the event history."""


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its result, and Temporal's failure message if it closed without one."""

    result: AgentResult
    failure: str | None = None


@dataclass(frozen=True)
class StepFinished:
    """A step of the followed run finished."""

    record: StepRecord


@dataclass(frozen=True)
class StateChanged:
    """The followed run paused, was budget-paused, or runs again."""

    state: AgentState
    reason: str | None
    limit: BudgetLimit | None = None
    """The exceeded budget limit, while budget-paused."""


@dataclass(frozen=True)
class WaitingForWorker:
    """No worker polls (or answers on) the run's task queue; the run waits for one."""

    task_queue: str
    failing: bool = False
    """A worker polls, but the run's workflow task keeps failing on it (its log says why)."""


@dataclass(frozen=True)
class Retrying:
    """A model or tool call failed and Temporal retries it."""

    retry: CallRetry


@dataclass(frozen=True)
class Ended:
    """The run closed; always the last event."""

    outcome: Outcome


FollowEvent = StepFinished | StateChanged | WaitingForWorker | Retrying | Ended


def _failure_message(cause: BaseException | None) -> str:
    detail = cause.message if isinstance(cause, TerminatedError) else None
    reason = closed_reason(_closed_as(cause), detail)
    if reason is not None:
        return reason
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause) if cause is not None else "failed"


def _closed_as(cause: BaseException | None) -> AgentState:
    """The state of a run Temporal closed without its result, as its status reports it."""
    if isinstance(cause, CancelledError):
        return "cancelled"
    if isinstance(cause, TerminatedError):
        return "terminated"
    if isinstance(cause, TimeoutError):
        return "timed_out"
    return "failed"


async def _salvage(handle: WorkflowHandle[Any, Any], err: WorkflowFailureError) -> Outcome:
    """The result of a run that closed without returning one."""
    cause = err.cause
    message = _failure_message(cause)
    status = _closed_as(cause)
    try:
        partial = await handle.query(AgentWorkflow.result, rpc_timeout=QUERY_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError):
        partial = AgentResult(status=status, usage=RunUsage())
    invalid_input = isinstance(cause, ApplicationError) and cause.type == INVALID_INPUT
    keep_reason = partial.status == status and bool(partial.reason) and not invalid_input
    reason = partial.reason if keep_reason else message
    return Outcome(partial.model_copy(update={"status": status, "reason": reason}), message)


def retrying_of(pending: list[PendingActivityInfo]) -> CallRetry | None:
    """The call being retried (attempt 2 or later) among a run's pending activities."""
    for info in pending:
        if info.attempt > 1:
            failure = failure_message(info.last_failure) if info.HasField("last_failure") else None
            return CallRetry(
                activity=info.activity_type.name,
                attempt=info.attempt,
                max_attempts=info.maximum_attempts or None,
                last_failure=failure or None,
            )
    return None


def _elapsed_s(start: datetime) -> float:
    return round(max((datetime.now(UTC) - start).total_seconds(), 0.0), 3)


def history_status(execution: WorkflowExecution, history: RunHistory) -> AgentStatus:
    """A run's status from its history alone (no worker, no query).

    A run that completed has its result; one Temporal closed (terminated, timed
    out, cancelled natively, failed on invalid input) has its failure and the
    steps the history shows; a running run has the state it last published.
    The budget is the one the run started with, as its last ``extend_budget`` left it.
    """
    trace = trace_of(execution, history)
    result = history.result
    usage = trace.usage.model_copy(update={"cost_usd": round(trace.usage.cost_usd, 8)})
    reason: str | None
    if result is not None:
        state, reason, records = result.status, result.reason, result.steps
    elif history.ended is not None:
        state = history.ended  # named by onward.states.closed_state
        reason = history.failure or f"{history.ended} through Temporal"
        records = history.step_log
    else:
        state = run_state(execution.status, run_status(history, execution))
        reason, records = None, history.step_log
        carry = history.input.carry if history.input is not None else None
        began = carry.started_at if carry is not None else execution.start_time  # the chain's
        usage = usage.model_copy(update={"duration_s": _elapsed_s(began)})
    agent = history.input
    # A run continued as new keeps (and returns) only its latest steps in full.
    total = result.steps_total if result is not None else None
    return AgentStatus(
        state=state,
        step=total if total is not None else max(len(records), usage.steps),
        usage=usage,
        budget=history.budget or (agent.budget if agent else Budget()),  # as extended
        last_step=records[-1] if records else None,
        reason=reason,
        model=steplog.model_now(agent.model if agent else None, [r.model for r in records]),
        limit=result.limit if result is not None else None,
    )


def session_status(execution: WorkflowExecution, history: SessionHistory) -> AgentStatus:
    """A session's status from its history alone (no worker, no query).

    The history read is the session's latest run's: its input carries the session's
    settings (and what the earlier runs answered), its messages' runs what they used,
    and its result, once closed normally, the usage and turns of every message.
    """
    session, result = history.input, history.result
    if history.ended is None:
        state = run_state(execution.status, execution.typed_search_attributes.get(sa.STATUS))
    else:
        state = result.status if result is not None else history.ended
    usage = result.usage if result is not None else history.usage
    return AgentStatus(
        state=state,
        step=usage.steps,
        usage=usage,
        budget=session.budget if session is not None else Budget(),
        reason=result.reason if result is not None else history.failure,
        model=session.model if session is not None else None,
        transcript=result.conversation.transcript if result and result.conversation else None,
        turns=result.turns if result is not None else history.turns,
    )


def _closed(execution: WorkflowExecution) -> bool:
    return execution.status not in (None, WorkflowExecutionStatus.RUNNING)


async def status_of(
    handle: WorkflowHandle[Any, Any],
    has_worker: HasWorker,
    description: WorkflowExecutionDescription | None = None,
    began: datetime | None = None,
) -> tuple[AgentStatus, StatusSource]:
    """A run's status: from the ``status`` query while a worker answers, else from its history.

    A closed run, or a running one no worker polls for, needs no worker. The
    query's clock is the workflow's, which stands still between tasks, so a
    running run's duration is measured here, from ``began`` (when the run's chain
    of runs began, for a run continued as new; default: this run's start).

    ``description`` is the run's, when the caller has described it already.

    Raises:
        RPCError: from Temporal (an unknown id: ``NOT_FOUND``).
    """
    description = description or await handle.describe()
    pending = description.raw_description.pending_activities
    retry = retrying_of(await opened_pending(pending, DATA_CONVERTER))
    status: AgentStatus | None = None
    if not _closed(description) and await has_worker(description.task_queue):
        with contextlib.suppress(WorkflowQueryFailedError, asyncio.TimeoutError):
            status = await _query_status(handle)
    if status is None:
        if description.workflow_type == SESSION_WORKFLOW:
            session = await read_session_history(handle)
            return session_status(description, session), "history"
        found = history_status(description, await read_history(handle))
        return found.model_copy(update={"retrying": retry}), "history"
    update: dict[str, Any] = {"cost_usd": round(status.usage.cost_usd, 8)}
    if description.workflow_type != SESSION_WORKFLOW:
        # A session's is the time its messages took to answer, not the time it was open.
        update["duration_s"] = _elapsed_s(began or description.start_time)
    usage = status.usage.model_copy(update=update)
    return status.model_copy(update={"usage": usage, "retrying": retry}), "query"


async def _query_status(handle: WorkflowHandle[Any, Any]) -> AgentStatus | None:
    """The ``status`` query's answer; None when no worker answered in time."""
    try:
        answer: AgentStatus = await handle.query(AgentWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as err:
        if unanswered(err):
            return None
        raise
    return answer


async def final_result(handle: WorkflowHandle[Any, Any]) -> Outcome:
    """Wait for the run to close and return how it ended."""
    try:
        return Outcome(await handle.result())
    except WorkflowFailureError as err:
        return await _salvage(handle, err)


class _Follower:
    """Finds what is new in a run each time it is polled."""

    def __init__(self, handle: WorkflowHandle[Any, Any], task_queue: str, has_worker: HasWorker):
        self.handle = handle
        self.task_queue = task_queue
        self.has_worker = has_worker
        self.seen = 0  # the number of the last step shown
        self.state: AgentState | None = None
        self.waiting = False
        self.attempt: tuple[str, int] | None = None
        self.described_at = 0.0

    async def poll(self) -> list[FollowEvent]:
        events: list[FollowEvent] = []
        loop = asyncio.get_running_loop()
        if loop.time() - self.described_at >= DESCRIBE_INTERVAL_S:
            self.described_at = loop.time()
            events += await self._retries()
            if not await self.has_worker(self.task_queue):
                return events + self._waiting()
        try:
            status = await self.handle.query(AgentWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.UNAVAILABLE):
                raise
            return events + self._waiting(failing=task_failing(err))
        except WorkflowQueryFailedError:
            return events  # the run is still being set up; ask again
        self.waiting = False
        if status.step > self.seen:
            steps = await self.handle.query(AgentWorkflow.steps, rpc_timeout=QUERY_TIMEOUT)
            events += await self.new_steps(steps)
        if status.state != self.state:
            first = self.state is None
            self.state = status.state
            if status.state not in FINAL_STATES and not (first and status.state == "running"):
                events.append(StateChanged(status.state, status.reason, status.limit))
        return events

    def _waiting(self, failing: bool = False) -> list[FollowEvent]:
        if self.waiting:
            return []
        self.waiting = True
        return [WaitingForWorker(self.task_queue, failing)]

    async def _retries(self) -> list[FollowEvent]:
        description = await self.handle.describe()
        pending = await opened_pending(
            description.raw_description.pending_activities, DATA_CONVERTER
        )
        retry = retrying_of(pending)
        if retry is None:
            return []
        # By the call's activity id: a later call retried at the same attempt is news.
        call = next(info.activity_id for info in pending if info.attempt > 1)
        if (call, retry.attempt) == self.attempt:
            return []
        self.attempt = (call, retry.attempt)
        return [Retrying(retry)]

    async def new_steps(self, steps: list[StepRecord]) -> list[FollowEvent]:
        """The steps after the last one shown, by number.

        A run continued as new answers (and returns) only its latest steps: when
        those skip some, the whole log is read (from the store, for a long run).
        """
        fresh = [record for record in steps if record.step > self.seen]
        if fresh and fresh[0].step > self.seen + 1:
            whole, _, _, _ = await load_step_log(self.handle)
            fresh = [record for record in whole if record.step > self.seen] or fresh
        if fresh:
            self.seen = fresh[-1].step
        return [StepFinished(record) for record in fresh]


async def follow(
    handle: WorkflowHandle[Any, Any],
    *,
    task_queue: str,
    has_worker: HasWorker,
    interval_s: float = POLL_INTERVAL_S,
) -> AsyncIterator[FollowEvent]:
    """What happens in a run, as it happens, ending with :class:`Ended`."""
    ended = asyncio.create_task(final_result(handle))
    follower = _Follower(handle, task_queue, has_worker)
    try:
        while not ended.done():
            for event in await follower.poll():
                yield event
            await asyncio.wait({ended}, timeout=interval_s)
        outcome = ended.result()
        for event in await follower.new_steps(outcome.result.steps):
            yield event
        yield Ended(outcome)
    finally:
        if not ended.done():
            ended.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await ended  # collect its outcome or error, so none is logged as unretrieved
