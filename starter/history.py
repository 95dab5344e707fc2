"""A run's step log rebuilt from its Temporal event history alone.

No worker is needed: the history holds every model request and response and
every tool request and outcome (:mod:`onward.starter.calls` pairs their events), so
the steps can be read back for a run that is still going, for one whose worker
is gone, and for one that closed without a result. For a run that completed,
its result (an :class:`~onward.contracts.AgentResult`) is the authoritative
step log; this reconstruction adds what only the history knows: attempts,
retries and when each call was scheduled and closed.

How the history maps to steps: a ``call_model`` activity for step N opens step
N once it has answered (or failed); its answer's tool calls are matched to the
executions that follow by typed data: regular ``execute_tool`` activities by
the step and call id in their input, local ones (whose markers record no input)
by the call id their outcome echoes. Timers of workflow tools (``wait``) carry
no payload at all, so their summary, the workflow's ``tool_summary`` of the
call, is the only thing that ties them to a call. Histories recorded before
those typed fields existed are read through the fallbacks of
:mod:`onward.steplog`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus

from onward import final_answer, steplog
from onward.contracts import (
    AgentInput,
    AgentResult,
    AgentState,
    Budget,
    CompactionRequest,
    CompactionResult,
    ModelRequest,
    ModelResponse,
    RunUsage,
    SessionInput,
    SessionResult,
    StepRecord,
    ToolCall,
    ToolCallRecord,
    ToolCallStatus,
    ToolOutcome,
    ToolRequest,
    ToolSpec,
    WorkerDescription,
    WorkerDescriptionRequest,
)
from onward.delegation import (
    DELEGATE,
    check_delegate,
    delegable,
    delegate_spec,
    failure_outcome,
    outcome_of,
    started_by,
)
from onward.errors import InvalidInput
from onward.sessions import add_usage
from onward.starter.approvals import ApprovalReader
from onward.starter.calls import (
    CHILD_WORKFLOW,
    RUN_LOCAL_ACTIVITIES,
    Call,
    CallPairing,
    CallTrace,
    decode,
    event_time,
    failure_message,
)
from onward.states import closed_reason, closed_state
from onward.tool_pipeline import approval_refusal, rejection, unknown_tool
from onward.workflow_tools import WORKFLOW_TOOLS
from onward.workflows.progress import tool_summary

__all__ = ["HistoryStep", "RunHistory", "SessionHistory", "reconstruct", "session_history"]

REQUEST_TYPES: dict[str, type[Any]] = {
    "call_model": ModelRequest,
    "execute_tool": ToolRequest,
    "describe_worker": WorkerDescriptionRequest,
    "compact_transcript": CompactionRequest,
    CHILD_WORKFLOW: AgentInput,
}
RESULT_TYPES: dict[str, type[Any]] = {
    "call_model": ModelResponse,
    "execute_tool": ToolOutcome,
    "describe_worker": WorkerDescription,
    "compact_transcript": CompactionResult,
    CHILD_WORKFLOW: AgentResult,
}
_ENDINGS: dict[EventType.ValueType, WorkflowExecutionStatus] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: WorkflowExecutionStatus.COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: WorkflowExecutionStatus.FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: WorkflowExecutionStatus.CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: WorkflowExecutionStatus.TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: WorkflowExecutionStatus.TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: (
        WorkflowExecutionStatus.CONTINUED_AS_NEW
    ),
}


@dataclass
class HistoryStep:
    """One step as the history shows it, with how its calls ran."""

    record: StepRecord
    model_call: CallTrace
    tool_calls: dict[str, CallTrace] = field(default_factory=dict)
    """By tool call id; calls that never ran (unknown tool, not started) have none."""
    finished: bool = True
    """False while tool calls of the step are still running or not yet started."""
    failed_model_calls: list[CallTrace] = field(default_factory=list)
    """The calls of the models that failed the step before ``model_call``
    (``fallback_models``), in the order they were tried."""


@dataclass
class RunHistory:
    """Everything :func:`reconstruct` read from one run's history."""

    input: AgentInput | None = None
    result: AgentResult | None = None
    ended: AgentState | None = None
    """How Temporal closed the run, in Onward's words (``completed``, ``cancelled``,
    ``terminated``, ...; see :func:`onward.states.closed_state`); None: running."""
    failure: str | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    steps: list[HistoryStep] = field(default_factory=list)
    in_flight: list[CallTrace] = field(default_factory=list)
    """Calls scheduled and not closed: a model call or tools still running (or waiting to)."""
    cut_off: list[CallTrace] = field(default_factory=list)
    """Model calls the run's end interrupted (a cancel, the deadline, a terminate): they
    left no step, as in the run's own step log."""
    approvals: ApprovalReader = field(default_factory=ApprovalReader)
    """Decisions people made on calls waiting for approval (human approval)."""
    sub_agents: dict[str, RunUsage] = field(default_factory=dict)
    """What each sub-agent that ended with a result used, by workflow id (its parent's
    usage includes it, as the workflow rolls it up when the delegate call ends)."""
    previous_run: str | None = None
    """The run id of the run this one continued (continue-as-new); None: the first run."""
    budget: Budget | None = None
    """The limits the last ``extend_budget`` of this run set; None: its input's."""
    _extensions: set[str] = field(default_factory=set)
    """Ids of ``extend_budget`` updates accepted and not yet completed."""
    _input_problem: str | None = None
    """Why the input does not fit the schema, a line per field (as the run's reason)."""

    @property
    def step_log(self) -> list[StepRecord]:
        """The finished steps, like the workflow's ``steps`` query answers."""
        return [step.record for step in self.steps if step.finished]


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(int((end - start).total_seconds() * 1000), 0)


@dataclass
class _Step:
    """A step being assembled: its model call and the executions of its tool calls."""

    model: Call
    response: ModelResponse | None
    previous: ModelRequest | None = None
    """The request of the step before (None: the first), to tell what this one added."""
    executions: dict[str, Call] = field(default_factory=dict)
    failed_models: list[str] = field(default_factory=list)
    """The models that failed this step before this call's (fallback_models)."""
    failed_calls: list[Call] = field(default_factory=list)
    """Their calls, as ``failed_models`` names them."""

    @property
    def number(self) -> int:
        request: ModelRequest = self.model.request
        return request.step

    @property
    def calls(self) -> list[ToolCall]:
        return self.response.tool_calls if self.response else []

    def attach(self, call: Call) -> None:
        """Match an execution without input (local activity, timer) to a tool call.

        A local activity's outcome echoes its call id. Legacy outcomes do not,
        and timers have no payload at all: their summary is the workflow's
        ``tool_summary`` of the call. A local activity whose summary matches
        nothing takes the first call still open; timers must match exactly (the
        run's deadline timer is one too).
        """
        if call.trace.kind == "child_workflow":
            self._attach_child(call)
            return
        is_timer = call.trace.kind == "timer"
        open_calls = [
            c
            for c in self.calls
            if c.id not in self.executions and (c.name in WORKFLOW_TOOLS) == is_timer
        ]
        echoed = call.result.call_id if isinstance(call.result, ToolOutcome) else None
        typed = [c for c in open_calls if echoed is not None and c.id == echoed]
        exact = [c for c in open_calls if tool_summary(c) == call.trace.summary]
        candidates = typed or exact or ([] if is_timer else open_calls)
        if candidates:
            match = candidates[0]
            self.executions[match.id] = call
            call.trace.role = "tool"
            call.trace.name = match.name
            call.trace.step = self.number

    def _attach_child(self, call: Call) -> None:
        """A sub-agent: its workflow id names the step and the delegate call that started it."""
        for c in self.calls:
            if c.name == DELEGATE.name and started_by(call.trace.id or "", self.number, c.id):
                self.executions[c.id] = call
                call.trace.role = "tool"
                call.trace.name = c.name
                call.trace.step = self.number
                return


class _Assembler:
    """Turns the paired calls of a history into steps (see the module docstring)."""

    def __init__(self, run: RunHistory, calls: list[Call]) -> None:
        self._run = run
        self._calls = calls
        self._steps: list[_Step] = []
        self._available: dict[str, ToolSpec] | None = None
        self._last_request: ModelRequest | None = None
        self._summaries: list[HistoryStep] = []  # compaction steps
        self._failed_summaries: dict[int, list[str]] = {}
        """Per step: the models whose summary call failed before a fallback's (compaction)."""
        self._went_on: dict[int, _Step] = {}
        """Per step: its failed call a fallback's interrupted call went on from."""

    def assemble(self) -> None:
        current: _Step | None = None
        for call in self._calls:
            if call.activity_type == "describe_worker":
                self._describe(call)
            elif call.activity_type == "call_model":
                current = self._model_call(call) or current
            elif call.activity_type == "compact_transcript":
                self._compaction(call)
            elif call.activity_type in RUN_LOCAL_ACTIVITIES:
                continue  # the end's transcript write and listing: no step's call
            elif call.activity_type == "execute_tool" and call.trace.kind == "activity":
                self._regular_tool(call, current)
            elif call.trace.kind == "local_activity" and isinstance(call.result, ToolOutcome):
                self._local_tool(call, current)
            elif current is not None and call.trace.kind in (
                "local_activity",
                "timer",
                "child_workflow",
            ):
                current.attach(call)
        asked = [c.request.step for c in self._calls if isinstance(c.request, ModelRequest)]
        for step in self._steps:
            later = any(number > step.number for number in asked)
            self._run.steps.append(self._finish(step, later))
        if self._summaries:
            self._run.steps = sorted(self._run.steps + self._summaries, key=lambda s: s.record.step)
        # Deadline timers and describe_worker belong to no step; a closed run has
        # nothing in flight (a terminated run's last call was never closed).
        ended = self._run.ended is not None
        if ended:
            self._run.cut_off = self._cut_off()
        self._run.in_flight = (
            []
            if ended
            else [
                call.trace
                for call in self._calls
                if not call.trace.closed and call.trace.step is not None
            ]
        )

    def _cut_off(self) -> list[CallTrace]:
        """The model call an ended run's end interrupted: none, or its last one.

        A run makes its model calls one at a time, so only the last can have been
        running when the run ended; one a worker refused as past the deadline
        never ran (the run ended over the deadline, not over the call).
        """
        models = [c for c in self._calls if c.activity_type in ("call_model", "compact_transcript")]
        if not models:
            return []
        last = models[-1]
        if last.refused or last.trace.state in ("completed", "failed", "timed_out"):
            return []
        return [last.trace] if last.trace.step is not None else []

    def _describe(self, call: Call) -> None:
        description = call.result
        if not isinstance(description, WorkerDescription):
            return
        asked = self._run.input.tools if self._run.input else None
        specs = {spec.name: spec for spec in description.tools}
        for name, tool in WORKFLOW_TOOLS.items():
            if asked is None or name in asked:
                specs[name] = tool.spec
        if asked is not None and DELEGATE.name in asked:
            # (a run begun before delegate existed failed at the start)
            specs[DELEGATE.name] = delegate_spec(description.run_version)
        schema = self._run.input.output_schema if self._run.input else None
        if schema is not None:
            specs[final_answer.FINAL_ANSWER] = final_answer.answer_spec(schema)
        self._available = specs

    def _model_call(self, call: Call) -> _Step | None:
        request = call.request
        if not isinstance(request, ModelRequest):
            return None
        call.trace.step = request.step
        call.trace.role = "model"
        call.trace.name = request.model
        # A summary no fallback made a step of: its failed models are said by the call.
        previous, failed = self._last_request, self._failed_summaries.get(request.step, [])
        failed_calls: list[Call] = []
        before = next((s for s in self._steps if s.number == request.step), None)
        before = before or self._went_on.get(request.step)
        if before is not None and before.response is None:
            # The step's call failed and the run went on with a fallback model: the
            # same step, sent what the failed call was sent.
            previous = before.previous
            failure = before.model.trace.failure or "failed"
            failed = [*before.failed_models, f"{before.model.request.model}: {failure}"]
            failed_calls = [*before.failed_calls, before.model]
        if call.trace.state == "completed" and isinstance(call.result, ModelResponse):
            response: ModelResponse | None = call.result
        elif call.trace.state in ("failed", "timed_out"):
            response = None
        else:  # in flight, or interrupted (an interrupted call leaves no step)
            if before is not None and before.response is None and before in self._steps:
                # ... nor does the failed call the run went on from with a fallback model,
                # kept for the step's next call (after a deadline extended, say).
                self._steps.remove(before)
                self._went_on[request.step] = before
            return None
        self._failed_summaries.pop(request.step, None)
        self._went_on.pop(request.step, None)
        step = _Step(call, response, previous, failed_models=failed, failed_calls=failed_calls)
        self._last_request = request
        self._steps = [s for s in self._steps if s.number != request.step] + [step]
        return step

    def _compaction(self, call: Call) -> None:
        """A summary of older turns is a step of its own (``compaction``), as recorded."""
        request, result = call.request, call.result
        if not isinstance(request, CompactionRequest):
            return
        call.trace.step = request.step
        call.trace.role = "model"
        call.trace.name = request.model
        if call.trace.state in ("failed", "timed_out"):
            # The run failed with it, or asked the next of its fallback_models.
            failure = f"{request.model}: {call.trace.failure or 'failed'}"
            self._failed_summaries.setdefault(request.step, []).append(failure)
        if not isinstance(result, CompactionResult) or result.summary is None:
            return  # in flight, failed, or nothing to summarise
        record = StepRecord(
            step=request.step,
            started_at=call.workflow_time,
            model=request.model,
            text=result.summary,
            usage=result.usage,
            cost_usd=result.cost_usd,
            cache_saved_usd=result.cache_saved_usd,
            compaction=True,
            failed_models=self._failed_summaries.pop(request.step, None),
        )
        if call.trace.closed_at is not None:
            record.duration_ms = _ms(record.started_at, call.trace.closed_at)
        self._summaries.append(HistoryStep(record, call.trace))

    def _regular_tool(self, call: Call, current: _Step | None) -> None:
        request = call.request
        if not isinstance(request, ToolRequest):
            return
        call.trace.role = "tool"
        call.trace.name = request.name
        number = steplog.request_step(request)
        step = next((s for s in reversed(self._steps) if s.number == number), current)
        if step is not None:
            step.executions[request.call_id] = call
            call.trace.step = step.number

    def _local_tool(self, call: Call, current: _Step | None) -> None:
        """A local tool activity, matched by the step and call id its outcome echoes."""
        outcome: ToolOutcome = call.result
        number = outcome.step
        step = next((s for s in reversed(self._steps) if s.number == number), current)
        if step is not None:
            step.attach(call)

    def _finish(self, step: _Step, later: bool) -> HistoryStep:
        model = step.model
        request: ModelRequest = model.request
        first = step.failed_calls[0] if step.failed_calls else model  # its first model call
        record = StepRecord(
            step=step.number,
            started_at=first.workflow_time,
            model=request.model,
            steering=steplog.steering_in(request, step.previous),
        )
        record.failed_models = step.failed_models or None
        if step.response is None:
            record.error = model.trace.failure or "failed"
        else:
            steplog.apply_response(record, step.response)
        ended = self._run.ended is not None
        traces: dict[str, CallTrace] = {}
        resolved = True
        schema = self._run.input.output_schema if self._run.input else None
        taken = final_answer.taken_answer(schema, step.calls) if schema is not None else None
        for call in step.calls:
            execution = step.executions.get(call.id)
            tool = self._tool_record(call, execution, ended or later, taken)
            if execution is not None:
                traces[call.id] = execution.trace
            if tool.error is None and tool.result is None:
                resolved = False
            record.tool_calls.append(tool)
        finished = ended or later or step.response is None or resolved
        closes = [model.trace.closed_at] + [t.closed_at for t in traces.values()]
        if finished and all(closes):
            record.duration_ms = _ms(record.started_at, max(c for c in closes if c))
        failed_traces = [call.trace for call in step.failed_calls]
        return HistoryStep(record, model.trace, traces, finished, failed_traces)

    def _tool_record(
        self, call: ToolCall, execution: Call | None, over: bool, taken: ToolCall | None = None
    ) -> ToolCallRecord:
        """``taken``: the turn's final answer (output_schema), which ended the run."""
        record = ToolCallRecord(id=call.id, name=call.name, arguments=call.arguments)
        record.approval = self._run.approvals.decided.get(call.id)
        if execution is None:
            never = self._never_ran(call, over, taken)
            if never is not None:
                outcome, status = never
                steplog.apply_outcome(record, outcome, status)
                if status != "not_run":
                    record.duration_ms = 0
            return record
        trace = execution.trace
        record.started_at = execution.workflow_time or trace.scheduled_at
        if not trace.closed:
            return record
        record.duration_ms = trace.latency_ms
        workflow_tool = WORKFLOW_TOOLS.get(call.name)
        if trace.kind == "child_workflow":
            record.child_id = trace.id
            if trace.id is not None and isinstance(execution.result, AgentResult):
                # Cut off or not, a sub-agent ends with its result: what it used counts.
                self._run.sub_agents[trace.id] = execution.result.usage
        if trace.state == "cancelled":
            # Why (a cancel, the deadline) is workflow state, not in the history.
            steplog.apply_outcome(record, ToolOutcome(error="interrupted"), "interrupted")
        elif trace.kind == "child_workflow" and trace.id is not None:
            if isinstance(execution.result, AgentResult):
                steplog.apply_outcome(record, outcome_of(execution.result, trace.id))
            elif trace.state != "completed":
                steplog.apply_outcome(record, failure_outcome(trace.id, trace.failure or "failed"))
        elif trace.state != "completed":
            failed = ToolOutcome(error=f"tool call failed: {trace.failure or 'failed'}")
            steplog.apply_outcome(record, failed)
        elif trace.kind == "timer" and workflow_tool is not None:
            steplog.apply_outcome(record, ToolOutcome(content=workflow_tool.timer_result(call)))
        elif isinstance(execution.result, ToolOutcome):
            steplog.apply_outcome(record, execution.result)
        return record

    def _never_ran(
        self, call: ToolCall, over: bool, taken: ToolCall | None = None
    ) -> tuple[ToolOutcome, ToolCallStatus] | None:
        """The outcome of a call with no execution, or None while it may still start."""
        approval = self._run.approvals.decided.get(call.id)
        if approval is not None and approval.decision == "rejected":
            return steplog.refused(rejection(approval.note)), "refused"
        schema = self._run.input.output_schema if self._run.input else None
        answered = final_answer.answer_outcome(schema, call, taken) if schema else None
        if answered is not None:  # the workflow decides these itself, with no execution
            return answered
        available = self._available
        spec = available.get(call.name) if available is not None else None
        if available is not None and spec is None:
            return steplog.refused(unknown_tool(call, available)), "refused"
        refusal = approval_refusal(spec, call) if spec is not None else None
        if refusal is not None and over:
            # Until the run moves on, such a call may be waiting for human approval;
            # who decided is in update events, not read here.
            return steplog.refused(refusal), "refused"
        workflow_tool = WORKFLOW_TOOLS.get(call.name)
        error = workflow_tool.check(call) if workflow_tool is not None else None
        if call.name == DELEGATE.name and available is not None:
            agent = self._run.input or AgentInput(prompt="(unknown)")
            error = check_delegate(call, agent.delegation_depth, delegable(available), agent.model)
        if error is not None:
            return ToolOutcome(error=error), "error"
        # Why (which limit, a cancel) is workflow state, not in the history.
        return (ToolOutcome(error="not run"), "not_run") if over else None


EXTEND_BUDGET_UPDATE = "extend_budget"
"""The update that raises a run's limits; its answer is the new ``Budget``."""


def _run_event(run: RunHistory, event: HistoryEvent) -> None:
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        attrs = event.workflow_execution_started_event_attributes
        run.input = decode(attrs.input, AgentInput)
        if run.input is None:
            run._input_problem = _input_problem(decode(attrs.input, object))
        run.started_at = event_time(event.event_time)
        run.previous_run = attrs.continued_execution_run_id or None
    elif kind in _ENDINGS:
        run.ended, run.failure = _ending(event)
        failed = event.workflow_execution_failed_event_attributes.failure
        if failed.application_failure_info.type == "ValidationError" and run._input_problem:
            # The failure is pydantic's text (type ValidationError, the contract): the
            # reason is worded as the run's own result words it, a line per field.
            run.failure = run._input_problem
        run.closed_at = event_time(event.event_time)
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            attrs_done = event.workflow_execution_completed_event_attributes
            run.result = decode(attrs_done.result, AgentResult)
    elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        if request.input.name == EXTEND_BUDGET_UPDATE:
            run._extensions.add(request.meta.update_id)
    elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
        attrs_update = event.workflow_execution_update_completed_event_attributes
        if attrs_update.meta.update_id in run._extensions:
            run._extensions.discard(attrs_update.meta.update_id)
            run.budget = decode(attrs_update.outcome.success, Budget) or run.budget


def _input_problem(raw: object) -> str | None:
    """Why ``raw`` is no ``AgentInput``, on one line naming each field; None if it is one."""
    try:
        AgentInput.model_validate(raw)
    except ValidationError as err:
        return str(InvalidInput.from_validation(err))
    return None


def _ending(event: HistoryEvent) -> tuple[AgentState, str | None]:
    """How a closing event closed the run, in Onward's words, and the failure it names."""
    kind = event.event_type
    status = _ENDINGS[kind]
    # A run that continued as new is over here; its next run goes on.
    if status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
        return "completed", None
    state = closed_state(status)
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        return state, failure_message(event.workflow_execution_failed_event_attributes.failure)
    # A terminate's reason (an empty proto field on any other closing event).
    detail = event.workflow_execution_terminated_event_attributes.reason or None
    return state, closed_reason(state, detail)


@dataclass
class SessionHistory:
    """What a session's history says without a worker: its input, and how it closed."""

    input: SessionInput | None = None
    result: SessionResult | None = None
    ended: AgentState | None = None
    """How Temporal closed it (see :attr:`RunHistory.ended`); None: still open."""
    failure: str | None = None
    turns: int = 0
    """Messages answered, by the whole chain (the earlier runs' from the carry)."""
    usage: RunUsage = field(default_factory=RunUsage)
    """What those messages' runs used."""


_CHILD_ENDINGS = {
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED,
}
"""How a message's run ends in its session's history (each is an answered message)."""


def session_history(events: Iterable[HistoryEvent]) -> SessionHistory:
    """Read a session's input, its messages' runs and its outcome from its latest run's history."""
    session = SessionHistory()
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attrs = event.workflow_execution_started_event_attributes
            session.input = decode(attrs.input, SessionInput)
            carry = session.input.carry if session.input is not None else None
            if carry is not None:
                session.turns, session.usage = carry.turns, carry.usage
        elif kind in _CHILD_ENDINGS:
            session.turns += 1
            if kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
                child = event.child_workflow_execution_completed_event_attributes
                answer = decode(child.result, AgentResult)
                if answer is not None:
                    session.usage = add_usage(session.usage, answer.usage)
        elif kind in _ENDINGS:
            session.ended, session.failure = _ending(event)
            if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                attrs_done = event.workflow_execution_completed_event_attributes
                session.result = decode(attrs_done.result, SessionResult)
    return session


def reconstruct(events: Iterable[HistoryEvent]) -> RunHistory:
    """Read a run's input, steps, calls and outcome from its history events (in order)."""
    run = RunHistory()
    pairing = CallPairing(REQUEST_TYPES, RESULT_TYPES)
    for event in events:
        _run_event(run, event)
        pairing.add(event)
        run.approvals.add(event)
    _Assembler(run, pairing.calls).assemble()
    return run
