"""Tools that run inside the workflow itself instead of as activities.

``wait`` is a durable timer: an agent can sleep for hours at no cost, across
worker restarts, and wake on time. It needs no worker I/O, so the workflow
offers and runs it. Such tools register here, as a :class:`WorkflowTool`, and
go through the same pipeline as the worker's tools (refuse, approve, start);
only the start differs: the workflow awaits :attr:`WorkflowTool.run` instead of
starting an activity.

``delegate`` (:mod:`onward.delegation`) runs in the workflow too, but needs the
run's own state (budget, usage, input), so the workflow starts it itself; it is
offered only when a run names it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from temporalio import workflow

from onward.contracts import ToolCall, ToolOutcome, ToolSpec
from onward.errors import format_validation_error

__all__ = ["MAX_WAIT_S", "WAIT", "WORKFLOW_TOOLS", "WaitArgs", "WorkflowTool"]

MAX_WAIT_S = 30 * 24 * 3600
"""Longest single wait: 30 days."""


class WaitArgs(BaseModel):
    """Arguments of ``wait``."""

    seconds: float = Field(gt=0, le=MAX_WAIT_S, description="how long to wait, in seconds")


@dataclass(frozen=True)
class WorkflowTool:
    """A tool the workflow runs itself, with what readers of its history need to know."""

    spec: ToolSpec
    run: Callable[[ToolCall, str], Coroutine[Any, Any, ToolOutcome]]
    """Run a call in the workflow; the string is the call's Web UI summary (for its timer)."""
    check: Callable[[ToolCall], str | None]
    """Why a call's arguments are refused before anything starts, or None (no side effects)."""
    timer_result: Callable[[ToolCall], str]
    """The result of a call whose timer fired: a timer has no payload to carry it."""


def _check_wait(call: ToolCall) -> str | None:
    try:
        WaitArgs.model_validate(call.arguments)
    except ValidationError as err:
        return format_validation_error(call.name, err)
    return None


def _waited(call: ToolCall) -> str:
    return f"waited {WaitArgs.model_validate(call.arguments).seconds:g} s"


async def _run_wait(call: ToolCall, summary: str) -> ToolOutcome:
    """A durable timer, cancelled with the run."""
    error = _check_wait(call)
    if error is not None:
        return ToolOutcome(error=error)
    await workflow.sleep(WaitArgs.model_validate(call.arguments).seconds, summary=summary)
    return ToolOutcome(content=_waited(call))


WAIT = ToolSpec(
    name="wait",
    description=(
        "Wait for a number of seconds before going on (a durable timer: it costs nothing "
        "while waiting, survives restarts and can be hours long)."
    ),
    parameters=WaitArgs.model_json_schema(),
    uses_workspace=False,
)

WORKFLOW_TOOLS: dict[str, WorkflowTool] = {
    WAIT.name: WorkflowTool(spec=WAIT, run=_run_wait, check=_check_wait, timer_result=_waited)
}
"""Workflow-run tools by name; they are built-ins, offered when a run names no tools."""
