"""The stages every tool call goes through before it starts: refuse, then approve.

Pure rules shared by the workflow, which applies them before starting a call,
and by readers of a run's history, which tell from them why a call that never
ran was refused (the refusal is workflow state: the history records no event).
"""

from __future__ import annotations

from collections.abc import Iterable

from onward.contracts import ToolCall, ToolSpec

__all__ = ["approval_refusal", "unknown_tool"]


def unknown_tool(call: ToolCall, available: Iterable[str]) -> str:
    """The first stage's refusal: the run offers no tool of that name."""
    return f"unknown tool {call.name!r} (available: {', '.join(available) or 'none'})"


def approval_refusal(spec: ToolSpec, call: ToolCall) -> str | None:
    """The approval stage: why a call may not start without approval, or None.

    Human approval comes in a later version (the workflow will wait here for a
    decision); until then a tool that requires it never runs unasked.
    """
    if spec.requires_approval:
        return f"{call.name} requires approval, which this version of Onward does not support yet"
    return None
