"""Following a run live, and getting its result whatever way it ended.

``follow`` polls the ``status`` query, prints each step as it finishes and
each pause, and returns when the run closes. The end is taken from the
workflow's result; when a run closed without one (cancelled through Temporal,
terminated, failed on invalid input) the ``result`` query still gives the
steps it made, so every caller gets an :class:`~onward.contracts.AgentResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    TerminatedError,
    TimeoutError,
)
from temporalio.service import RPCError, RPCStatusCode

from onward.contracts import (
    FINAL_STATES,
    AgentResult,
    AgentState,
    AgentStatus,
    Budget,
    RunUsage,
    StepRecord,
)
from onward.errors import INVALID_INPUT
from onward.starter.errors import EXIT_FAILED, CliError, exit_code_for
from onward.starter.history import RunHistory
from onward.starter.remote import AgentHandle
from onward.starter.render import state_change, step_lines
from onward.starter.trace import read_history, trace_of
from onward.workflows import AgentWorkflow

__all__ = [
    "POLL_INTERVAL_S",
    "QUERY_TIMEOUT",
    "Outcome",
    "closed_status",
    "final_result",
    "follow",
    "status_of",
]

POLL_INTERVAL_S = 0.3
"""How often a followed run is asked for its status."""
QUERY_TIMEOUT = timedelta(seconds=5)
"""A query no worker answers within this long is reported as waiting for a worker."""

Emit = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its result, and Temporal's failure message if it closed without one."""

    result: AgentResult
    failure: str | None = None

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.result.status)


def _failure_message(cause: BaseException | None) -> str:
    if isinstance(cause, TerminatedError):
        return f"terminated through Temporal: {cause.message}"
    if isinstance(cause, CancelledError):
        return "cancelled through Temporal (workflow cancel)"
    if isinstance(cause, TimeoutError):
        return "timed out (Temporal workflow timeout)"
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause) if cause is not None else "failed"


async def _salvage(handle: AgentHandle, err: WorkflowFailureError) -> Outcome:
    """The result of a run that closed without returning one."""
    cause = err.cause
    message = _failure_message(cause)
    status: AgentState = "cancelled" if isinstance(cause, CancelledError) else "failed"
    try:
        partial = await handle.query(AgentWorkflow.result, rpc_timeout=QUERY_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError):
        partial = AgentResult(status=status, usage=RunUsage())
    invalid_input = isinstance(cause, ApplicationError) and cause.type == INVALID_INPUT
    keep_reason = partial.status == status and bool(partial.reason) and not invalid_input
    reason = partial.reason if keep_reason else message
    return Outcome(partial.model_copy(update={"status": status, "reason": reason}), message)


def closed_status(execution: WorkflowExecution, history: RunHistory) -> AgentStatus:
    """The status of a closed run, from its history alone (no worker, no query).

    A run that completed has its result; one Temporal closed (terminated, timed
    out, cancelled natively, failed on invalid input) has its failure and the
    steps the history shows. The budget is the one the run started with.
    """
    trace = trace_of(execution, history)
    result = history.result
    if result is not None:
        state, reason = result.status, result.reason
        records = result.steps
    else:
        state = history.ended or "failed"  # named by onward.states.closed_state
        reason = history.failure or f"{history.ended or 'closed'} through Temporal"
        records = history.step_log
    agent = history.input
    return AgentStatus(
        state=state,
        step=len(records),
        usage=trace.usage.model_copy(update={"cost_usd": round(trace.usage.cost_usd, 8)}),
        budget=agent.budget if agent else Budget(),
        last_step=records[-1] if records else None,
        reason=reason,
        model=agent.model if agent else None,
    )


async def status_of(handle: AgentHandle) -> AgentStatus:
    """A run's status: from the ``status`` query while it runs, else from its history.

    A closed run needs no worker. The query's clock is the workflow's, which
    stands still between tasks, so a running run's duration is measured here.
    """
    description = await handle.describe()
    if description.status not in (None, WorkflowExecutionStatus.RUNNING):
        return closed_status(description, await read_history(handle))
    try:
        status = await handle.query(AgentWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except WorkflowQueryFailedError as err:
        raise CliError(
            f"the worker could not answer the status of {handle.id} ({err}); "
            f"see what it did with: onward result {handle.id}",
            EXIT_FAILED,
        ) from err
    elapsed = (datetime.now(UTC) - description.start_time).total_seconds()
    duration_s = round(max(elapsed, 0.0), 3)
    cost_usd = round(status.usage.cost_usd, 8)
    usage = status.usage.model_copy(update={"duration_s": duration_s, "cost_usd": cost_usd})
    return status.model_copy(update={"usage": usage})


async def final_result(handle: AgentHandle) -> Outcome:
    """Wait for the run to close and return how it ended."""
    try:
        return Outcome(await handle.result())
    except WorkflowFailureError as err:
        return await _salvage(handle, err)


class _Follower:
    """Prints what is new in a run each time it is polled."""

    def __init__(self, handle: AgentHandle, emit: Emit, notice: Emit, task_queue: str) -> None:
        self.handle = handle
        self.emit = emit
        self.notice = notice
        self.task_queue = task_queue
        self.seen = 0
        self.state: AgentState | None = None
        self.told_waiting = False

    async def poll(self) -> None:
        try:
            status = await self.handle.query(AgentWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.UNAVAILABLE):
                raise
            if not self.told_waiting:
                self.notice(
                    f"-- waiting: no worker on task queue {self.task_queue!r} answers yet; "
                    "start one with: onward worker"
                )
                self.told_waiting = True
            return
        except WorkflowQueryFailedError:
            return  # the run is still being set up; ask again
        if status.step > self.seen:
            steps = await self.handle.query(AgentWorkflow.steps, rpc_timeout=QUERY_TIMEOUT)
            self.print_steps(steps[self.seen :])
        if status.state != self.state:
            first = self.state is None
            self.state = status.state
            if status.state not in FINAL_STATES and not (first and status.state == "running"):
                line = state_change(self.handle.id, status.state, status.reason)
                if line:
                    self.notice(line)

    def print_steps(self, steps: list[StepRecord]) -> None:
        for step in steps:
            for line in step_lines(step):
                self.emit(line)
        self.seen += len(steps)


async def follow(
    handle: AgentHandle,
    emit: Emit,
    *,
    task_queue: str,
    notice: Emit | None = None,
    interval_s: float = POLL_INTERVAL_S,
) -> Outcome:
    """Show a run's steps (``emit``) and pauses (``notice``) as they happen; return how it ended.

    ``notice`` defaults to ``emit``; ``--json`` commands send only notices, to
    stderr, so a run waiting for a worker or a budget extension is not silent.
    """
    ended = asyncio.create_task(final_result(handle))
    follower = _Follower(handle, emit, notice or emit, task_queue)
    try:
        while not ended.done():
            await follower.poll()
            await asyncio.wait({ended}, timeout=interval_s)
        outcome = ended.result()
        follower.print_steps(outcome.result.steps[follower.seen :])
        return outcome
    finally:
        if not ended.done():
            ended.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await ended  # collect its outcome or error, so none is logged as unretrieved
