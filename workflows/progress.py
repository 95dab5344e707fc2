"""Readable text for people watching a run: the Web UI card and activity summaries.

Pure functions of workflow state, so they are safe to call from the workflow.
"""

from __future__ import annotations

import json
from typing import Any

from onward import steplog
from onward.contracts import AgentStatus, Budget, RunUsage, ToolCall
from onward.markdown import code_span, escape_markdown
from onward.money import cache_summary, cost_text, money

__all__ = ["model_summary", "progress_card", "tool_summary", "usage_line"]

_SUMMARY_CHARS = 80


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_summary(call: ToolCall) -> str:
    """``calculator(2+2)``, ``write_file(path=notes.txt, content=hello…)``."""
    values = list(call.arguments.items())
    if len(values) == 1:
        inner = _plain(values[0][1])
    else:
        inner = ", ".join(f"{key}={_plain(value)}" for key, value in values)
    return _shorten(f"{call.name}({inner})", _SUMMARY_CHARS)


def model_summary(model: str, step: int) -> str:
    """``openai:gpt-4o-mini · step 3``."""
    return f"{model} · step {step}"


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _limit(used: float, limit: float | None, fmt: str = "{:g}") -> str:
    shown = fmt.format(used)
    return shown if limit is None else f"{shown} / {fmt.format(limit)}"


def usage_line(usage: RunUsage, budget: Budget) -> str:
    """Usage against budget on one line."""
    cost = cost_text(usage.cost_usd, usage.cost_known)
    if budget.max_cost_usd is not None:
        cost += f" / {money(budget.max_cost_usd)}"
    return (
        f"tokens {_limit(usage.total_tokens, budget.max_tokens)} · "
        f"tool calls {_limit(usage.tool_calls, budget.max_tool_calls)} · "
        f"steps {_limit(usage.steps, budget.max_steps)} · "
        + (cost if cost.startswith("cost") else f"cost {cost}")
    )


def progress_card(status: AgentStatus) -> str:
    """The markdown card shown as the run's current details in the Web UI.

    Every piece of text is escaped (see :mod:`onward.markdown`): the UI reads
    ``$`` as maths, and reasons and step texts come from models and users.
    """
    state = escape_markdown(status.state)
    lines = [f"**{state}** · step {status.step} · {code_span(str(status.model))}"]
    lines.append(escape_markdown(usage_line(status.usage, status.budget)))
    cache = cache_summary(status.usage)
    if cache is not None:
        lines.append(f"prompt cache: {escape_markdown(cache)}")
    if status.reason:
        lines.append(f"reason: {escape_markdown(_shorten(status.reason, 200))}")
    for pending in status.pending_approvals:  # human approval
        call = ToolCall(id=pending.call_id, name=pending.name, arguments=pending.arguments)
        shown = code_span(tool_summary(call))
        lines.append(f"awaiting approval: {shown} · call {code_span(pending.call_id)}")
    last = status.last_step
    if last is not None:
        failed = steplog.step_error(last)
        if failed is not None:
            lines.append(f"last: model call failed — {escape_markdown(_shorten(failed, 160))}")
        elif last.tool_calls:
            names = ", ".join(call.name for call in last.tool_calls)
            why = _shorten(last.text, 120) or "(no reason given)"
            lines.append(f"last: {escape_markdown(names)} — {escape_markdown(why)}")
        else:
            lines.append(f"last: answer — {escape_markdown(_shorten(last.text, 120))}")
    if status.transcript is not None:
        # The run's queries keep its last steps; the whole log is in the store.
        lines.append("whole step log: " + code_span("onward steps <run id>"))
    return "\n\n".join(lines)
