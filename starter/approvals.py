"""Approval decisions read back from a run's history: the ``approve`` and ``reject`` updates.

A decision is workflow state, but each one a person made arrived as an
update, and Temporal records an accepted update's input (the note) and its
answer (the call ids decided). The workflow stamps a decision with its
workflow time, the start of the workflow task that ran the update, which the
history shows as the ``WorkflowTaskStarted`` event before the acceptance.
Decisions by ``on_approval_timeout`` leave no update behind and are not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from onward.contracts import ApprovalDecision, ApprovalRecord, ApprovalsDecided
from onward.starter.calls import decode

__all__ = ["APPROVAL_UPDATES", "ApprovalReader"]

APPROVAL_UPDATES = frozenset({"approve", "reject"})


@dataclass
class ApprovalReader:
    """Feed it a history's events in order; ``decided`` maps call ids to their decisions."""

    decided: dict[str, ApprovalRecord] = field(default_factory=dict)
    _task_started: datetime | None = None
    _accepted: dict[str, tuple[ApprovalDecision, datetime | None]] = field(default_factory=dict)

    def add(self, event: HistoryEvent) -> None:
        """Read one event (any kind: those that are not about approvals are skipped)."""
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            # As the workflow reads its clock (``workflow.now()``: nanoseconds as a
            # float), so the time matches the recorded one to the microsecond.
            nanos = event.event_time.ToNanoseconds()
            self._task_started = datetime.fromtimestamp(nanos / 1e9, UTC)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.name in APPROVAL_UPDATES:
                decision = decode(request.input.args, ApprovalDecision)
                if decision is not None:
                    self._accepted[request.meta.update_id] = (decision, self._task_started)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            attrs = event.workflow_execution_update_completed_event_attributes
            accepted = self._accepted.pop(attrs.meta.update_id, None)
            answer = decode(attrs.outcome.success, ApprovalsDecided)
            if accepted is None or not isinstance(answer, ApprovalsDecided):
                return
            decision, decided_at = accepted
            for call_id in answer.call_ids:
                self.decided[call_id] = ApprovalRecord(
                    decision=answer.decision, by="person", note=decision.note, decided_at=decided_at
                )
