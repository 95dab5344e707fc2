"""The model and tool calls of a run, paired up from its Temporal event history.

Temporal records a regular activity as ActivityTaskScheduled (type and input),
ActivityTaskStarted (written when the activity closes, with its last
``attempt``) and one closing event (Completed, Failed, TimedOut, Canceled),
all tied together by ``scheduled_event_id``. A local activity leaves a single
MarkerRecorded event (``core_local_activity``) whose ``data`` detail holds its
type, sequence number, attempt and times and whose ``result`` detail holds its
output, but not its input. The ``wait`` tool is a timer (TimerStarted with the
call's summary, then TimerFired or TimerCanceled). A ``delegate`` call is a child
workflow (StartChildWorkflowExecutionInitiated with its workflow id and input, then
ChildWorkflowExecutionStarted and a closing event, tied by ``initiated_event_id``),
cancelled by a RequestCancelExternalWorkflowExecutionInitiated naming it.

:class:`CallPairing` turns those events into :class:`Call` objects in history
order; :mod:`onward.starter.history` assembles them into steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field, computed_field
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent

from onward.connection import DATA_CONVERTER
from onward.delegation import ID_TAKEN
from onward.errors import DEADLINE_PASSED
from onward.markdown import unescape_markdown

__all__ = [
    "CHILD_WORKFLOW",
    "LOCAL_ACTIVITY_MARKER",
    "RUN_LOCAL_ACTIVITIES",
    "Call",
    "CallKind",
    "CallPairing",
    "CallState",
    "CallTrace",
    "decode",
    "decode_one",
    "event_time",
    "failure_message",
]

LOCAL_ACTIVITY_MARKER = "core_local_activity"
"""Marker name under which the SDK records a local activity's outcome."""

RUN_LOCAL_ACTIVITIES = frozenset({"describe_worker", "write_transcript", "list_artifacts"})
"""The workflow's own local activities, not tool calls: their markers keep their type
(the end's transcript write and artifact listing are local since ``end-of-run-local``)."""

CallKind = Literal["activity", "local_activity", "timer", "child_workflow"]
"""How a call ran: a regular activity, a local activity, a workflow timer (``wait``), or a
child workflow (``delegate``)."""

CHILD_WORKFLOW = "child_workflow"
"""The ``activity_type`` of a child workflow call: its key in request and result types."""
CallState = Literal["scheduled", "started", "completed", "failed", "timed_out", "cancelled"]
"""Where a call is; a cancel request already counts as ``cancelled`` (the run moved on)."""


class CallTrace(BaseModel):
    """How one model or tool call ran, as the event history tells it."""

    kind: CallKind
    role: Literal["model", "tool", "other"] = Field(
        default="other", description="other: the run's own timers and set-up"
    )
    name: str = Field(description="model name, or tool name")
    step: int | None = Field(default=None, description="the step the call belongs to")
    id: str | None = Field(
        default=None, description="activity id, timer id, or a child's workflow id"
    )
    summary: str | None = None
    state: CallState = "scheduled"
    attempts: int = Field(default=0, description="attempts made (0: not started yet)")
    scheduled_at: datetime | None = None
    closed_at: datetime | None = None
    failure: str | None = Field(default=None, description="why the call failed in the end")
    last_failure: str | None = Field(default=None, description="why the attempt before failed")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def retries(self) -> int:
        """Attempts after the first."""
        return max(self.attempts - 1, 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def latency_ms(self) -> int | None:
        """From scheduling to the outcome, retries and their back-off included."""
        if self.scheduled_at is None or self.closed_at is None:
            return None
        return max(int((self.closed_at - self.scheduled_at).total_seconds() * 1000), 0)

    @property
    def closed(self) -> bool:
        """Whether the call has its outcome (completed, failed, timed out or cancelled)."""
        return self.state in ("completed", "failed", "timed_out", "cancelled")


@dataclass
class Call:
    """A call with what went in and came out (decoded contract models, when known)."""

    trace: CallTrace
    activity_type: str
    request: Any = None
    result: Any = None
    workflow_time: datetime | None = None
    """The workflow's clock when it started the call (its ``workflow.now()``)."""
    refused: bool = False
    """A worker refused the call as past the run's deadline (shown as cancelled): it
    never ran."""
    failure_details: Payloads | None = None
    """The details of the error the call failed with in the end, when it gave any."""


_ACTIVITY_CLOSINGS: dict[EventType.ValueType, tuple[str, CallState]] = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: (
        "activity_task_completed_event_attributes",
        "completed",
    ),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("activity_task_failed_event_attributes", "failed"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: (
        "activity_task_timed_out_event_attributes",
        "timed_out",
    ),
}
"""The events that close an activity: where their attributes are, and the state they mean.
A completed one carries the result; the others the failure."""


_CHILD_EVENTS: dict[EventType.ValueType, tuple[str, CallState]] = {
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: ("", "scheduled"),
    EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: ("", "cancelled"),
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "start_child_workflow_execution_failed_event_attributes",
        "failed",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED: (
        "child_workflow_execution_started_event_attributes",
        "started",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: (
        "child_workflow_execution_completed_event_attributes",
        "completed",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "child_workflow_execution_failed_event_attributes",
        "failed",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: (
        "child_workflow_execution_canceled_event_attributes",
        "cancelled",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: (
        "child_workflow_execution_timed_out_event_attributes",
        "timed_out",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: (
        "child_workflow_execution_terminated_event_attributes",
        "failed",
    ),
}
"""The events of a child workflow: where their attributes are, and the state they mean."""


def event_time(stamp: Timestamp) -> datetime:
    """A protobuf timestamp as an aware UTC datetime."""
    return stamp.ToDatetime(tzinfo=UTC)


def _marker_time(value: Any) -> datetime | None:
    if not isinstance(value, dict) or "seconds" not in value:
        return None
    seconds = int(value["seconds"]) + int(value.get("nanos", 0)) / 1e9
    return datetime.fromtimestamp(seconds, UTC)


def decode(payloads: Payloads | None, kind: type[Any]) -> Any:
    """The first payload as ``kind``, or None when absent or not decodable (foreign history)."""
    if payloads is None or not payloads.payloads:
        return None
    return decode_one(payloads.payloads[0], kind)


def decode_one(payload: Payload, kind: type[Any]) -> Any:
    """One payload as ``kind``, or None when it does not decode."""
    try:
        return DATA_CONVERTER.payload_converter.from_payload(payload, kind)
    except Exception:  # noqa: BLE001 - a history of another version must not stop a trace
        return None


def _innermost(failure: Failure) -> Failure:
    """The cause an activity failure wraps (the activity's own error).

    The server wraps a retried call's last failure that is too large for it in one of
    its own ("Failure exceeds size limit."), with the failure (cut short) as its cause.
    """
    while failure.HasField("cause") and (
        failure.HasField("activity_failure_info") or failure.HasField("server_failure_info")
    ):
        failure = failure.cause
    return failure


def failure_message(failure: Failure) -> str:
    """The innermost useful message, as the workflow reports it ("rate limited")."""
    failure = _innermost(failure)
    if failure.HasField("application_failure_info"):
        return failure.message or failure.application_failure_info.type or "ApplicationError"
    return failure.message or "failed"


def failure_details(failure: Failure) -> Payloads | None:
    """The details the activity's own error carried (``ApplicationError(msg, *details)``)."""
    cause = _innermost(failure)
    if not cause.HasField("application_failure_info"):
        return None
    details = cause.application_failure_info.details
    return details if details.payloads else None


def refused_late(failure: Failure) -> bool:
    """Whether a call's failure is a worker's refusal to start it past the run's deadline.

    The workflow counts such a call as cut off by its deadline, not as failed.
    """
    cause = _innermost(failure)
    info = cause.application_failure_info
    return cause.HasField("application_failure_info") and info.type == DEADLINE_PASSED


def _summary(event: HistoryEvent) -> str | None:
    if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
        text = decode_one(event.user_metadata.summary, str)
        return text if isinstance(text, str) else None
    return None


def _plain_summary(event: HistoryEvent) -> str | None:
    """A summary written for the Web UI's markdown, as the text it shows."""
    summary = _summary(event)
    return None if summary is None else unescape_markdown(summary)


class CallPairing:
    """Pairs the events of activities, local activities and timers into :class:`Call` objects.

    Feed every event in order to :meth:`add`; :attr:`calls` lists the calls in
    the order they were started, each updated as its later events arrive.
    ``request_types``/``result_types`` map activity types to the contract
    models their input and output decode to.
    """

    def __init__(
        self, request_types: dict[str, type[Any]], result_types: dict[str, type[Any]]
    ) -> None:
        self._request_types = request_types
        self._result_types = result_types
        self.calls: list[Call] = []
        self._by_scheduled: dict[int, Call] = {}
        self._by_timer: dict[str, Call] = {}
        self._by_local_seq: dict[str, Call] = {}
        self._by_initiated: dict[int, Call] = {}
        self._by_child_id: dict[str, Call] = {}
        self._task_started: dict[int, datetime] = {}
        self._task_of_completion: dict[int, int] = {}

    def workflow_time(self, completed_event_id: int) -> datetime | None:
        """The workflow's clock in the task whose completion is ``completed_event_id``."""
        started = self._task_of_completion.get(completed_event_id)
        return None if started is None else self._task_started.get(started)

    def add(self, event: HistoryEvent) -> Call | None:
        """Take one event; return the call it created or changed, if any."""
        kind = event.event_type
        when = event_time(event.event_time)
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            self._task_started[event.event_id] = when
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            attrs = event.workflow_task_completed_event_attributes
            self._task_of_completion[event.event_id] = attrs.started_event_id
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            return self._scheduled(event, when)
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            return self._marker(event)
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            return self._timer_started(event, when)
        elif kind in (
            EventType.EVENT_TYPE_TIMER_FIRED,
            EventType.EVENT_TYPE_TIMER_CANCELED,
        ):
            return self._timer_closed(event, when)
        elif kind in _CHILD_EVENTS:
            return self._child(event, when)
        else:
            return self._activity_progress(event, when)
        return None

    # -- regular activities -------------------------------------------------------

    def _scheduled(self, event: HistoryEvent, when: datetime) -> Call:
        attrs = event.activity_task_scheduled_event_attributes
        activity_type = attrs.activity_type.name
        request_type = self._request_types.get(activity_type)
        call = Call(
            trace=CallTrace(
                kind="activity",
                name=activity_type,
                id=attrs.activity_id,
                summary=_summary(event),
                scheduled_at=when,
            ),
            activity_type=activity_type,
            request=decode(attrs.input, request_type) if request_type else None,
            workflow_time=self.workflow_time(attrs.workflow_task_completed_event_id) or when,
        )
        self._by_scheduled[event.event_id] = call
        self.calls.append(call)
        return call

    def _activity_progress(self, event: HistoryEvent, when: datetime) -> Call | None:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            call = self._by_scheduled.get(started.scheduled_event_id)
            if call is not None:
                call.trace.attempts = max(started.attempt, 1)
                if call.trace.state == "scheduled":
                    call.trace.state = "started"
                if started.HasField("last_failure"):
                    call.trace.last_failure = failure_message(started.last_failure)
            return call
        closing = _ACTIVITY_CLOSINGS.get(kind)
        if closing is not None:
            field, state = closing
            attrs = getattr(event, field)
            call = self._by_scheduled.get(attrs.scheduled_event_id)
            if call is not None:
                if state == "completed":
                    result_type = self._result_types.get(call.activity_type)
                    call.result = decode(attrs.result, result_type) if result_type else None
                else:
                    call.trace.failure = failure_message(attrs.failure)
                    call.failure_details = failure_details(attrs.failure)
                    if refused_late(attrs.failure):
                        state, call.refused = "cancelled", True
                self._close(call, state, when)
            return call
        if kind in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
        ):
            scheduled_id = (
                event.activity_task_cancel_requested_event_attributes.scheduled_event_id
                if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
                else event.activity_task_canceled_event_attributes.scheduled_event_id
            )
            call = self._by_scheduled.get(scheduled_id)
            # The workflow stops waiting when it asks for the cancel, not when the
            # worker confirms it, so the request already closes the call for the run.
            if call is not None and not call.trace.closed:
                call.trace.failure = "interrupted"
                self._close(call, "cancelled", when)
            return call
        return None

    @staticmethod
    def _close(call: Call, state: CallState, when: datetime) -> None:
        call.trace.state = state
        call.trace.closed_at = when

    # -- local activities -----------------------------------------------------------

    def _marker(self, event: HistoryEvent) -> Call | None:
        attrs = event.marker_recorded_event_attributes
        if attrs.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in attrs.details:
            return None
        data = decode(attrs.details["data"], dict)
        if not isinstance(data, dict):
            return None
        activity_type = str(data.get("activity_type", ""))
        if (
            activity_type not in self._result_types
            and activity_type not in RUN_LOCAL_ACTIVITIES
            and "execute_tool" in self._result_types
        ):
            # A local tool call is typed by its summary, ``calculator(2+2)``, so the
            # Web UI's timeline reads it (workflows/agent.py): it is an execute_tool call.
            activity_type = "execute_tool"
        seq = str(data.get("seq", data.get("activity_id", "")))
        call = self._by_local_seq.get(seq)
        if call is None:
            # The marker's task is the one that started the local activity unless
            # it ran past a workflow task; the worker's clock at scheduling says so.
            task_time = self.workflow_time(attrs.workflow_task_completed_event_id)
            scheduled = _marker_time(data.get("original_schedule_time"))
            times = [t for t in (task_time, scheduled) if t is not None]
            call = Call(
                trace=CallTrace(
                    kind="local_activity",
                    name=activity_type,
                    id=str(data.get("activity_id", seq)),
                    summary=_summary(event),
                    scheduled_at=min(times) if times else None,
                ),
                activity_type=activity_type,
                workflow_time=min(times) if times else None,
            )
            self._by_local_seq[seq] = call
            self.calls.append(call)
        call.trace.attempts = max(int(data.get("attempt") or 1), call.trace.attempts)
        # complete_time is the workflow's clock once the result is in (what the
        # workflow itself measures a call with), not the worker's wall clock. After
        # a retry that clock is frozen at the task that scheduled the back-off, so
        # the marker event's own time is the closer one.
        completed = _marker_time(data.get("complete_time"))
        if call.trace.attempts > 1 or completed is None:
            closed_at = event_time(event.event_time)
        else:
            closed_at = completed
        if attrs.HasField("failure"):
            message = failure_message(attrs.failure)
            if data.get("backoff"):  # a back-off timer follows, then another attempt
                call.trace.last_failure = message
                return call
            call.trace.failure = message
            call.refused = refused_late(attrs.failure)
            self._close(call, "cancelled" if call.refused else "failed", closed_at)
        else:
            result_type = self._result_types.get(activity_type)
            if "result" in attrs.details and result_type is not None:
                call.result = decode(attrs.details["result"], result_type)
            self._close(call, "completed", closed_at)
        return call

    # -- child workflows (delegate) -----------------------------------------------------

    def _child(self, event: HistoryEvent, when: datetime) -> Call | None:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            attrs = event.start_child_workflow_execution_initiated_event_attributes
            request_type = self._request_types.get(CHILD_WORKFLOW)
            initiated = Call(
                trace=CallTrace(
                    kind="child_workflow",
                    name=attrs.workflow_type.name,
                    id=attrs.workflow_id,
                    # Escaped for the Web UI since ab1c953 (a plain one reads the same).
                    summary=_plain_summary(event),
                    scheduled_at=when,
                ),
                activity_type=CHILD_WORKFLOW,
                request=decode(attrs.input, request_type) if request_type else None,
                workflow_time=self.workflow_time(attrs.workflow_task_completed_event_id) or when,
            )
            self._by_initiated[event.event_id] = initiated
            self._by_child_id[attrs.workflow_id] = initiated
            self.calls.append(initiated)
            return initiated
        if kind == EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            target = event.request_cancel_external_workflow_execution_initiated_event_attributes
            found = self._by_child_id.get(target.workflow_execution.workflow_id)
            # As for an activity: the parent stops waiting when it asks for the cancel.
            if found is not None and not found.trace.closed:
                found.trace.failure = "interrupted"
                self._close(found, "cancelled", when)
            return found
        field, state = _CHILD_EVENTS[kind]
        attrs = getattr(event, field)
        call = self._by_initiated.get(attrs.initiated_event_id)
        if call is None:
            return None
        if state == "started":
            call.trace.attempts = 1
            if call.trace.state == "scheduled":
                call.trace.state = "started"
        elif state == "completed":
            # Also when its parent cut it off (closed already): a sub-agent still ends with
            # its result, which says what it used.
            result_type = self._result_types.get(CHILD_WORKFLOW)
            call.result = decode(attrs.result, result_type) if result_type else None
            if not call.trace.closed:
                self._close(call, state, when)
        elif not call.trace.closed:
            if kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
                call.trace.failure = ID_TAKEN
            elif kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
                call.trace.failure = failure_message(attrs.failure)
            elif kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED:
                call.trace.failure = "terminated"
            elif state == "timed_out":
                call.trace.failure = "timed out"
            self._close(call, state, when)
        return call

    # -- timers -------------------------------------------------------------------------

    def _timer_started(self, event: HistoryEvent, when: datetime) -> Call:
        attrs = event.timer_started_event_attributes
        call = Call(
            trace=CallTrace(
                kind="timer",
                name="timer",
                id=attrs.timer_id,
                summary=_summary(event),
                scheduled_at=when,
                state="started",
                attempts=1,
            ),
            activity_type="timer",
            workflow_time=self.workflow_time(attrs.workflow_task_completed_event_id) or when,
        )
        self._by_timer[attrs.timer_id] = call
        self.calls.append(call)
        return call

    def _timer_closed(self, event: HistoryEvent, when: datetime) -> Call | None:
        if event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            call = self._by_timer.get(event.timer_fired_event_attributes.timer_id)
            if call is not None:
                self._close(call, "completed", when)
            return call
        call = self._by_timer.get(event.timer_canceled_event_attributes.timer_id)
        if call is not None:
            call.trace.failure = "interrupted"
            self._close(call, "cancelled", when)
        return call
