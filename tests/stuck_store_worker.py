"""A worker process whose store never finishes ``write_transcript`` (crash tests).

Run as ``python tests/stuck_store_worker.py ADDRESS TASK_QUEUE STORE WORKSPACE``; it
prints ``ready`` once polling. A run's continue-as-new write then hangs in it,
heartbeating, until the test kills the process with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from temporalio import activity
from temporalio.client import Client

from onward.connection import DATA_CONVERTER
from onward.contracts import StepRecord
from onward.store import TranscriptStore, open_store
from onward.worker import WorkerSettings, build_worker, ensure_search_attributes


class StuckWrites(TranscriptStore):
    """Never ends a ``write_transcript`` activity's step write."""

    async def write_steps(self, transcript: str, steps: Sequence[StepRecord]) -> None:
        if activity.in_activity() and activity.info().activity_type == "write_transcript":
            await asyncio.Event().wait()  # until the process is killed
        await super().write_steps(transcript, steps)


async def main(address: str, task_queue: str, store_dir: str, workspace: str) -> None:
    client = await Client.connect(address, data_converter=DATA_CONVERTER)
    opened = await open_store(store_dir)
    store = StuckWrites(opened.backend, opened.codec)
    settings = WorkerSettings(task_queue=task_queue, workspace=Path(workspace), store_url=store_dir)
    names = await ensure_search_attributes(client, client.namespace)
    async with build_worker(client, settings, search_attribute_names=names, store=store):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
