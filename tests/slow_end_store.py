"""A transcript store whose end-of-run write outlasts a workflow task (replay tests).

The ``write_transcript`` activity sleeps longer than the SDK's workflow task
heartbeat (80% of the task timeout), so an end-of-run local activity spans a
workflow task: the case in which a patch asked first after it would fail replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from temporalio import activity

from onward.contracts import StepRecord
from onward.store import TranscriptStore

SLOW_WRITE_S = 2.5
"""Longer than 1.6 s, the heartbeat of a 2 s workflow task (``WORKFLOW_TASK_TIMEOUT``)."""


class SlowEndStore(TranscriptStore):
    """Sleeps in ``write_transcript`` for transcripts whose id starts with ``prefix``."""

    def __init__(self, store: TranscriptStore, prefix: str = "") -> None:
        super().__init__(store.backend, store.codec)
        self.prefix = prefix

    async def write_steps(self, transcript: str, steps: Sequence[StepRecord]) -> None:
        slow = activity.in_activity() and activity.info().activity_type == "write_transcript"
        if slow and transcript.startswith(self.prefix):
            await asyncio.sleep(SLOW_WRITE_S)
        await super().write_steps(transcript, steps)
