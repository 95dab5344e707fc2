"""Human output of ``onward trace``: one row per model call and tool call.

Pure functions from a :class:`~onward.starter.trace.Trace` to lines of text, in the
style of :mod:`onward.starter.render`.
"""

from __future__ import annotations

from datetime import datetime

from onward.contracts import ToolCall
from onward.starter.calls import CallTrace
from onward.starter.render import (
    RESULT_EXCERPT_CHARS,
    cache_summary,
    money,
    shorten,
    table,
    usage_summary,
)
from onward.starter.trace import StepSource, Trace, TraceStep, TraceToolCall, waiting_for
from onward.workflows.progress import tool_summary

__all__ = ["HEADER", "trace_lines"]

HEADER = ("STEP", "AT", "CALL", "TIME", "TRIES", "TOKENS", "COST", "RESULT")
"""Columns: offset from the run's start, call, latency, attempts, tokens, cost, outcome."""
CALL_CHARS = 48
"""Width a call (tool and arguments) is cut to."""
INDENT = "  "
"""How far a sub-agent's rows are indented under the delegate call that started it."""

_SOURCES: dict[StepSource, str] = {
    "result": "the run's result",
    "query": "the worker (steps query)",
    "history": "the event history",
}


def _at(start: datetime | None, when: datetime | None) -> str:
    if start is None or when is None:
        return "-"
    return f"+{(when - start).total_seconds():.2f}s"


def _time(ms: int | None) -> str:
    return "…" if ms is None else f"{ms / 1000:.2f} s"


def _tries(call: CallTrace | None) -> str:
    return "-" if call is None or call.attempts == 0 else str(call.attempts)


def _retried(call: CallTrace | None) -> str:
    if call is None or not call.retries or not call.last_failure:
        return ""
    return f" (retried after: {shorten(call.last_failure, 60)})"


def _model_row(trace: Trace, step: TraceStep) -> list[str]:
    call = step.model_call
    if step.error is not None:
        detail = "!! model call failed: " + shorten(step.error, RESULT_EXCERPT_CHARS)
    elif call is not None and call.state in ("failed", "timed_out"):
        detail = "!! model call failed: " + shorten(call.failure or "", RESULT_EXCERPT_CHARS)
    elif step.tool_calls:
        detail = shorten(step.text, RESULT_EXCERPT_CHARS) or "(no reason given)"
    else:
        detail = "answer: " + (shorten(step.text, RESULT_EXCERPT_CHARS) or "(empty)")
    # A step a fallback model answered began with the failed calls' rows: this call later.
    at = call.scheduled_at if call is not None and step.failed_model_calls else step.started_at
    return [
        str(step.step) if step.finished else f"{step.step}…",
        _at(trace.started_at, at),
        f"model {step.model or trace.model or '?'}",
        _time(call.latency_ms if call else None),
        _tries(call),
        str(step.usage.total_tokens),
        "-" if step.cost_usd is None else money(step.cost_usd),
        detail + _retried(call),
    ]


def _failed_model_rows(trace: Trace, step: TraceStep) -> list[list[str]]:
    """A row per model that failed the step before its model answered (fallback_models).

    The step's number goes on the first of them, the call the step began with.
    """
    if not step.failed_model_calls:
        return []
    rows = []
    tried = [*(call.name for call in step.failed_model_calls[1:]), step.model or "?"]
    for call, then in zip(step.failed_model_calls, tried, strict=True):
        failure = shorten(call.failure or "failed", RESULT_EXCERPT_CHARS)
        rows.append(
            [
                "",
                _at(trace.started_at, call.scheduled_at),
                f"model {call.name}",
                _time(call.latency_ms),
                _tries(call),
                "0",
                "-",
                f"!! model call failed: {failure} (fell back to {then})",
            ]
        )
    rows[0][0] = str(step.step) if step.finished else f"{step.step}…"
    return rows


def _steering_row(message: str) -> list[str]:
    """A user message added (``onward steer``) before the model call of the next row."""
    return ["", "", "steer", "", "", "", "", shorten(message, RESULT_EXCERPT_CHARS)]


_WAITING = {
    None: "(running)",
    "approval": "(awaiting approval)",
    "start": "(not started)",
    "end": "(no outcome)",
}
"""How a call without an outcome shows, by what it waits for (see ``waiting_for``)."""


def _tool_row(trace: Trace, tool: TraceToolCall) -> list[str]:
    call = tool.call
    shown = tool_summary(ToolCall(id=tool.id, name=tool.name, arguments=tool.arguments))
    if tool.error is not None:
        outcome = "!! " + shorten(tool.error, RESULT_EXCERPT_CHARS)
    elif tool.result is not None:
        outcome = "-> " + (shorten(tool.result, RESULT_EXCERPT_CHARS) or "(empty)")
        outcome += " (cache hit)" if tool.cache_hit else ""
    else:
        outcome = _WAITING[waiting_for(tool, trace.status)]
    if call is None:  # never ran: no time, unless it was refused on the spot (0 ms)
        time = "-" if tool.duration_ms is None else _time(tool.duration_ms)
    else:
        time = _time(call.latency_ms) if call.closed else "…"
    return [
        "",
        _at(trace.started_at, tool.started_at or (call.scheduled_at if call else None)),
        shorten(shown, CALL_CHARS),
        time,
        _tries(call),
        "",
        "",
        outcome + _retried(call),
    ]


def _in_flight_line(call: CallTrace) -> str:
    what = f"model {call.name}" if call.role == "model" else call.summary or call.name
    attempt = f"attempt {call.attempts}" if call.attempts else "waiting for a worker"
    line = f"in flight: step {call.step} · {what} ({call.state}, {attempt})"
    if call.last_failure:
        line += f"; last failure: {shorten(call.last_failure, 80)}"
    return line


def _cut_off_lines(trace: Trace, root: Trace) -> list[str]:
    """The model calls the ends of ``trace`` and its sub-agents interrupted, one a line."""
    lines = []
    for call in trace.cut_off:
        ran = f"after {_time(call.latency_ms)}" if call.closed else "never answered"
        # A terminated run's history has no start of its last call: attempts unknown.
        attempt = f", attempt {call.attempts}" if call.attempts else ""
        whose = "" if trace is root else f"sub-agent {trace.workflow_id} "
        lines.append(f"cut off: {whose}step {call.step} · model {call.name} ({ran}{attempt})")
    for step in trace.steps:
        for tool in step.tool_calls:
            if tool.child is not None:
                lines += _cut_off_lines(tool.child, root)
    return lines


def _child_head(parent: Trace, child: Trace) -> list[str]:
    """The row that opens a sub-agent's steps: its id, how it ended, what it used."""
    usage = child.usage
    return [
        "",
        _at(parent.started_at, child.started_at),
        f"sub-agent {child.workflow_id}",
        "",
        "",
        str(usage.total_tokens),
        money(usage.cost_usd) if usage.cost_known else "-",
        f"{child.status} · model {child.model or '?'}",
    ]


def _indented(row: list[str], depth: int) -> list[str]:
    """``row`` with its step and call moved right by ``depth`` levels."""
    pad = INDENT * depth
    return [pad + row[0] if row[0] else "", row[1], pad + row[2], *row[3:]]


def _rows(trace: Trace, root: Trace, depth: int) -> list[list[str]]:
    """A row per call of ``trace``, each sub-agent's rows under its delegate call."""
    rows: list[list[str]] = []
    # Offsets (AT) count from the root run's start, whichever run a row is of.
    timed = trace if trace is root else trace.model_copy(update={"started_at": root.started_at})
    for step in trace.steps:
        rows += [_indented(_steering_row(message), depth) for message in step.steering]
        failed = _failed_model_rows(timed, step)
        model = _model_row(timed, step)
        if failed:
            model[0] = ""  # on the step's first row
        rows += [_indented(row, depth) for row in [*failed, model]]
        for tool in step.tool_calls:
            rows.append(_indented(_tool_row(timed, tool), depth))
            if tool.child is not None:
                rows.append(_indented(_child_head(root, tool.child), depth + 1))
                rows += _rows(tool.child, root, depth + 1)
    return rows


def trace_lines(trace: Trace) -> list[str]:
    """The timeline of a run: a header, a row per call, calls in flight or cut off, usage.

    A sub-agent's calls are indented under the delegate call that started it.
    """
    head = f"run {trace.workflow_id} · {trace.status} · model {trace.model or '?'}"
    if trace.tenant:
        head += f" · tenant {trace.tenant}"
    source = _SOURCES[trace.source] + (" (no worker answered)" if trace.unanswered else "")
    lines = [head, f"steps from {source}; tries and times from the history", ""]
    rows = _rows(trace, trace, 0)
    if rows:
        lines += table(HEADER, rows)
    else:
        lines.append("(no steps yet)" if trace.status == "running" else "(no steps)")
    lines += [_in_flight_line(call) for call in trace.in_flight]
    lines += _cut_off_lines(trace, trace)
    lines.append("")
    lines.append(f"usage: {usage_summary(trace.usage)}")
    cache = cache_summary(trace.usage)
    if cache is not None:
        lines.append(f"cache: {cache}")
    return lines
