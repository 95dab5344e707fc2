"""Tools that run inside the workflow itself instead of as activities.

``wait`` is a durable timer: an agent can sleep for hours at no cost, across
worker restarts, and wake on time. It needs no worker I/O, so the workflow
offers and runs it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from onward.contracts import ToolSpec

__all__ = ["MAX_WAIT_S", "WAIT", "WORKFLOW_TOOLS", "WaitArgs"]

MAX_WAIT_S = 30 * 24 * 3600
"""Longest single wait: 30 days."""


class WaitArgs(BaseModel):
    """Arguments of ``wait``."""

    seconds: float = Field(gt=0, le=MAX_WAIT_S, description="how long to wait, in seconds")


WAIT = ToolSpec(
    name="wait",
    description=(
        "Wait for a number of seconds before going on (a durable timer: it costs nothing "
        "while waiting, survives restarts and can be hours long)."
    ),
    parameters=WaitArgs.model_json_schema(),
)

WORKFLOW_TOOLS: dict[str, ToolSpec] = {WAIT.name: WAIT}
"""Workflow-run tools by name; they are built-ins, offered when a run names no tools."""
