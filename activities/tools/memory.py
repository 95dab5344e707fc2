"""``remember`` and ``recall``: memory that outlives a run, in the worker's store.

What a run remembers is kept under its tenant and memory scope
(``AgentInput.tenant``, ``AgentInput.memory_scope``; see :mod:`onward.memory`),
so a later run or session of the same tenant and scope recalls it, and no
other tenant ever does. Both are plain tools over ``ctx.memory``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from onward.activities.tools.registry import ToolContext, tool
from onward.errors import ToolError
from onward.memory import RECALL_LIMIT, Memory

__all__ = ["MEMORY_TOOL_TIMEOUT_S", "RecallArgs", "RememberArgs", "recall", "remember"]

MEMORY_TOOL_TIMEOUT_S = 30.0
"""One store round trip; a call this slow means the store is stuck, and a retry is right."""


class RememberArgs(BaseModel):
    """Arguments of :data:`remember`."""

    key: str = Field(
        min_length=1,
        max_length=200,
        description="A short name for the fact, e.g. 'user.timezone'; remembering a key "
        "again replaces what it held.",
    )
    text: str = Field(min_length=1, description="The fact to keep, in a sentence or two.")


class RecallArgs(BaseModel):
    """Arguments of :data:`recall`."""

    query: str = Field(min_length=1, description="Words to look for in keys and texts.")


def _memory(ctx: ToolContext) -> Memory:
    if ctx.memory is None:
        raise ToolError(
            "memory is not available to this run (it began before memory scopes, "
            "or its worker has no store)"
        )
    return ctx.memory


@tool(builtin=True, timeout_s=MEMORY_TOOL_TIMEOUT_S)
async def remember(args: RememberArgs, ctx: ToolContext) -> str:
    """Save a fact for later runs and sessions (of the same tenant and memory scope).

    Remembering a key again replaces what it held.
    """
    await _memory(ctx).remember(args.key, args.text)
    return f"remembered {args.key!r}"


@tool(builtin=True, timeout_s=MEMORY_TOOL_TIMEOUT_S)
async def recall(args: RecallArgs, ctx: ToolContext) -> str:
    """Look up facts saved by remember, in this or earlier runs; the best matches first."""
    found = await _memory(ctx).recall(args.query, RECALL_LIMIT)
    if not found:
        return f"nothing remembered matches {args.query!r}"
    return "\n".join(f"{entry.key}: {entry.text}" for entry in found)
