"""What a tool call knows about itself, and the shape of the function the activity calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onward.memory import Memory

__all__ = ["ToolContext", "ToolFunction", "UncachedResult"]


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call it serves.

    ``idempotency_key`` is the same on every retry of one call (workflow id,
    step and call id), so a tool can make its side effects safe to repeat.
    ``memory`` is the run's memory (its tenant and memory scope in the
    worker's store); None when the run began before memory scopes or the
    worker has no store.
    """

    idempotency_key: str
    call_id: str
    workspace: Path
    memory: Memory | None = None


class UncachedResult(str):
    """A result the model is shown but the tool-result cache never keeps.

    Return it instead of a plain ``str`` for an answer that is not the tool's
    error yet would be wrong to reuse for a cache TTL: ``http_fetch`` returns an
    HTTP error status (a 503 or 429 page) so. A tool that raises ``ToolError``
    needs nothing: errors are never kept.
    """

    __slots__ = ()


ToolFunction = Callable[[Any, ToolContext], Awaitable[str] | str]
"""``fn(args, ctx)``: what the ``execute_tool`` activity calls, with validated arguments."""
