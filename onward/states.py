"""How a run's state is named, whoever reports it: the run itself, or Temporal.

The workflow publishes its own state (the ``status`` query, the result, the
``OnwardStatus`` search attribute). A run Temporal closed without the run's
code (terminated, timed out, cancelled natively, failed before publishing)
has only Temporal's status. :func:`run_state` is the one rule that reconciles
the two, used by ``status``, ``list``, ``trace`` and the client alike.
"""

from __future__ import annotations

from typing import get_args

from temporalio.client import WorkflowExecutionStatus

from onward.contracts import FINAL_STATES, AgentState

__all__ = ["OWN_STATE_WINS", "closed_reason", "closed_state", "closing_statuses", "run_state"]

_NAMED: dict[str, AgentState] = {name: name for name in get_args(AgentState)}

_CLOSED: dict[WorkflowExecutionStatus, AgentState] = {
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    # A run that continued as new goes on in its next run: it is not over.
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}


OWN_STATE_WINS = (
    WorkflowExecutionStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.CANCELED,
)
"""How the run's own code closes a run: a final state it published then says how it ended."""


def closing_statuses(state: str) -> list[WorkflowExecutionStatus]:
    """The ways Temporal closes a run that :func:`closed_state` names ``state``."""
    return [
        status
        for status, name in _CLOSED.items()
        if name == state and status != WorkflowExecutionStatus.CONTINUED_AS_NEW
    ]


def closed_reason(state: AgentState, detail: str | None = None) -> str | None:
    """Why a run Temporal closed without its code ended, in the same words everywhere
    (``detail``: the terminate's reason); None for a state the run's code gives."""
    if state == "terminated":
        return f"terminated through Temporal: {detail}" if detail else "terminated through Temporal"
    if state == "cancelled":
        return "cancelled through Temporal (workflow cancel)"
    if state == "timed_out":
        return "timed out (Temporal workflow timeout)"
    return None


def closed_state(status: WorkflowExecutionStatus) -> AgentState:
    """Onward's name for how Temporal closed a run (``CANCELED`` -> ``cancelled``)."""
    return _CLOSED.get(status, "failed")


def run_state(status: WorkflowExecutionStatus | None, published: str | None) -> AgentState:
    """A run's state from Temporal's execution status and the state the run published.

    While Temporal runs it, the run's own word counts (``running`` until it has
    published one). Once closed, a final state the run published wins (a
    budget stop closes as Temporal ``COMPLETED``); otherwise Temporal closed it
    and its status says how: a terminated run keeps the last state it
    published, which is not how it ended.
    """
    own = _NAMED.get(published or "")
    if status is None or status == WorkflowExecutionStatus.RUNNING:
        return own or "running"
    if own in FINAL_STATES and status in OWN_STATE_WINS:
        return own
    return closed_state(status)
