"""Heartbeats for long activities, so a dead worker is noticed in seconds.

Temporal only learns that a worker died when an activity misses its heartbeat
timeout; without heartbeats it waits the whole start-to-close timeout. The
heartbeat also delivers cancellation into the activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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

    async def beat() -> None:
        while True:
            # First after one interval: a call that ends sooner sends none (the SDK
            # sends a first beat at once, one more request to the server each call).
            await asyncio.sleep(interval_s)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
