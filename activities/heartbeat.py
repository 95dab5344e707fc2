"""Heartbeats for long activities, so a dead worker is noticed in seconds.

Temporal only learns that a worker died when an activity misses its heartbeat
timeout; without heartbeats it waits the whole start-to-close timeout. The
heartbeat also delivers cancellation into the activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from temporalio import activity

__all__ = ["HEARTBEAT_INTERVAL_S", "heartbeating"]

HEARTBEAT_INTERVAL_S = 0.5
"""A quarter of the workflows' heartbeat timeout (2 s); the SDK sends the latest beat at
most every 1.6 s (0.8 of the timeout), so a beat recorded late by a busy loop still goes."""


@asynccontextmanager
async def heartbeating(interval_s: float = HEARTBEAT_INTERVAL_S) -> AsyncIterator[None]:
    """Heartbeat in the background while the body runs (a no-op in local activities)."""
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
            activity.heartbeat()
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
