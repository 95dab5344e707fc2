"""A run's steps with how each call ran: what ``onward steps``, ``trace`` and ``report`` read.

Long runs keep only their last steps in queries and their result; the whole
step log is then read from the transcript store (``ONWARD_STORE``, the same
as the worker's), the steps a worker or the result gives over it.

The step log comes from the best source there is: the result of a closed run
(authoritative), else the ``steps`` query answered by a worker within
:data:`STEPS_QUERY_TIMEOUT`, else the event history alone (no worker needed,
see :mod:`onward.starter.history`). Attempts, retries and call timings always come
from the history, and the attempts of calls still running from the server's
pending-activity list.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from onward import search_attributes as sa
from onward import steplog
from onward.connection import DATA_CONVERTER, unanswered
from onward.contracts import FINAL_STATES, RunUsage, StepRecord, ToolCallRecord, Usage
from onward.delegation import roll_up
from onward.starter.calls import CallTrace, failure_message
from onward.starter.history import (
    HistoryStep,
    RunHistory,
    SessionHistory,
    reconstruct,
    session_history,
)
from onward.starter.sealed import opened_events, opened_pending
from onward.states import run_state
from onward.store import (
    StoreError,
    TranscriptStore,
    open_store,
    store_name,
    store_url,
    transcript_id,
)
from onward.workflows import AgentWorkflow

__all__ = [
    "STEPS_QUERY_TIMEOUT",
    "StepSource",
    "Trace",
    "TraceStep",
    "TraceToolCall",
    "build_trace",
    "load_step_log",
    "load_trace",
    "read_history",
    "run_status",
    "trace_of",
    "waiting_for",
]

STEPS_QUERY_TIMEOUT = timedelta(seconds=2)
"""How long ``steps`` and ``trace`` wait for a worker to answer before reading the history."""

StepSource = Literal["result", "query", "history"]
"""Where a step log came from: the closed run's result, a worker's answer, or the history."""


class TraceToolCall(ToolCallRecord):
    """A tool call of the step log, with how it ran (None: it never ran)."""

    call: CallTrace | None = None
    child: Trace | None = Field(
        default=None, description="the timeline of the sub-agent a delegate call started"
    )

    @property
    def pending(self) -> bool:
        """Asked for by the model and neither started nor answered yet."""
        return self.call is None and self.result is None and self.error is None


class TraceStep(BaseModel):
    """A step of the step log, with how its model call and tool calls ran."""

    step: int
    text: str = ""
    error: str | None = None
    steering: list[str] = Field(default_factory=list)
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    cache_saved_usd: float | None = None
    started_at: datetime | None = None
    duration_ms: int | None = None
    finished: bool = True
    model_call: CallTrace | None = None
    failed_models: list[str] | None = Field(
        default=None,
        description="the models that failed the step's call before ``model`` answered "
        "(fallback_models), each as '<model>: <error>'",
    )
    failed_model_calls: list[CallTrace] = Field(
        default_factory=list,
        description="how those failed calls ran (attempts, times), when the history shows them",
    )
    tool_calls: list[TraceToolCall] = Field(default_factory=list)


class Trace(BaseModel):
    """One run's timeline: the ``onward trace --json`` document."""

    workflow_id: str
    run_id: str | None = None
    status: str
    source: StepSource
    model: str | None = Field(
        default=None,
        description="the model the run went on with: its last step's (after a fallback, "
        "not the one it began with)",
    )
    tenant: str | None = None
    delegation_depth: int = Field(
        default=0,
        description="0: a run of its own; more: a sub-agent (its usage is in its parent's)",
    )
    started_at: datetime | None = None
    closed_at: datetime | None = None
    usage: RunUsage
    steps: list[TraceStep] = Field(default_factory=list)
    in_flight: list[CallTrace] = Field(default_factory=list)
    cut_off: list[CallTrace] = Field(
        default_factory=list,
        description="model calls the run's end interrupted (a cancel, the deadline, a "
        "terminate): no step holds them, and what they used is unknown",
    )
    unanswered: bool = False
    """A worker was asked for the step log and did not answer in time."""
    missing_steps: str | None = Field(
        default=None,
        description="which steps are not shown and why (the transcript store cannot be "
        "read, or is not the workers'); None: every step is",
    )
    first_step: int = Field(
        default=1,
        description="the first step this execution took: the steps before it are its "
        "continue-as-new chain's earlier runs' (carried along for reading)",
    )
    continued: bool = Field(
        default=False,
        description="this execution continued as new: the chain's next run holds its usage",
    )


TraceToolCall.model_rebuild()


def waiting_for(tool: TraceToolCall, status: str) -> Literal["approval", "start", "end"] | None:
    """Why a pending call of a run in ``status`` has no outcome; None: it is running.

    A paused run (a pause or a budget) lets the calls already running finish
    first, so its pending calls have not started: the workflow counts a call once
    it starts. A call that needs approval starts by waiting for it. A run that
    ended with calls pending (a terminate, a timeout) gave them no outcome.
    """
    if status in FINAL_STATES:
        # Ended: a call left without an outcome, started (a wait, a sub-agent) or not.
        return "end" if tool.result is None and tool.error is None else None
    if not tool.pending:
        return None
    if status == "awaiting_approval":
        return "approval"
    if status in ("paused", "budget_paused"):
        return "start"
    return None


def _traced_step(record: StepRecord, history: HistoryStep | None) -> TraceStep:
    calls = history.tool_calls if history else {}
    fields = record.model_dump(exclude={"tool_calls"})
    # Typed, whatever recorded the step: steps of older results keep these in prose, or
    # (steering) only in the history.
    fields["error"] = steplog.step_error(record)
    if history is not None and not record.steering:
        fields["steering"] = history.record.steering
    return TraceStep(
        **fields,
        finished=history.finished if history else True,
        model_call=history.model_call if history else None,
        failed_model_calls=history.failed_model_calls if history else [],
        tool_calls=[
            TraceToolCall(**call.model_dump(), call=calls.get(call.id))
            for call in record.tool_calls
        ],
    )


def _usage(history: RunHistory, steps: list[TraceStep], status: str) -> RunUsage:
    """What a run without a result has used, summed from its steps."""
    if history.result is not None:
        return history.result.usage
    finished = [step for step in steps if step.finished]
    tokens_in = sum(step.usage.input_tokens for step in steps)
    tokens_out = sum(step.usage.output_tokens for step in steps)
    answered = [s for s in steps if s.model_call is None or s.model_call.state == "completed"]
    end = history.closed_at or datetime.now(UTC)
    usage = RunUsage(
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        total_tokens=tokens_in + tokens_out,
        tool_calls=sum(
            waiting_for(call, status) != "start" for step in steps for call in step.tool_calls
        ),
        model_calls=len(answered),
        steps=len(finished),
        cost_usd=round(sum(step.cost_usd or 0.0 for step in steps), 8),
        cost_known=all(step.cost_usd is not None for step in answered),
        cached_input_tokens=sum(step.usage.cached_input_tokens or 0 for step in steps),
        cache_write_tokens=sum(step.usage.cache_write_tokens or 0 for step in steps),
        cache_saved_usd=round(sum(step.cache_saved_usd or 0.0 for step in steps), 8),
        duration_s=round((end - history.started_at).total_seconds(), 3)
        if history.started_at
        else 0.0,
    )
    for child in history.sub_agents.values():
        roll_up(usage, child)  # as the workflow does when a delegate call ends
    return usage


def _apply_pending(history: RunHistory, pending: list[PendingActivityInfo]) -> None:
    """Attempts of activities still running come from the server, not the history."""
    by_id = {info.activity_id: info for info in pending}
    traces = list(history.in_flight)
    for step in history.steps:
        traces += [step.model_call, *step.tool_calls.values()]
    for trace in traces:
        info = by_id.get(trace.id or "")
        if trace.kind != "activity" or trace.closed or info is None:
            continue
        trace.attempts = max(info.attempt, trace.attempts)
        if info.HasField("last_started_time"):
            trace.state = "started"
        if info.HasField("last_failure"):
            trace.last_failure = failure_message(info.last_failure)


def build_trace(
    workflow_id: str,
    run_id: str | None,
    status: str,
    history: RunHistory,
    steps: list[StepRecord] | None = None,
    source: StepSource = "history",
    earlier: Mapping[int, HistoryStep] | None = None,
) -> Trace:
    """Merge a step log (``steps``; None: the history's own) with how its calls ran.

    ``earlier``: steps of the runs a run continued as new from, as their histories
    show them (see :func:`load_trace`), by number.
    """
    by_number = {**(earlier or {}), **{step.record.step: step for step in history.steps}}
    if steps is None:
        traced = [_traced_step(step.record, step) for step in history.steps]
    else:
        traced = [_traced_step(record, by_number.get(record.step)) for record in steps]
        known = {record.step for record in steps}
        # A step whose tools are still running is in the history before any log.
        traced += [
            _traced_step(step.record, step)
            for step in history.steps
            if not step.finished and step.record.step not in known
        ]
    agent = history.input
    return Trace(
        workflow_id=workflow_id,
        run_id=run_id,
        status=status,
        source=source,
        model=steplog.model_now(agent.model if agent else None, [s.model for s in traced]),
        tenant=agent.tenant if agent else None,
        delegation_depth=agent.delegation_depth if agent else 0,
        # A run continued as new began with its chain's first execution: the carried
        # steps are timed from there, not before this execution's start.
        started_at=agent.carry.started_at if agent and agent.carry else history.started_at,
        closed_at=history.closed_at,
        usage=_usage(history, traced, status),
        steps=traced,
        in_flight=list(history.in_flight),
        cut_off=list(history.cut_off),
    )


def run_status(history: RunHistory, execution: WorkflowExecution | None) -> str:
    """The run's state: from its result, its published status, or how Temporal closed it."""
    if history.result is not None:
        return history.result.status
    if history.ended is not None:
        return history.ended
    published = execution.typed_search_attributes.get(sa.STATUS) if execution else None
    return run_state(execution.status if execution else None, published)


async def read_history(handle: WorkflowHandle[Any, Any]) -> RunHistory:
    """The run's history, reconstructed (no worker needed)."""
    return reconstruct(await _opened_history(handle))


async def read_session_history(handle: WorkflowHandle[Any, Any]) -> SessionHistory:
    """A session's latest run's history, read as a session's (no worker needed)."""
    return session_history(await _opened_history(handle))


async def _opened_history(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    events = opened_events(handle.fetch_history_events(), DATA_CONVERTER)
    return [event async for event in events]


async def _query_steps(handle: WorkflowHandle[Any, Any]) -> tuple[list[StepRecord] | None, bool]:
    """The ``steps`` query's answer (None: none), and whether it went unanswered in time."""
    try:
        records: list[StepRecord] = await handle.query(
            AgentWorkflow.steps, rpc_timeout=STEPS_QUERY_TIMEOUT
        )
    except WorkflowQueryFailedError:
        return None, False
    except RPCError as err:
        if unanswered(err):
            return None, True
        raise
    return records, False


_stores: dict[str, TranscriptStore] = {}
"""Stores opened by this process, by URL: a client command opens its store once."""


async def _store() -> TranscriptStore:
    """The store ``ONWARD_STORE`` names, opened once (StoreError: it cannot be)."""
    url = store_url(os.environ)
    if url not in _stores:
        _stores[url] = await open_store(url, DATA_CONVERTER.payload_codec)
    return _stores[url]


def _complete(records: list[StepRecord]) -> bool:
    """Whether ``records`` are a whole step log: steps 1, 2, ... with no gap."""
    return [record.step for record in records] == list(range(1, len(records) + 1))


async def _with_stored_steps(
    execution: WorkflowExecution, records: list[StepRecord]
) -> tuple[list[StepRecord], str | None]:
    """``records`` completed from the transcript store, and what is still missing.

    The second is None when the log is whole (or empty); else it says which steps
    the store could not give, and why, so that no reader takes a part for the whole.
    """
    first_run = _first_run(execution)
    carried = first_run != execution.run_id  # steps before this execution's are the chain's
    if (records and _complete(records)) or not (records or carried):
        return records, None  # whole, or a run that has taken no step yet
    try:
        store = await _store()
        stored = await store.steps(transcript_id(execution.id, first_run))
    except (StoreError, ValueError) as err:
        return records, _missing(records, f"the transcript store cannot be read ({err})")
    merged = {record.step: record for record in stored}
    merged.update({record.step: record for record in records})  # newer: the run's own
    whole = [merged[number] for number in sorted(merged)]
    if _complete(whole):
        return whole, None
    where = f"not in the transcript store at {store_name(store_url(os.environ))}"
    return whole, _missing(whole, f"{where} (ONWARD_STORE must name the workers' store)")


def _first_run(execution: WorkflowExecution) -> str:
    """The run id of the first execution of ``execution``'s chain (its own, if it is one)."""
    description = getattr(execution, "raw_description", None)
    info = description.workflow_execution_info if description is not None else None
    return (info.first_run_id if info is not None else "") or execution.run_id


def _missing(records: list[StepRecord], why: str) -> str:
    """Which steps before or between ``records`` are not shown, and ``why``."""
    if not records:
        return f"the steps of the chain's earlier runs are not shown: {why}"
    have = {record.step for record in records}
    gaps = [step for step in range(1, max(have) + 1) if step not in have]
    spans: list[str] = []
    for step in gaps:
        if spans and step - 1 not in have:  # the gap goes on
            spans[-1] = f"{spans[-1].split('-')[0]}-{step}"
        else:
            spans.append(str(step))
    counted = "step" if len(gaps) == 1 else "steps"
    return f"{counted} {', '.join(spans)} of {max(have)} not shown: {why}"


def _closed(execution: WorkflowExecution) -> bool:
    return execution.status not in (None, WorkflowExecutionStatus.RUNNING)


async def load_step_log(
    handle: WorkflowHandle[Any, Any],
) -> tuple[list[StepRecord], StepSource, bool, str | None]:
    """The finished steps of a run, where they came from (see the module docstring),
    whether a worker was asked for them and did not answer in time, and which steps
    are missing and why (None: none are)."""
    description = await handle.describe()  # an unknown id fails here
    unanswered = False
    if not _closed(description):
        records, unanswered = await _query_steps(handle)
        if records is not None:
            whole, missing = await _with_stored_steps(description, records)
            return whole, "query", False, missing
    history = await read_history(handle)
    if history.result is not None:
        whole, missing = await _with_stored_steps(description, history.result.steps)
        return whole, "result", unanswered, missing
    whole, missing = await _with_stored_steps(description, history.step_log)
    return whole, "history", unanswered, missing


def trace_of(
    execution: WorkflowExecution,
    history: RunHistory,
    records: list[StepRecord] | None = None,
    source: StepSource = "history",
) -> Trace:
    """The timeline of a listed or described run; a closed run's result wins over ``records``."""
    if history.result is not None:
        records, source = history.result.steps, "result"
    status = run_status(history, execution)
    return build_trace(execution.id, execution.run_id, status, history, records, source)


async def load_trace(
    handle: WorkflowHandle[Any, Any],
    children: Callable[[str], WorkflowHandle[Any, Any]] | None = None,
    runs: Callable[[str, str], WorkflowHandle[Any, Any]] | None = None,
) -> Trace:
    """A run's timeline, asking a worker for the step log of a running run first.

    With ``children`` (a workflow id's handle), each delegate call's sub-agent is
    traced too, into its call's ``child``; a sub-agent that cannot be read is left out.
    With ``runs`` (the handle of a workflow id's run, by run id), the steps a run
    carried over continue-as-new get how their calls ran (times, attempts) from the
    histories of the chain's earlier runs, as far back as the server keeps them.
    """
    description = await handle.describe()  # an unknown id fails here
    records: list[StepRecord] | None = None
    unanswered = False
    if not _closed(description):
        records, unanswered = await _query_steps(handle)
    history = await read_history(handle)
    pending = description.raw_description.pending_activities
    _apply_pending(history, await opened_pending(pending, DATA_CONVERTER))
    source: StepSource = "query" if records is not None else "history"
    if history.result is not None:
        records, source = history.result.steps, "result"
    own = records if records is not None else history.step_log
    full, missing = await _with_stored_steps(description, own)
    if full is not own:
        records = full  # a long run: the whole log from the store
    status = run_status(history, description)
    earlier = await _earlier_steps(history, description.id, records, runs) if runs else None
    trace = build_trace(
        description.id, description.run_id, status, history, records, source, earlier
    )
    trace.unanswered = unanswered
    trace.missing_steps = missing
    if children is not None:
        await _trace_children(trace, children, runs)
    return trace


async def _earlier_steps(
    history: RunHistory,
    workflow_id: str,
    records: list[StepRecord] | None,
    runs: Callable[[str, str], WorkflowHandle[Any, Any]],
) -> dict[int, HistoryStep]:
    """The steps of ``records`` that ``history`` lacks, from the chain's earlier runs.

    Read back from the run before, one history at a time, until every step is
    found or the chain (or what the server keeps of it) ends.
    """
    found: dict[int, HistoryStep] = {}
    wanted = {record.step for record in records or []}
    wanted -= {step.record.step for step in history.steps}
    previous = history.previous_run
    seen: set[str] = set()
    while previous is not None and previous not in seen and not wanted <= found.keys():
        seen.add(previous)
        try:
            earlier = await read_history(runs(workflow_id, previous))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            break  # past the namespace's retention
        for step in earlier.steps:
            found.setdefault(step.record.step, step)
        previous = earlier.previous_run
    return found


async def _trace_children(
    trace: Trace,
    children: Callable[[str], WorkflowHandle[Any, Any]],
    runs: Callable[[str, str], WorkflowHandle[Any, Any]] | None,
) -> None:
    """Trace the sub-agents of ``trace``'s delegate calls into their calls (the tree)."""
    for step in trace.steps:
        for call in step.tool_calls:
            if call.child_id is None:
                continue
            try:
                call.child = await load_trace(children(call.child_id), children, runs)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
