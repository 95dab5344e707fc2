"""The step log's rules, in one place: how a step and its tool calls are recorded and read.

The workflow records steps with these functions, and every reader (the
``onward`` client rebuilding a step log from an event history, the renderers)
reads them back with the same functions, so no reader copies a rule or parses
prose. Records written before a field existed are read through the ``legacy``
fallbacks here, and only here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import get_args

from onward.contracts import (
    BudgetLimit,
    Message,
    ModelRequest,
    ModelResponse,
    StepRecord,
    ToolCallRecord,
    ToolCallStatus,
    ToolOutcome,
    ToolRequest,
)
from onward.text import clip

__all__ = [
    "RESULT_CHARS",
    "apply_outcome",
    "apply_response",
    "cut_short",
    "filled",
    "idempotency_key",
    "interrupted",
    "legacy_limit",
    "model_now",
    "not_run",
    "refused",
    "request_step",
    "slimmed",
    "steering_in",
    "step_error",
    "tool_call_id",
    "tool_status",
    "with_unique_call_ids",
]

RESULT_CHARS = 4_000
"""Tool results longer than this are cut in the step log. The model sees up to the
tool's own ``max_result_chars``; the log keeps this much whatever that limit is,
while keeping queries and the run's result well under Temporal's payload limits."""

_LEGACY_MODEL_FAILED = "model call failed: "
"""How steps recorded before ``StepRecord.error`` said their model call failed."""


def tool_call_id(step: int, index: int) -> str:
    """The id of the ``index``-th (from 1) tool call of ``step`` when the model gave none."""
    return f"call_{step}_{index}"


def model_now(began_with: str | None, models: Sequence[str | None]) -> str | None:
    """The model a run goes on with, from its steps' ``models`` in order: the last one's.

    A run given ``fallback_models`` keeps the model that answered once its own failed,
    so the model it ``began_with`` (its input's) is where it began, not where it is or
    ended; its ``status`` query, ``onward status`` and ``onward trace`` name this one.
    """
    return next((model for model in reversed(models) if model is not None), began_with)


def with_unique_call_ids(
    response: ModelResponse, step: int, taken: Collection[str] = ()
) -> ModelResponse:
    """Give empty or repeated tool-call ids a unique one: results are matched by id.

    ``taken``: the ids of the conversation's earlier calls, which a new call's id must
    not repeat either. A run that begins with a conversation (a session's message, a
    fork) numbers its steps from 1 again, so a provider that gives no ids would make
    ``call_1_1`` twice in one conversation.

    Applied by the model activity before it stores the reply, with the conversation's
    ids, and by the workflow (a no-op then; needed for runs recorded before the store).
    """
    seen = set(taken)
    calls = []
    for index, call in enumerate(response.tool_calls, start=1):
        if not call.id or call.id in seen:
            fresh = tool_call_id(step, index)
            again = 1
            while fresh in seen:
                again += 1
                fresh = f"{tool_call_id(step, index)}_{again}"
            call = call.model_copy(update={"id": fresh})
        seen.add(call.id)
        calls.append(call)
    return response.model_copy(update={"tool_calls": calls})


def idempotency_key(workflow_id: str, run_id: str, step: int, call_id: str) -> str:
    """A tool call's key, stable across retries; the run id too, so a new run under a
    reused workflow id does not find the earlier run's writes marked done."""
    return f"{workflow_id}/{run_id}/{step}/{call_id}"


# -- recording ---------------------------------------------------------------------


def refused(message: str) -> ToolOutcome:
    """The outcome of a call that is not started at all (unknown tool, approval needed)."""
    return ToolOutcome(error=message)


def interrupted(reason: str | None) -> ToolOutcome:
    """The outcome of a call stopped while running (a cancel, the deadline)."""
    return ToolOutcome(error=f"interrupted: {reason}")


def not_run(reason: str | None) -> ToolOutcome:
    """The outcome of a call the run stopped before starting."""
    return ToolOutcome(error=f"not run: {reason}")


def apply_response(record: StepRecord, response: ModelResponse) -> None:
    """Record a model call's answer on its step: text, usage, cost and what caching saved."""
    record.text = response.text
    record.usage = response.usage
    record.cost_usd = response.cost_usd
    record.cache_saved_usd = response.cache_saved_usd
    record.cleared_tool_results = response.cleared_tool_results
    record.rate_limit_wait_ms = response.rate_limit_wait_ms
    # Only an answer the model did not end itself: "stop" at every step is history bytes.
    reason = response.finish_reason
    record.finish_reason = reason if cut_short(reason) is not None else None


def cut_short(finish_reason: str | None) -> str | None:
    """Why an answer with ``finish_reason`` is not the whole answer, in words; None if it is."""
    match finish_reason:
        case None | "stop" | "tool_calls":
            return None
        case "length":
            return (
                "the answer was cut off at the model's output token limit "
                "(finish_reason length; settings.max_output_tokens raises it)"
            )
        case "content_filter":
            return "the provider withheld the answer or part of it (finish_reason content_filter)"
        case reason:
            return f"the answer ended with finish_reason {reason!r}"


def apply_outcome(
    record: ToolCallRecord, outcome: ToolOutcome, status: ToolCallStatus | None = None
) -> None:
    """Record ``outcome`` on ``record``: its error or its (clipped) result, and its status.

    ``status`` defaults to ``ok`` or ``error`` from the outcome itself.
    """
    record.error = outcome.error
    record.result = None if outcome.error is not None else clip(outcome.content, RESULT_CHARS)
    record.status = status or ("ok" if outcome.error is None else "error")
    record.cache_hit = outcome.cache_hit


# -- reading -------------------------------------------------------------------------


def tool_status(record: ToolCallRecord) -> ToolCallStatus | None:
    """How a call ended; None while it runs. Reads records from before ``status`` too."""
    if record.status is not None:
        return record.status
    if record.error is None:
        return None if record.result is None else "ok"
    # legacy: the error text was the only carrier of why a call did not give a result.
    error = record.error
    if error.startswith("not run"):
        return "not_run"
    if error.startswith("interrupted"):
        return "interrupted"
    if error.startswith("unknown tool ") or "requires approval" in error:
        return "refused"
    return "error"


def step_error(step: StepRecord) -> str | None:
    """Why the step's model call failed, or None. Reads steps from before ``error`` too."""
    if step.error is not None:
        return step.error
    if step.text.startswith(_LEGACY_MODEL_FAILED) and not step.tool_calls:
        return step.text.removeprefix(_LEGACY_MODEL_FAILED)
    return None


def request_step(request: ToolRequest) -> int | None:
    """The step a tool request belongs to; legacy requests carry it in their idempotency key."""
    if request.step is not None:
        return request.step
    parts = request.idempotency_key.rsplit("/", 2)
    try:
        return int(parts[-2]) if len(parts) == 3 else None
    except ValueError:
        return None


def legacy_limit(reason: str | None) -> BudgetLimit | None:
    """The limit a budget reason names, for statuses from before ``limit`` existed."""
    name = (reason or "").split(":", 1)[0]
    return next((limit for limit in get_args(BudgetLimit) if limit == name), None)


def steering_in(request: ModelRequest, previous: ModelRequest | None) -> list[str]:
    """The steering messages a model request added, from the history of a run.

    The conversation only grows, so what a request adds is what follows the
    previous request's messages, its answer and tool results: the user messages
    among them are steering, except the run's own prompt (first request) and
    the final-answer prompt (a request without tools).
    """
    ref = request.transcript
    if ref is not None:
        # Through the transcript store the request carries exactly what it added.
        added: list[Message] = [m for m in ref.new_messages if m.role == "user"]
        if ref.count == len(ref.new_messages):
            added = added[1:]  # the chain's first call: the prompt
    else:
        start = len(previous.messages) if previous is not None else 0
        added = [m for m in request.messages[start:] if m.role == "user"]
        # Both come before the steering: the workflow adds steering just before a call.
        if previous is None:
            added = added[1:]  # the prompt
    if not request.allow_tools:
        added = added[1:]  # the final-answer prompt
    return [message.content for message in added]


# -- step records by reference to the messages -------------------------------------------


class _Said:
    """What messages say of ``steps``' tool calls: the model's text and arguments, the results.

    Read from the last message back, stopping once every call is found: the steps
    are the latest, so a long conversation is not scanned whole at every call.
    """

    def __init__(self, messages: Sequence[Message], steps: Sequence[StepRecord]) -> None:
        self.text: dict[str, str] = {}
        self.arguments: dict[str, dict[str, object]] = {}
        self.result: dict[str, str] = {}
        ids = {call.id for step in steps for call in step.tool_calls}
        for message in reversed(messages):
            if ids <= self.arguments.keys() and ids <= self.result.keys():
                break
            for call in message.tool_calls:
                self.text.setdefault(call.id, message.content)
                self.arguments.setdefault(call.id, call.arguments)
            if message.role == "tool" and message.tool_call_id is not None:
                self.result.setdefault(message.tool_call_id, message.content)


def slimmed(
    steps: Sequence[StepRecord], messages: Sequence[Message]
) -> tuple[list[StepRecord], list[str]]:
    """``steps`` without what ``messages`` say exactly the same, and what was left out.

    A step's text and its calls' arguments are the model's message, and a call's
    result is often its tool message word for word: sent twice, they would enter
    the history twice a step. Only equal values are left out, so :func:`filled`
    with the same messages gives ``steps`` back exactly.
    """
    said = _Said(messages, steps)
    slim: list[StepRecord] = []
    left_out: list[str] = []
    for step in steps:
        calls: list[ToolCallRecord] = []
        for call in step.tool_calls:
            update: dict[str, object] = {}
            if call.id in said.arguments and said.arguments[call.id] == call.arguments:
                update["arguments"] = {}
                left_out.append(f"arguments:{call.id}")
            if call.result is not None and said.result.get(call.id) == call.result:
                update["result"] = None
                left_out.append(f"result:{call.id}")
            calls.append(call.model_copy(update=update) if update else call)
        update = {"tool_calls": calls}
        first = step.tool_calls[0].id if step.tool_calls else None
        if step.text and first is not None and said.text.get(first) == step.text:
            update["text"] = ""
            left_out.append(f"text:{step.step}")
        slim.append(step.model_copy(update=update))
    return slim, left_out


def filled(
    steps: Sequence[StepRecord], left_out: Sequence[str], messages: Sequence[Message]
) -> list[StepRecord]:
    """``steps`` as they were before :func:`slimmed` left out ``left_out``.

    Raises:
        KeyError: ``messages`` lack what a left-out value was (not the run's messages).
    """
    if not left_out:
        return list(steps)
    said = _Said(messages, steps)
    wanted = set(left_out)
    full: list[StepRecord] = []
    for step in steps:
        calls: list[ToolCallRecord] = []
        for call in step.tool_calls:
            update: dict[str, object] = {}
            if f"arguments:{call.id}" in wanted:
                update["arguments"] = said.arguments[call.id]
            if f"result:{call.id}" in wanted:
                update["result"] = said.result[call.id]
            calls.append(call.model_copy(update=update) if update else call)
        update = {"tool_calls": calls}
        if f"text:{step.step}" in wanted and step.tool_calls:
            update["text"] = said.text[step.tool_calls[0].id]
        full.append(step.model_copy(update=update))
    return full
