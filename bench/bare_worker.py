"""The bare workflow's worker, run as its own process by the bench.

python -m bench.bare_worker --address HOST:PORT --task-queue Q --model-url URL
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from bench.bare_activities import BareActivities, read, record
from bench.bare_workflow import BareSteps

__all__ = ["main"]

STICKY_QUEUE_TIMEOUT = timedelta(seconds=1)
"""Onward's setting, given to every system's worker so resume compares like with like."""


async def main(address: str, task_queue: str, model_url: str) -> None:
    """Poll ``task_queue`` until killed."""
    client = await Client.connect(address)
    activities = BareActivities(model_url)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareSteps],
        activities=[activities.model_call, record, read],
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
    )
    async with worker:
        print(f"bench worker ready (pid {os.getpid()})", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--model-url", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.address, args.task_queue, args.model_url))
