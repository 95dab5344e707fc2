"""A run's Server-Sent Events, read from its Temporal event history as it grows.

The history is the run's durable record: every model answer, tool call and
tool outcome is an event in it, written once however often a worker crashes
or an activity is retried (a retried activity keeps one scheduled event and
gets one closing event). So the stream long-polls the history
(``GetWorkflowExecutionHistory`` with ``wait_new_event``) and translates each
new history event into zero or more API events. An API event's ``id`` is
``history event id * 10 + n`` (``n`` its place among the API events of that
history event), so ids increase within the run and are the same on every
read: a client resuming with ``Last-Event-ID`` gets exactly the events after
it, with nothing lost and nothing repeated. No worker is needed to stream,
and a closed run streams its whole story and its result.

Events: ``state`` (the run's published state: running, paused,
budget_paused, completed ...), ``model_started``, ``model`` (a model's
decision: its text and tool calls, with usage and cost), ``model_error``,
``tool_started``, ``tool_result``, ``budget_warning`` (a limit is 80 % used),
``webhook`` (how the delivery to the run's ``webhook_url`` went, with its
attempts), ``token`` and ``stream_restart`` (a streamed model call's text, read
from the publish signals of the run's workflow stream, topic ``tokens``; a
batch's chunks of one call become one event), and last ``result`` (the
:class:`~onward.contracts.AgentResult`).
The ``wait`` tool (a workflow timer) shows in the ``model`` event that asked
for it and in the step log, not as tool events.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistoryEventFilterType
from temporalio.contrib.workflow_streams import PublishInput
from temporalio.converter import DataConverter, decode_typed_search_attributes
from temporalio.service import RPCError, RPCStatusCode

from onward import budget as budgets
from onward import search_attributes as sa
from onward.connection import DATA_CONVERTER
from onward.contracts import (
    TOKENS_TOPIC,
    AgentCarry,
    AgentInput,
    AgentResult,
    Budget,
    BudgetExtension,
    ModelRequest,
    ModelResponse,
    TokenChunk,
    ToolCall,
    ToolOutcome,
    ToolRequest,
    WebhookDelivery,
    WebhookOutcome,
)
from onward.starter.calls import Call, CallPairing, decode, decode_one
from onward.starter.history import EXTEND_BUDGET_UPDATE, REQUEST_TYPES, RESULT_TYPES
from onward.starter.sealed import opened_events

__all__ = ["CHAIN_EVENTS", "EVENT_TYPES", "WARN_AT", "EventTranslator", "RunEvent", "run_events"]

EVENT_TYPES = (
    "state",
    "model_started",
    "token",
    "stream_restart",
    "model",
    "model_error",
    "tool_started",
    "tool_result",
    "budget_warning",
    "webhook",
    "result",
)
WARN_AT = 0.8
"""A ``budget_warning`` is sent once a limit is this much used."""
CHAIN_EVENTS = 1_000_000
"""API ids per execution of a chain (continue-as-new): more than a run's history holds
(Temporal ends a run at 51,200 events; Onward's continue long before) times ``_PER_EVENT``."""
_PER_EVENT = 10
"""API ids per history event: ``history id * 10 + n``; the result takes ``n = 9``."""
_RESULT_SLOT = 9
"""The result's ``n`` on the closing history event (which has no events of its own); the
run's final state, when it did not publish it, takes the one before."""

_CLOSING = frozenset(
    {
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
        EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
        EventType.EVENT_TYPE_MARKER_RECORDED,
    }
)
_RUN_CLOSED = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)
_PUBLISH_SIGNAL = "__temporal_workflow_stream_publish"
"""The signal that carries a batch of workflow stream items (temporalio's workflow streams)."""
_LIMITS = ("max_tokens", "max_cost_usd", "max_tool_calls", "max_steps")


@dataclass(frozen=True)
class RunEvent:
    """One Server-Sent Event of a run."""

    id: int
    event: str
    data: dict[str, Any]


Item = tuple[str, dict[str, Any]]


def _pairing() -> CallPairing:
    """Pairs a run's calls with their outcomes: the model's, the tools' and the webhook's."""
    return CallPairing(
        {**REQUEST_TYPES, "deliver_webhook": WebhookDelivery},
        {**RESULT_TYPES, "deliver_webhook": WebhookOutcome},
    )


@dataclass
class EventTranslator:
    """Turns a run's history events, fed in order, into API events."""

    budget: Budget = field(default_factory=Budget)
    closed: bool = False
    result: AgentResult | None = None
    continued_as: str | None = None
    """The run id of the execution this one continued as (None: it has not)."""
    _pairing: CallPairing = field(default_factory=lambda: _pairing())
    _state: str | None = None
    _used: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_LIMITS, 0.0))
    _warned: set[tuple[str, float]] = field(default_factory=set)
    _asked: dict[str, ToolCall] = field(default_factory=dict)
    """The tool calls the model asked for, by id: a local tool's marker names neither."""
    _started: set[int] = field(default_factory=set)
    _ended: set[int] = field(default_factory=set)
    _publishers: dict[str, int] = field(default_factory=dict)
    _restarted: dict[int, int] = field(default_factory=dict)
    """The attempt each restarted streamed call is on: text of an older attempt that
    comes after the restart (a stalled worker's, woken) is not the call's."""
    resumed: bool = False
    """Reading starts at a continued execution whose earlier events the reader had: its
    started event's state is taken as known, as a read of the whole chain had it."""

    def add(self, event: HistoryEvent) -> list[RunEvent]:
        """The API events of one history event (most have none)."""
        items = self._run_event(event)
        call = self._pairing.add(event)
        if call is not None:
            items += self._call_events(event, call)
        return [
            RunEvent(event.event_id * _PER_EVENT + n, name, data)
            for n, (name, data) in enumerate(items)
        ]

    def next_execution(self) -> None:
        """Go on with the next execution of a chain: its calls and ids are its own."""
        self.closed, self.result, self.continued_as = False, None, None
        self._pairing = _pairing()
        self._asked, self._started, self._ended = {}, set(), set()

    def end_events(self, event_id: int, result: AgentResult) -> list[RunEvent]:
        """The last events, on the history event that closed the run: its final ``state``
        when the run did not publish it (terminated, failed on its input, ...), and its
        ``result``."""
        ended = []
        if result.status != self._state:
            self._state = result.status
            state = {"state": result.status}
            ended.append(RunEvent(event_id * _PER_EVENT + _RESULT_SLOT - 1, "state", state))
        data = result.model_dump(mode="json")
        return [*ended, RunEvent(event_id * _PER_EVENT + _RESULT_SLOT, "result", data)]

    # -- the run itself ---------------------------------------------------------------

    def _run_event(self, event: HistoryEvent) -> list[Item]:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            started = event.workflow_execution_started_event_attributes
            agent = decode(started.input, AgentInput)
            if isinstance(agent, AgentInput):
                self.budget = agent.budget
                if agent.carry is not None:  # a continued run: the chain's so far
                    self._carried(agent.carry)
            # OnwardClient starts a run with its first status (the run upserts it otherwise).
            state = self._state_of(started.search_attributes)
            if self.resumed:  # the chain's state, which a whole read carried over
                self.resumed = False
                return []
            return state
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.name == EXTEND_BUDGET_UPDATE:
                extension = decode(request.input.args, BudgetExtension)
                if isinstance(extension, BudgetExtension):
                    self.budget = budgets.apply_extension(self.budget, extension)
                    return self._warnings()
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            attributes = event.upsert_workflow_search_attributes_event_attributes
            return self._state_of(attributes.search_attributes)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signal = event.workflow_execution_signaled_event_attributes
            if signal.signal_name == _PUBLISH_SIGNAL:
                return self._token_events(decode(signal.input, PublishInput))
        elif kind in _RUN_CLOSED:
            self.closed = True
            if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                continued = event.workflow_execution_continued_as_new_event_attributes
                self.continued_as = continued.new_execution_run_id or None
            if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                found = decode(
                    event.workflow_execution_completed_event_attributes.result, AgentResult
                )
                self.result = found if isinstance(found, AgentResult) else None
        return []

    def _carried(self, carry: AgentCarry) -> None:
        """Budget and usage of the chain so far; warnings it has had are not sent again."""
        self.budget = carry.budget
        usage = carry.usage
        used = (usage.total_tokens, usage.cost_usd, usage.tool_calls, usage.steps)
        for limit, value in zip(_LIMITS, used, strict=True):
            self._used[limit] = max(self._used[limit], float(value))
        self._warnings()  # marks what the earlier executions warned of

    def _state_of(self, attributes: SearchAttributes) -> list[Item]:
        """A ``state`` event when ``attributes`` set a new ``OnwardStatus``."""
        state = decode_typed_search_attributes(attributes).get(sa.STATUS)
        if state is None or state == self._state:
            return []
        self._state = state
        return [("state", {"state": state})]

    def _token_events(self, batch: Any) -> list[Item]:
        """One batch of streamed text: ``token`` events (a call's chunks joined) and restarts."""
        if not isinstance(batch, PublishInput):
            return []
        if batch.publisher_id:  # a resent batch is in history twice; the workflow took it once
            if batch.sequence <= self._publishers.get(batch.publisher_id, -1):
                return []
            self._publishers[batch.publisher_id] = batch.sequence
        items: list[Item] = []
        for entry in batch.items:
            chunk = _token_chunk(entry.topic, entry.data)
            if chunk is None or chunk.attempt < self._restarted.get(chunk.call, 0):
                continue
            if chunk.kind == "stream_restart":
                self._restarted[chunk.call] = chunk.attempt
                items.append(("stream_restart", {"call": chunk.call, "attempt": chunk.attempt}))
            elif items and items[-1][0] == "token" and items[-1][1]["call"] == chunk.call:
                items[-1][1]["text"] += chunk.text
            else:
                items.append(("token", {"call": chunk.call, "text": chunk.text}))
        # Ids leave this many slots per history event; a batch rarely has more than two.
        while len(items) > _RESULT_SLOT:
            name, data = items.pop()
            if name == "token" and items[-1][0] == "token":
                items[-1][1]["text"] += data["text"]
        return items

    # -- model and tool calls ---------------------------------------------------------

    def _call_events(self, event: HistoryEvent, call: Call) -> list[Item]:
        if call.activity_type == "call_model":
            return self._model_events(event, call)
        if call.activity_type == "execute_tool":
            return self._tool_events(call)
        if call.activity_type == "deliver_webhook":
            return self._webhook_events(event, call)
        return []

    def _webhook_events(self, event: HistoryEvent, call: Call) -> list[Item]:
        if not call.trace.closed or event.event_type not in _CLOSING or id(call) in self._ended:
            return []
        self._ended.add(id(call))
        outcome = call.result if isinstance(call.result, WebhookOutcome) else None
        delivered = call.trace.state == "completed" and outcome is not None
        answered = outcome.status_code if outcome else None
        if answered is None and call.failure_details is not None:
            answered = decode(call.failure_details, int)  # the status the receiver gave
        return [
            (
                "webhook",
                {
                    "delivered": delivered,
                    "attempts": call.trace.attempts,
                    "status_code": answered,
                    "error": None if delivered else (call.trace.failure or "failed"),
                },
            )
        ]

    def _model_events(self, event: HistoryEvent, call: Call) -> list[Item]:
        request = call.request if isinstance(call.request, ModelRequest) else None
        step = request.step if request else None
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            return [("model_started", {"step": step, "model": request.model if request else None})]
        if not call.trace.closed or event.event_type not in _CLOSING or id(call) in self._ended:
            return []
        self._ended.add(id(call))
        response = call.result if isinstance(call.result, ModelResponse) else None
        if call.trace.state != "completed" or response is None:
            model = request.model if request else None  # which one, when a fallback goes on
            failure = call.trace.failure or "failed"
            return [("model_error", {"step": step, "model": model, "error": failure})]
        for tool_call in response.tool_calls:
            self._asked[tool_call.id] = tool_call
        self._used["max_tokens"] += response.usage.total_tokens
        self._used["max_cost_usd"] += response.cost_usd or 0.0
        self._used["max_steps"] += 1
        decision = {
            "step": step,
            "text": response.text,
            "tool_calls": [tool_call.model_dump(mode="json") for tool_call in response.tool_calls],
            "usage": response.usage.model_dump(mode="json"),
            "cost_usd": response.cost_usd,
            "model": response.model or (request.model if request else None),
            "finish_reason": response.finish_reason,
        }
        return [("model", decision), *self._warnings()]

    def _tool_events(self, call: Call) -> list[Item]:
        items: list[Item] = []
        request = call.request if isinstance(call.request, ToolRequest) else None
        outcome = call.result if isinstance(call.result, ToolOutcome) else None
        call_id: str | None
        if request is not None:
            call_id, name, step = request.call_id, request.name, request.step
        else:  # a local tool: its marker echoes the call id in the outcome, nothing else
            call_id = outcome.call_id if outcome else None
            step = outcome.step if outcome else None
            asked = self._asked.get(call_id or "")
            name = asked.name if asked else call.trace.name
        if id(call) not in self._started and (request is not None or call.trace.closed):
            self._started.add(id(call))
            asked = self._asked.get(call_id or "")
            arguments = request.arguments if request else asked.arguments if asked else None
            start = {"step": step, "call_id": call_id, "name": name, "arguments": arguments}
            items.append(("tool_started", start))
            self._used["max_tool_calls"] += 1
            items += self._warnings()
        if call.trace.closed and id(call) not in self._ended:
            self._ended.add(id(call))
            error = outcome.error if outcome else (call.trace.failure or "failed")
            result = {
                "step": step,
                "call_id": call_id,
                "name": name,
                "content": outcome.content if outcome else None,
                "error": error,
                "truncated": outcome.truncated if outcome else False,
                "attempts": call.trace.attempts,
            }
            items.append(("tool_result", result))
        return items

    def _warnings(self) -> list[Item]:
        items: list[Item] = []
        for limit in _LIMITS:
            cap = getattr(self.budget, limit)
            if cap is None or cap <= 0 or (limit, cap) in self._warned:
                continue
            used = self._used[limit]
            if used >= WARN_AT * cap:
                self._warned.add((limit, cap))
                items.append(("budget_warning", {"limit": limit, "used": used, "max": cap}))
        return items


def _token_chunk(topic: str, data: str) -> TokenChunk | None:
    """A ``tokens`` topic item (base64 of a serialized payload), or None."""
    if topic != TOKENS_TOPIC:
        return None
    payload = Payload()
    try:
        payload.ParseFromString(base64.b64decode(data))
    except (binascii.Error, ValueError):
        return None
    chunk = decode_one(payload, TokenChunk)
    return chunk if isinstance(chunk, TokenChunk) else None


async def check_readable(client: Client, run_id: str, converter: DataConverter) -> None:
    """Raise :class:`~onward.encryption.EncryptionError` now if ``converter`` cannot open
    the run's payloads (sealed with keys this process lacks): a stream that found out
    after its ``200`` could only end, and an ``EventSource`` reopens it every second."""
    first = client.get_workflow_handle(run_id).fetch_history_events(page_size=1)
    async for _ in opened_events(first, converter):
        return


async def run_events(
    client: Client,
    run_id: str,
    *,
    after: int = 0,
    outcome: Callable[[], Awaitable[AgentResult]],
    converter: DataConverter = DATA_CONVERTER,
) -> AsyncIterator[RunEvent]:
    """The run's events with ids above ``after``, as they happen, ending with ``result``.

    A run that continues as new is followed along its chain: execution ``k`` of
    it (0 the first) gives its events ids ``k * CHAIN_EVENTS`` above its own, so
    ids go on increasing and ``after`` resumes in whichever execution it names.
    ``outcome`` gives the result of a run that closed without returning one
    (terminated, cancelled through Temporal, failed on invalid input);
    ``converter`` opens the history's payloads (the API client's: its
    ``ONWARD_ENCRYPTION_KEYS`` and ``ONWARD_PAYLOADS``).

    Raises:
        RPCError: from Temporal (an unknown id, a lost connection): the stream
            ends and the client resumes with ``Last-Event-ID``.
    """
    translator = EventTranslator()
    try:
        execution, run = await _execution(client, run_id, after // CHAIN_EVENTS)
        # Resumed into a continued execution: the reader has its chain's state.
        translator.resumed = execution > 0
    except RPCError as err:
        execution, run = await _latest_if_gone(err, client, run_id, converter)
    while True:
        base = execution * CHAIN_EVENTS
        handle = client.get_workflow_handle(run_id, run_id=run)
        events = handle.fetch_history_events(wait_new_event=True, skip_archival=True)
        read = False
        try:
            async for event in opened_events(events, converter):
                read = True
                for item in translator.add(event):
                    if item.id + base > after:
                        yield replace(item, id=item.id + base)
                if translator.closed:
                    break
        except RPCError as err:
            if read or run is None:
                raise
            # Past the namespace's retention: on with what the server still keeps.
            execution, run = await _latest_if_gone(err, client, run_id, converter)
            translator.next_execution()
            continue
        if not translator.closed:
            return  # the history ended early (Temporal's): the client resumes
        if translator.continued_as is None:
            result = translator.result or await outcome()
            for final in translator.end_events(event.event_id, result):
                if final.id + base > after:
                    yield replace(final, id=final.id + base)
            return
        execution, run = execution + 1, translator.continued_as
        translator.next_execution()


async def _latest_if_gone(
    err: RPCError, client: Client, run_id: str, converter: DataConverter
) -> tuple[int, str | None]:
    """The chain's latest execution and its number, when ``err`` says an earlier one
    is gone (deleted after the namespace's retention); else ``err`` again."""
    if err.status != RPCStatusCode.NOT_FOUND:
        raise err
    handle = client.get_workflow_handle(run_id)
    latest = (await handle.describe()).run_id
    events = client.get_workflow_handle(run_id, run_id=latest).fetch_history_events()
    async for event in opened_events(events, converter):
        started = event.workflow_execution_started_event_attributes
        agent = decode(started.input, AgentInput)
        carry = agent.carry if isinstance(agent, AgentInput) else None
        return (carry.runs if carry is not None else 0), latest
    raise err


async def _execution(client: Client, run_id: str, wanted: int) -> tuple[int, str | None]:
    """Execution ``wanted`` of run ``run_id``'s chain (0 the first) and its run id.

    Walked from the chain's first execution by each one's closing event; a chain
    with fewer executions gives its last (None: the latest, as Temporal reads it).
    """
    if wanted <= 0:
        description = await client.get_workflow_handle(run_id).describe()
        first = description.raw_description.workflow_execution_info.first_run_id
        return 0, first or None
    execution, run = await _execution(client, run_id, 0)
    while execution < wanted:
        closing = client.get_workflow_handle(run_id, run_id=run).fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT, skip_archival=True
        )
        following = None
        async for event in closing:
            continued = event.workflow_execution_continued_as_new_event_attributes
            following = continued.new_execution_run_id or None
        if following is None:
            break  # the chain's last: still running, or closed otherwise
        execution, run = execution + 1, following
    return execution, run
