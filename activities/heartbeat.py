"""Heartbeats for long activities, so a dead worker is noticed in seconds.

Temporal only learns that a worker died when an activity misses its heartbeat
timeout; without heartbeats it waits the whole start-to-close timeout. The
heartbeat also delivers cancellation into the activity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from temporalio import activity
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError

__all__ = [
    "ATTEMPT_ABANDONED",
    "HEARTBEAT_INTERVAL_S",
    "AttemptAbandoned",
    "attempt_limit",
    "ensure_current",
    "heartbeating",
    "last_attempt",
]

ATTEMPT_ABANDONED = "AttemptAbandoned"

HEARTBEAT_INTERVAL_S = 0.5
"""A quarter of the workflows' heartbeat timeout (2 s); the SDK sends the latest beat at
most every 1.6 s (0.8 of the timeout), so a beat recorded late by a busy loop still goes."""


class AttemptAbandoned(ApplicationError):
    """The server gave this attempt up (it timed out, or its run ended meanwhile).

    Temporal ignores this attempt's outcome (and has scheduled the next one, if
    the run goes on). Raised instead of the SDK's cancellation, which it would
    log as an activity failure with a traceback; benign, so the SDK logs it at
    DEBUG and :func:`heartbeating` says it in one line.
    """

    def __init__(self, why: str) -> None:
        super().__init__(why, type=ATTEMPT_ABANDONED, category=ApplicationErrorCategory.BENIGN)


def _abandoned() -> tuple[str, int] | None:
    """Why the server gave up the current attempt, and how loud to say it; None: it did
    not (a cancel asked for, a worker shutting down, say)."""
    details = activity.cancellation_details()
    if details is None or details.cancel_requested:
        return None
    if details.timed_out:
        return "it timed out (retried if attempts remain)", logging.WARNING
    if details.not_found:
        # Also what a call cut off by its run's cancel or end usually hears: the
        # run closed before the cancel reached the worker. Routine, so INFO.
        return "the server no longer has it (its run ended, or it timed out)", logging.INFO
    return None


@asynccontextmanager
async def heartbeating(
    interval_s: float = HEARTBEAT_INTERVAL_S, *, details: Sequence[object] = ()
) -> AsyncIterator[None]:
    """Heartbeat in the background while the body runs (a no-op in local activities).

    ``details`` go with every beat: the next attempt reads the last recorded ones
    (``activity.info().heartbeat_details``) if this one dies.
    """
    if not activity.in_activity() or activity.info().is_local:
        yield
        return

    # The first beat goes one interval into the attempt, not at once: a call that ends
    # sooner sends none (the SDK sends a first beat straight away, one more request to
    # the server for every call). Counted from the attempt's start, so what the activity
    # did before (reading the conversation from the store) does not push it back.
    since_start = (datetime.now(UTC) - activity.info().started_time).total_seconds()
    first = min(max(interval_s - since_start, 0.0), interval_s)

    async def beat() -> None:
        await asyncio.sleep(first)
        while True:
            activity.heartbeat(*details)
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(beat())
    try:
        yield
    except BaseException as err:
        # Not only the cancellation itself: what the body does on its way out (a
        # streamed call's last signal to a run that has ended) may raise instead.
        abandoned = _abandoned()
        if abandoned is None:
            raise
        why, level = abandoned
        info = activity.info()
        activity.logger.log(
            level, "%s attempt %d abandoned: %s", info.activity_type, info.attempt, why
        )
        raise AttemptAbandoned(f"attempt {info.attempt} abandoned: {why}") from err
    finally:
        task.cancel()


def attempt_limit() -> int | None:
    """The current activity's ``maximum_attempts``; None: unlimited, or no activity."""
    if not activity.in_activity():
        return None
    policy = activity.info().retry_policy
    if policy is None or policy.maximum_attempts <= 0:
        return None
    return policy.maximum_attempts


def last_attempt() -> bool:
    """Whether the current attempt is its activity's last (no retry follows a failure)."""
    limit = attempt_limit()
    return limit is not None and activity.info().attempt >= limit


_RUNNING = frozenset(
    {
        PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED,
    }
)


async def ensure_current(what: str) -> None:
    """Raise :class:`AttemptAbandoned` unless the server still runs this very attempt.

    Called before a write whose content differs from attempt to attempt (a model's
    reply): a worker that stalled (a frozen process, a long pause, a network cut
    from Temporal but not from the store) while the server gave its attempt to
    another worker must not overwrite what the newer attempt wrote and the run
    took. An attempt younger than half its shortest timeout cannot have been given
    up by a timeout, so it asks nothing; an older one asks the server (one describe).
    A server that cannot be asked is taken as having given the attempt up: after a
    heartbeat timeout without it, it has.
    """
    if not activity.in_activity() or activity.info().is_local:
        return
    info = activity.info()
    if info.workflow_id is None:
        return  # an activity started on its own: no run's transcript to keep
    limits = [t for t in (info.heartbeat_timeout, info.start_to_close_timeout) if t]
    elapsed = datetime.now(UTC) - info.started_time
    if limits and elapsed < min(limits) / 2:
        return
    try:
        client = activity.client()
    except RuntimeError:
        return  # no client to ask (a test's ActivityEnvironment)
    handle = client.get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
    try:
        async with heartbeating():  # a cancel the server sends meanwhile is said as such
            pending = (await handle.describe()).raw_description.pending_activities
    except RPCError as err:
        why = f"cannot ask Temporal whether it still runs it ({err.message})"
    else:
        if any(
            p.activity_id == info.activity_id and p.attempt == info.attempt and p.state in _RUNNING
            for p in pending
        ):
            return
        why = "the server gave it to another attempt, or its run moved on"
    activity.logger.warning(
        "%s attempt %d abandoned: %s (before it could %s)",
        info.activity_type,
        info.attempt,
        why,
        what,
    )
    raise AttemptAbandoned(f"attempt {info.attempt} abandoned: {why}")
