"""Session arithmetic: what each message's run may spend, and the session's running totals.

Pure functions over contract models, called by ``SessionWorkflow`` and unit-tested
without a server. A session's budget covers all its messages: each message's run
gets what is left of it, and no more than ``message_budget``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from onward import budget as budgets
from onward import final_answer
from onward.contracts import AgentInput, AgentResult, Budget, RunUsage, SessionInput

__all__ = [
    "MESSAGE_RUN_SEPARATOR",
    "add_usage",
    "message_budget",
    "message_digest",
    "message_input",
    "message_update_id",
    "run_id",
    "session_of",
    "session_reason",
    "turn_structured_output",
]

MESSAGE_RUN_SEPARATOR = "-m"
"""A message's run is ``<session-id>-m<N>``."""

_MIN_DURATION_S = 0.001
"""``max_duration_s`` must be positive: a session out of time gives its run this much."""


def run_id(session_id: str, number: int) -> str:
    """The workflow id of the run answering message ``number`` of ``session_id``."""
    return f"{session_id}{MESSAGE_RUN_SEPARATOR}{number}"


def session_of(run_id: str) -> str | None:
    """The session whose message ``run_id`` may be (``<session-id>-m<N>``), else None."""
    session, found, number = run_id.rpartition(MESSAGE_RUN_SEPARATOR)
    return session if found and session and number.isdigit() else None


def message_digest(message: str) -> str:
    """SHA-256 of a message: what a repeat of it under its idempotency key must match."""
    return hashlib.sha256(message.encode()).hexdigest()


def message_update_id(idempotency_key: str, message: str) -> str:
    """The ``send_message`` update id of a keyed message.

    Temporal answers an update id it has seen in the session's current run with
    that update's outcome, without asking the session: the message's digest in
    the id makes the same key with another message a new update, which the
    session refuses.
    """
    return f"message/{idempotency_key}/{message_digest(message)[:16]}"


def turn_structured_output(
    structured: dict[str, Any] | None, limit: int
) -> tuple[dict[str, Any] | None, bool]:
    """What a turn keeps of a reply's object: it whole when its JSON (the reply's text)
    is at most ``limit`` characters, else nothing, and True for "left out".

    Turns live in the session's state and its continue-as-new input, so each is
    bounded; an object cut short would be no object, and a part of it a lie.
    """
    if structured is None:
        return None, False
    if len(final_answer.answer_text(structured)) <= limit:
        return structured, False
    return None, True


def _left(limit: float | None, used: float) -> float | None:
    return None if limit is None else max(limit - used, 0)


def _least(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def message_budget(session: Budget, per_message: Budget | None, used: RunUsage) -> Budget:
    """The budget of the next message's run: the session's remainder, at most ``per_message``.

    The session's ``max_duration_s`` counts time spent answering (the sum of the
    messages' durations), not time the session waits idle.
    """
    per_message = per_message or Budget()
    tokens = _least(_left(session.max_tokens, used.total_tokens), per_message.max_tokens)
    calls = _least(_left(session.max_tool_calls, used.tool_calls), per_message.max_tool_calls)
    steps = _least(_left(session.max_steps, used.steps), per_message.max_steps)
    cost = _least(_left(session.max_cost_usd, used.cost_usd), per_message.max_cost_usd)
    duration = _least(_left(session.max_duration_s, used.duration_s), per_message.max_duration_s)
    return Budget(
        max_tokens=None if tokens is None else int(tokens),
        max_tool_calls=None if calls is None else int(calls),
        max_steps=None if steps is None else int(steps),
        max_cost_usd=None if cost is None else round(cost, 12),
        max_duration_s=None if duration is None else max(duration, _MIN_DURATION_S),
        on_exceeded=(
            per_message.on_exceeded
            if "on_exceeded" in per_message.model_fields_set
            else session.on_exceeded
        ),
    )


def add_usage(total: RunUsage, part: RunUsage) -> RunUsage:
    """``total`` with one message run's usage added."""
    return RunUsage(
        input_tokens=total.input_tokens + part.input_tokens,
        output_tokens=total.output_tokens + part.output_tokens,
        total_tokens=total.total_tokens + part.total_tokens,
        tool_calls=total.tool_calls + part.tool_calls,
        model_calls=total.model_calls + part.model_calls,
        steps=total.steps + part.steps,
        cost_usd=round(total.cost_usd + part.cost_usd, 12),
        cost_known=total.cost_known and part.cost_known,
        tokens_estimated=total.tokens_estimated or part.tokens_estimated,
        cached_input_tokens=total.cached_input_tokens + part.cached_input_tokens,
        cache_write_tokens=total.cache_write_tokens + part.cache_write_tokens,
        cache_saved_usd=round(total.cache_saved_usd + part.cache_saved_usd, 12),
        duration_s=round(total.duration_s + part.duration_s, 3),
    )


def session_reason(session: Budget, used: RunUsage, result: AgentResult) -> str | None:
    """The reason of a message's run stopped by a budget, said of the session's when it was that.

    A message's run gets the session's remainder: once the session has used a
    limit up, the run says "max_tokens: used 0 of 0 tokens" of its own share.
    ``used``: the session's usage, this run's included.
    """
    if result.status != "budget_exceeded" or result.limit is None:
        return result.reason
    # The session's figure for that limit alone: another one spent too says nothing here.
    alone = Budget.model_validate({result.limit: getattr(session, result.limit)})
    kinds: tuple[budgets.CallKind, ...] = ("model", "tool")
    for kind in kinds:
        spent = budgets.exceeded(alone, used, used.duration_s, kind)
        if spent is not None:
            return f"the session's budget is used up: {spent.message}"
    return result.reason


def message_input(session: SessionInput, message: str, used: RunUsage) -> AgentInput:
    """The input of a message's run, without its conversation (the workflow adds it)."""
    return AgentInput(
        prompt=message,
        system=session.system,
        model=session.model,
        fallback_models=session.fallback_models,
        tools=session.tools,
        budget=message_budget(session.budget, session.message_budget, used),
        pricing=session.pricing,
        settings=session.settings,
        tenant=session.tenant,
        approve_tools=session.approve_tools,
        approval_timeout_s=session.approval_timeout_s,
        on_approval_timeout=session.on_approval_timeout,
        context=session.context,
        clear_tool_results=session.clear_tool_results,
        cache_tools=session.cache_tools,
        memory_scope=session.memory_scope,
        stream=session.stream,
        output_schema=session.output_schema,
    )
