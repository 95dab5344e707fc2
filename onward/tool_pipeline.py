"""The stages every tool call goes through before it starts: refuse, then approve.

Pure rules shared by the workflow, which applies them before starting a call,
and by readers of a run's history, which tell from them why a call that never
ran was refused (the refusal is workflow state: the history records no event).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from onward.contracts import (
    ApprovalDecision,
    ApprovalRecord,
    PendingApproval,
    ToolCall,
    ToolSpec,
)

__all__ = [
    "approval_refusal",
    "chosen",
    "needs_approval",
    "rejection",
    "unknown_approve_tools",
    "unknown_tool",
]


def unknown_tool(call: ToolCall, available: Iterable[str]) -> str:
    """The first stage's refusal: the run offers no tool of that name."""
    return f"unknown tool {call.name!r} (available: {', '.join(available) or 'none'})"


def needs_approval(spec: ToolSpec, approve_tools: Collection[str] | None) -> bool:
    """The approval stage: whether a call must wait for a person before it starts.

    The registry marks a tool ``requires_approval``; a run adds more with
    ``approve_tools``.
    """
    return spec.requires_approval or (approve_tools is not None and spec.name in approve_tools)


def approval_refusal(spec: ToolSpec, call: ToolCall) -> str | None:
    """Why a call that needs approval was refused by runs begun before approval existed.

    Those runs (workflow code before the ``human-approval`` patch) refused
    such calls outright; their histories still replay that way, and readers
    of their histories say so with this message.
    """
    if spec.requires_approval:
        return f"{call.name} requires approval, which this version of Onward does not support yet"
    return None


def rejection(note: str | None) -> str:
    """The error a rejected call gives the model: the person's note, when there is one."""
    return f"rejected: {note}" if note else "rejected by the person approving tool calls"


def chosen(
    pending: Iterable[PendingApproval],
    decision: ApprovalDecision,
    decided: Mapping[str, ApprovalRecord] | None = None,
    earlier: Mapping[str, ApprovalRecord] | None = None,
) -> list[str]:
    """The call ids an ``approve`` or ``reject`` decides: one call, or all pending.

    A call in ``decided`` was decided by an earlier update whose outcome its
    waiting call has not read yet: it waits no more, the first decision wins.
    ``earlier``: the decisions calls of the step log have read, by call id, so a
    call named again is refused as decided rather than as never waiting.

    Raises:
        ValueError: nothing waits for approval, or not the call named.
    """
    decided = decided or {}
    if decision.call_id is not None and decision.call_id in decided:
        raise ValueError(f"{decision.call_id} is already {decided[decision.call_id].decision}")
    waiting = [item.call_id for item in pending if item.call_id not in decided]
    before = (earlier or {}).get(decision.call_id or "")
    if before is not None and decision.call_id not in waiting:
        by = " (approval_timeout_s ran out)" if before.by == "timeout" else ""
        raise ValueError(f"{decision.call_id} is already {before.decision}{by}")
    if not waiting:
        raise ValueError("no tool call is waiting for approval")
    if decision.call_id is None:
        return waiting
    if decision.call_id not in waiting:
        raise ValueError(
            f"call_id: {decision.call_id!r} is not waiting for approval "
            f"(waiting: {', '.join(waiting)})"
        )
    return [decision.call_id]


def unknown_approve_tools(approve_tools: Iterable[str], offered: Iterable[str]) -> list[str]:
    """Names in ``approve_tools`` that the run does not offer (a typo would approve nothing)."""
    have = set(offered)
    return [name for name in approve_tools if name not in have]
