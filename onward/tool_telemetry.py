"""What every tool call records, wherever it runs: its span's attributes and its metrics.

A worker's tool runs in an activity, which opens its ``execute_tool`` span and
records its metrics itself (``activities/telemetry.py``). A tool the workflow
runs itself (``wait``, ``delegate``) cannot: workflow code hands a
:class:`WorkflowToolSpan` to the worker through the extern function
:data:`TOOL_SPAN_EXTERN` (registered by ``onward.telemetry.RunTracingInterceptor``)
and records its metrics on the workflow's meter. Light on purpose: the workflow
imports it, and importing it loads no OpenTelemetry SDK.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.common import MetricMeter

__all__ = [
    "TOOL_SPAN_EXTERN",
    "WorkflowToolSpan",
    "bounded_activity_type",
    "record_tool_call",
    "tool_span_attributes",
]

TOOL_SPAN_EXTERN = "__onward_workflow_tool_span"
"""The worker-side function that records the span of a tool call the workflow ran."""


@dataclass(frozen=True)
class WorkflowToolSpan:
    """A tool call the workflow ran, from its start to its end (workflow time, ns)."""

    name: str
    call_id: str
    start_ns: int
    end_ns: int
    error: str | None = None
    """The outcome's error, or what was raised; None: it succeeded."""
    error_type: str | None = None
    """``ToolError`` for an outcome's error, else the raised exception's type."""


def bounded_activity_type(activity_type: str) -> str:
    """An activity type as spans and metrics name it: a local tool call's without its arguments.

    A local tool call's activity type is its summary (``calculator(2+2)``,
    ``lookup(email=a@b.c)``), so that the Web UI's timeline reads. As a span name or
    a metric label it would be one name per distinct call, and carry the call's
    arguments into the tracing backend with content capture off: there it is the
    tool's name (``calculator``). Tool names have no parentheses; Onward's own
    activity types neither.
    """
    return activity_type.partition("(")[0] or activity_type


def tool_span_attributes(name: str, call_id: str) -> dict[str, str | int | float | bool]:
    """An ``execute_tool`` span's attributes (OpenTelemetry GenAI conventions)."""
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "function",
    }


def record_tool_call(meter: MetricMeter, name: str, seconds: float, failed: bool) -> None:
    """Count one ended tool call on ``meter``: made, failed or not, and how long it took."""
    labels: dict[str, str | int | float | bool] = {"gen_ai.tool.name": name}
    meter.create_counter("onward.tool.calls", "Tool calls made", "{call}").add(1, labels)
    if failed:
        meter.create_counter("onward.tool.errors", "Tool calls that failed", "{call}").add(
            1, labels
        )
    meter.create_histogram_float("onward.tool.duration", "Duration of tool calls", "s").record(
        seconds, labels
    )
