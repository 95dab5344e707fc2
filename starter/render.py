"""Human output: steps, state changes, status, results, and the Web UI texts of a run.

Pure functions from contract models to lines of text; printing is left to the
caller, so every format here is easy to test and reuse (``run``, ``watch``,
``steps`` and ``demo`` all show steps the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from onward import steplog
from onward.contracts import (
    AgentInput,
    AgentResult,
    AgentState,
    AgentStatus,
    Budget,
    BudgetLimit,
    CallRetry,
    RunUsage,
    StepRecord,
    ToolCall,
    ToolCallRecord,
)
from onward.markdown import code_span, escape_markdown
from onward.money import cache_summary, cost_text, money
from onward.starter.inputs import BUDGET_FLAGS
from onward.text import counted, shorten
from onward.workflows.progress import tool_summary

__all__ = [
    "cache_summary",
    "cost_text",
    "describe_budget",
    "money",
    "result_lines",
    "retry_line",
    "shorten",
    "state_change",
    "static_details",
    "static_summary",
    "status_lines",
    "steering_lines",
    "step_lines",
    "table",
    "tool_call_line",
    "usage_summary",
    "waiting_line",
]

SUMMARY_CHARS = 80
"""Length of a run's static summary (its prompt, shortened) in the Web UI."""
RESULT_EXCERPT_CHARS = 80
"""How much of a tool result a step line shows."""
ANSWER_EXCERPT_CHARS = 100
"""How much of the final answer its step line shows."""
_INDENT = " " * 8


def waiting_line(task_queue: str) -> str:
    """What to do when no worker polls a run's task queue."""
    return f"no worker is polling task queue {task_queue}; start one with `onward worker`"


def retry_line(retry: CallRetry) -> str:
    """``-- retrying call_model: cannot reach http://..., attempt 3 of at most 20``.

    "At most": Temporal's limit is a ceiling; a worker may give up sooner
    (``ONWARD_MODEL_MAX_ATTEMPTS``).
    """
    of = f" of at most {retry.max_attempts}" if retry.max_attempts else ""
    failure = f"{shorten(retry.last_failure, 160)}, " if retry.last_failure else ""
    return f"-- retrying {retry.activity}: {failure}attempt {retry.attempt}{of}"


def _seconds(ms: int | None) -> str:
    return "…" if ms is None else f"{ms / 1000:.2f} s"


def tool_call_line(call: ToolCallRecord) -> str:
    """``calculator(17 * 3 + 4) -> 55``, or ``read_file(x.txt) !! no such file``."""
    shown = tool_summary(ToolCall(id=call.id, name=call.name, arguments=call.arguments))
    if call.error is not None:
        return f"{shown} !! {shorten(call.error, RESULT_EXCERPT_CHARS)}"
    result = shorten(call.result or "", RESULT_EXCERPT_CHARS)
    hit = " (cache hit)" if call.cache_hit else ""
    return f"{shown} -> {result or '(empty)'}{hit}"


def steering_lines(step: StepRecord) -> list[str]:
    """``steer: keep it short``: the user messages added before the step's model call."""
    return [f"steer: {shorten(message, ANSWER_EXCERPT_CHARS)}" for message in step.steering]


def step_lines(step: StepRecord) -> list[str]:
    """A finished step: steering, the model's reason (or answer), its tool calls, time, usage."""
    error = steplog.step_error(step)
    if error is not None:  # no answer: the call's failure
        head = "model call failed: " + shorten(error, ANSWER_EXCERPT_CHARS)
    elif step.tool_calls:
        head = step.text.strip() or "(no reason given)"
    else:  # the answer itself is printed in full with the result
        head = "answer: " + (shorten(step.text, ANSWER_EXCERPT_CHARS) or "(empty)")
    first, *rest = [*steering_lines(step), *(head.splitlines() or [""])]
    lines = [f"{f'step {step.step}':<{len(_INDENT) - 1}} {first}"]
    lines += [_INDENT + line for line in rest]
    for failed in step.failed_models or ():  # fallback_models
        lines.append(f"{_INDENT}↷ failed: {shorten(failed, ANSWER_EXCERPT_CHARS)}")
    if step.failed_models and error is None:
        lines.append(f"{_INDENT}↷ answered by {step.model}")
    for call in step.tool_calls:
        lines.append(_INDENT + tool_call_line(call))
        if call.child_id is not None:  # `onward trace` shows its calls under this one
            lines.append(f"{_INDENT}  ↳ sub-agent {call.child_id}")
    cached = step.usage.cached_input_tokens
    gone = step.cleared_tool_results
    cleared = f" · {counted(gone, 'older tool result')} cleared" if gone else ""
    took = _seconds(step.duration_ms)
    if step.rate_limit_wait_ms:  # part of the step's time: not the model's slowness
        took += f" ({_seconds(step.rate_limit_wait_ms)} waiting for the rate limit)"
    ended = _ENDINGS.get(step.finish_reason or "", f"finish_reason {step.finish_reason}")
    lines.append(
        f"{_INDENT}{took} · {counted(step.usage.total_tokens, 'token')}"
        f"{f' ({cached} cached)' if cached else ''} · {money(step.cost_usd)}{cleared}"
        f"{f' · {ended}' if ended else ''}"
    )
    return lines


_ENDINGS = {
    "": "",
    "length": "cut off at the output token limit",
    "content_filter": "withheld by the provider (content_filter)",
}
"""How a step's usage line says its answer was not whole (``StepRecord.finish_reason``)."""


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as text columns aligned under ``header`` (no trailing spaces)."""
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]


def usage_summary(usage: RunUsage) -> str:
    """What a run consumed, on one line."""
    cost = cost_text(usage.cost_usd, usage.cost_known)
    return (
        f"{counted(usage.steps, 'step')} · {counted(usage.total_tokens, 'token')} "
        f"({usage.input_tokens} in, {usage.output_tokens} out) · "
        f"{counted(usage.tool_calls, 'tool call')} · {counted(usage.model_calls, 'model call')} · "
        f"{cost} · {usage.duration_s:.1f} s"
    )


def _block(label: str, text: str) -> list[str]:
    first, *rest = text.splitlines() or [""]
    pad = " " * (len(label) + 2)
    return [f"{label}: {first}", *(pad + line for line in rest)]


def result_lines(result: AgentResult) -> list[str]:
    """The end of a run: status, output, reason and usage."""
    lines = [f"status: {result.status}"]
    if result.reason:
        lines += _block("reason", result.reason)
    if result.output is not None:
        lines += _block("output", result.output)
    lines.append(f"usage:  {usage_summary(result.usage)}")
    cache = cache_summary(result.usage)
    if cache is not None:
        lines.append(f"cache:  {cache}")
    return lines


def state_change(
    workflow_id: str, state: AgentState, reason: str | None, limit: BudgetLimit | None = None
) -> str | None:
    """A line when a followed run pauses or goes on again; None for other states.

    ``limit`` is the status's exceeded limit (older workers did not send one).
    """
    if state == "paused":
        return f"-- paused; resume with: onward resume {workflow_id}"
    if state == "budget_paused":
        limit = limit or steplog.legacy_limit(reason)
        flag = BUDGET_FLAGS.get(limit or "", "--max-...")
        return (
            f"-- budget paused: {reason or 'a limit was reached'}; "
            f"raise it with: onward extend {workflow_id} {flag} N"
        )
    if state == "awaiting_approval":  # human approval
        return (
            f"-- awaiting approval; see the calls with: onward status {workflow_id}; "
            f"decide with: onward approve {workflow_id} (or onward reject ... --note ...)"
        )
    if state == "running":
        return "-- running again"
    return None


def _limit(used: str, limit: str | None) -> str:
    return used if limit is None else f"{used}/{limit}"


def _against_budget(usage: RunUsage, budget: Budget) -> str:
    """Usage against budget on one line; an unknown cost is shown as unknown."""
    max_cost = None if budget.max_cost_usd is None else money(budget.max_cost_usd)
    cost = _limit(cost_text(usage.cost_usd, usage.cost_known), max_cost)

    def count(used: int, limit: int | None) -> str:
        return _limit(str(used), None if limit is None else str(limit))

    return (
        f"tokens {count(usage.total_tokens, budget.max_tokens)} · "
        f"tool calls {count(usage.tool_calls, budget.max_tool_calls)} · "
        f"steps {count(usage.steps, budget.max_steps)} · "
        # "cost unknown (...)" says "cost" itself.
        + (cost if cost.startswith("cost") else f"cost {cost}")
    )


def status_lines(workflow_id: str, status: AgentStatus) -> list[str]:
    """The ``status`` command's answer."""
    cache = cache_summary(status.usage)
    lines = [
        f"run:    {workflow_id}",
        f"state:  {status.state}"
        + ("  (pausing: once the calls in flight end)" if status.pausing else ""),
        f"model:  {status.model or '?'}",
        f"steps:  {status.step}",
        *([] if status.turns is None else [f"turns:  {_turns(status)}"]),  # a session's
        f"usage:  {_against_budget(status.usage, status.budget)}",
        *([] if cache is None else [f"cache:  {cache}"]),
        f"time:   {status.usage.duration_s:.1f} s",
    ]
    if status.last_reply is not None:
        lines.append(f"reply:  {shorten(status.last_reply, 100) or '-'}")
    if status.reason:
        lines += _block("reason", status.reason)
    if status.retrying is not None:
        lines.append(f"retry:  {retry_line(status.retrying).removeprefix('-- retrying ')}")
    for pending in status.pending_approvals:  # human approval
        call = ToolCall(id=pending.call_id, name=pending.name, arguments=pending.arguments)
        whose = f"  (sub-agent {pending.run_id})" if pending.run_id else ""
        lines.append(f"await:  {pending.call_id}  {tool_summary(call)}{whose}")
    if status.last_step is not None:
        last = status.last_step
        what = ", ".join(call.name for call in last.tool_calls) or "answer"
        lines.append(f"last:   step {last.step} ({what}): {shorten(last.text, 100) or '-'}")
    if status.current_step is not None:
        waiting = {pending.call_id for pending in status.pending_approvals}  # await: above
        lines += _running_calls(status.current_step, datetime.now(UTC), waiting)
    return lines


def _running_calls(step: StepRecord, now: datetime, waiting: set[str]) -> list[str]:
    """``now:    step 4 · http_fetch(https://…) · 2.31 s`` for each call still running
    (not those ``waiting`` for approval)."""
    lines = []
    for call in step.tool_calls:
        if call.status is not None or call.id in waiting:
            continue
        shown = tool_summary(ToolCall(id=call.id, name=call.name, arguments=call.arguments))
        ms = (
            None if call.started_at is None else int((now - call.started_at).total_seconds() * 1000)
        )
        whose = f" · sub-agent {call.child_id}" if call.child_id else ""
        lines.append(f"now:    step {step.step} · {shown} · {_seconds(ms)}{whose}")
    return lines


def _turns(status: AgentStatus) -> str:
    """A session's messages: ``3 answered, 1 waiting``."""
    waiting = f", {status.queued} waiting" if status.queued else ""
    return f"{status.turns} answered{waiting}"


def describe_budget(budget: Budget) -> str:
    """``max_tokens 1000 · max_tool_calls 5 · on_exceeded pause``, or ``unlimited``."""
    limits = budget.model_dump(exclude_none=True, exclude={"on_exceeded"})
    if not limits:
        return "unlimited"
    shown = [f"{name} {value:g}" for name, value in limits.items()]
    return " · ".join([*shown, f"on_exceeded {budget.on_exceeded}"])


def static_summary(agent: AgentInput) -> str:
    """The one-line summary the Web UI shows for a run: its prompt, shortened.

    The UI renders it as markdown, so the prompt is escaped to read as typed.
    """
    return escape_markdown(shorten(agent.prompt, SUMMARY_CHARS))


def static_details(agent: AgentInput) -> str:
    """Markdown the Web UI shows with a run: model, tools and budget (user text escaped)."""
    tools = ", ".join(agent.tools) if agent.tools is not None else "all built-ins"
    lines = [
        f"**model** {code_span(agent.model)}",
        *(
            [f"**fallback models** {', '.join(code_span(m) for m in agent.fallback_models)}"]
            if agent.fallback_models
            else []
        ),
        f"**tools** {escape_markdown(tools or 'none')}",
        f"**budget** {escape_markdown(describe_budget(agent.budget))}",
    ]
    if agent.script is not None:
        lines.append(f"**script** {len(agent.script)} turn(s)")
    if agent.system:
        lines.append(f"**system** {escape_markdown(shorten(agent.system, 200))}")
    quoted = "\n".join(f"> {escape_markdown(line)}" for line in agent.prompt.splitlines())
    lines.append(f"**prompt**\n\n{quoted}")
    return "\n\n".join(lines)
