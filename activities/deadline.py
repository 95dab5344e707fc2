"""No call starts after its run's deadline.

When every worker of a run dies mid call, Temporal retries the call on the next
worker that polls, whenever that is; the run's timer, which would have cancelled
the call at the deadline, is read only once a worker runs the workflow again,
which may be after the retry started (and was paid for). So the run gives each
call its deadline (``not_after``) and an attempt checks it before doing anything.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from onward.errors import DEADLINE_PASSED

__all__ = ["refuse_if_late"]


def refuse_if_late(not_after: datetime | None, what: str) -> None:
    """Raise a non-retryable ``DeadlinePassed`` error if ``not_after`` has passed."""
    if not_after is None:
        return
    late_s = (datetime.now(UTC) - not_after).total_seconds()
    if late_s < 0:
        return
    message = f"{what} not started: the run's deadline passed {late_s:.1f} s before"
    activity.logger.info(message)
    # Benign: the SDK logs it at DEBUG, not as a failed activity with a traceback.
    raise ApplicationError(
        message,
        type=DEADLINE_PASSED,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )
